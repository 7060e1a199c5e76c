"""`setup` without a terminal: flag errors, --model / --add / --remove on a stopped stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_stack.paths import Paths
from mlx_stack.services import stack_store
from mlx_stack.services.demo_models import build_random_model


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("setup-models")
    return build_random_model(root / "one", seed=1), build_random_model(root / "two", seed=2)


@pytest.mark.parametrize(("args", "message"), [
    (["--demo", "--add", "x"], "--demo cannot be combined with --add"),
    (["--demo-tool", "Bash"], "--demo-tool only applies to --demo"),
    (["--demo", "--demo-tool", "rm -rf"], "invalid --demo-tool 'rm -rf'"),
    (["--model", "x", "--remove", "fast"], "--model cannot be combined with --add or --remove"),
    (["--add", "x", "--intent", "balanced"], "--intent and --budget-pct only apply"),
    (["--intent", "speed"], "invalid --intent 'speed'"),
    (["--budget-pct", "95"], "invalid --budget-pct 95"),
    (["--as", "extra"], "1 --as for 0 --add"),
    (["--add", "x", "--as", "Extra!"], "invalid tier name 'Extra!'"),
    (["--add", "x", "--as", "fast", "--remove", "fast"], "tier 'fast' is both added and removed"),
])
def test_bad_flag_combinations_are_exit_2(run, args: list[str], message: str, isolated_home: Paths) -> None:
    r = run("setup", *args)
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr
    assert not isolated_home.stack_file.exists()


def test_add_or_remove_without_a_stack_is_exit_4(run) -> None:
    r = run("setup", "--add", "org/model", "--no-start")
    assert r.exit_code == 4 and "no stack to change yet" in r.stderr


def test_model_then_add_then_remove_on_a_stopped_stack(run, models, isolated_home: Paths) -> None:
    one, two = models
    r = run("setup", "--model", str(one), "--no-start")
    assert r.exit_code == 0, r.stderr
    stack = stack_store.load(isolated_home)
    assert stack.tier_names == ["standard"] and stack.tiers[0].path == str(one)
    assert stack.tiers[0].tool_call_parser == "hermes"  # a demo-built model speaks hermes tool calls

    r = run("setup", "--add", str(two), "--as", "extra", "--no-start")
    assert r.exit_code == 0, r.stderr
    assert "extra" in r.stderr and "(new)" in r.stderr and "start it with `mlx-stack up`" in r.stderr
    stack = stack_store.load(isolated_home)
    assert stack.tier_names == ["standard", "extra"]
    assert stack.fallback_order == ("standard", "extra")
    assert stack.tier("standard").port != stack.tier("extra").port

    r = run("setup", "--remove", "nope", "--no-start")
    assert r.exit_code == 4 and "unknown tier 'nope'" in r.stderr

    r = run("setup", "--remove", "standard", "--remove", "extra", "--no-start")
    assert r.exit_code == 5 and "without any tier" in r.stderr

    r = run("setup", "--remove", "extra", "--no-start")
    assert r.exit_code == 0, r.stderr
    assert stack_store.load(isolated_home).tier_names == ["standard"]


def test_add_without_as_names_the_tier_after_the_model(run, models, isolated_home: Paths) -> None:
    one, two = models
    assert run("setup", "--model", str(one), "--no-start").exit_code == 0
    r = run("setup", "--add", str(two), "--no-start")
    assert r.exit_code == 0, r.stderr
    assert stack_store.load(isolated_home).tier_names == ["standard", "two"]


def test_no_pull_with_a_missing_model_keeps_the_stack(run, models, isolated_home: Paths) -> None:
    assert run("setup", "--model", str(models[0]), "--no-start").exit_code == 0
    before = isolated_home.stack_file.read_text()
    r = run("setup", "--add", "org/not-here", "--no-pull", "--no-start")
    assert r.exit_code == 4
    assert "org/not-here (for tier not-here) is not on this machine" in r.stderr
    assert "the previous stack is unchanged" in r.stderr
    assert isolated_home.stack_file.read_text() == before


def test_a_missing_local_folder_is_exit_4(run, tmp_path: Path) -> None:
    r = run("setup", "--model", str(tmp_path / "nothing"), "--no-start")
    assert r.exit_code == 4 and "no model folder" in r.stderr


def test_without_a_terminal_setup_asks_nothing(run, isolated_home: Paths) -> None:
    # stdin is not a TTY under the runner: like --accept-defaults, no prompt may block.
    r = run("setup", "--no-pull", "--no-start")
    assert "This machine:" in r.stderr and "Recommended (agent" in r.stderr
    assert "?" not in r.stderr.split("Recommended")[0]
    assert r.exit_code == 4 and "is not on this machine" in r.stderr
    assert not isolated_home.stack_file.exists()
    r = run("setup", "--no-pull", "--no-start", "--budget-pct", "10", "--intent", "agent-fleet")
    assert "Recommended (agent-fleet" in r.stderr and "10%" in r.stderr


def test_a_corrupt_stack_is_replaced_by_a_new_setup_not_changed(run, models, isolated_home: Paths) -> None:
    isolated_home.home.mkdir(parents=True, exist_ok=True)
    isolated_home.stack_file.write_text("schema: 1\ntiers: [\n")
    r = run("setup", "--add", str(models[1]), "--no-start")
    assert r.exit_code == 3
    r = run("setup", "--model", str(models[0]), "--no-start")
    assert r.exit_code == 0, r.stderr
    assert "a new stack will replace it" in r.stderr
    assert stack_store.load(isolated_home).tier_names == ["standard"]


@pytest.fixture(scope="module")
def retrieval_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from mlx_stack.services.demo_models import build_encoder_model, build_reranker_model

    root = tmp_path_factory.mktemp("retrieval-models")
    return build_encoder_model(root / "enc"), build_reranker_model(root / "hub", "org/tiny-rerank")


def test_add_embedding_and_rerank_to_a_stopped_stack(run, models, retrieval_models,
                                                      isolated_home: Paths) -> None:
    encoder, reranker = retrieval_models
    assert run("setup", "--model", str(models[0]), "--no-start").exit_code == 0
    r = run("setup", "--add-embedding", str(encoder), "--add-rerank", str(reranker), "--no-start")
    assert r.exit_code == 0, r.stderr
    stack = stack_store.load(isolated_home)
    assert stack.tier_names == ["standard", "embed", "rerank"]
    assert stack.fallback_order == ("standard",)
    assert stack.tier("embed").kind == "embedding" and stack.tier("rerank").kind == "rerank"
    assert stack.tier("embed").serving is not None and stack.tier("embed").serving.cache_memory_mb == 0
    assert stack.tier("standard").serving == stack_store.load(isolated_home).tier("standard").serving
    # the same flag again replaces the model of `embed`; --remove takes it away
    assert run("setup", "--add-embedding", str(encoder), "--no-start").exit_code == 0
    assert stack_store.load(isolated_home).tier_names == ["standard", "embed", "rerank"]
    assert run("setup", "--remove", "rerank", "--no-start").exit_code == 0
    assert stack_store.load(isolated_home).tier_names == ["standard", "embed"]


def test_a_reranker_outside_a_hub_cache_is_refused(run, models, retrieval_models,
                                                   isolated_home: Paths) -> None:
    assert run("setup", "--model", str(models[0]), "--no-start").exit_code == 0
    before = isolated_home.stack_file.read_text()
    r = run("setup", "--add-rerank", str(retrieval_models[0]), "--no-start")
    assert r.exit_code == 5 and "Hugging Face cache" in r.stderr
    assert isolated_home.stack_file.read_text() == before


@pytest.mark.parametrize(("args", "message"), [
    (["--demo", "--add-embedding", "x"], "--demo cannot be combined with --add-embedding"),
    (["--retrieval"], "--retrieval applies to --demo only"),
])
def test_retrieval_flag_errors(run, args: list[str], message: str) -> None:
    r = run("setup", *args)
    assert r.exit_code == 2 and message in r.stderr
