# Every target runs inside .venv, which `make install` creates on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser agent-clients test test-fast lint check bench clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# pip takes torch (pulled in by vllm-mlx) from the machine's local wheel cache when it has one.
	$(BIN)/python -m pip install --quiet -e ".[dev]" 2>&1 | { grep -v "is ignored: it is neither" || true; }
	# The bytecode a regular (non-editable) pip install writes: `status` starts ~0.1 s faster.
	$(BIN)/python -m compileall -q src/mlx_stack > /dev/null
	touch $(STAMP)

# Chromium + chromedriver (Debian packages) for the dashboard's browser test; quick when present.
browser:
	bash .ci/chromium

# Claude Code, Codex CLI and OpenCode from npm (into ~/.cache/mlx-stack-ci/npm) for the
# real-client tests; quick when present.
agent-clients:
	bash .ci/agent-clients

test: $(STAMP) browser agent-clients
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration"

# pyright: strict on core/, system/ and gateway/ (pyproject); its wheel bundles its JS and runs on the
# machine's node. No version check against PyPI, and a deadline so a stuck node never hangs CI.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(BIN)/python .ci/deadline 900 $(BIN)/pyright

check: lint test

bench: $(STAMP)
	$(BIN)/python benchmarks/cli_startup.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
