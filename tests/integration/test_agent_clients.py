"""The real coding agents against one real demo stack: Claude Code, Codex CLI, OpenCode.

`mlx-stack connect CLIENT` writes each client's own config file in a throwaway HOME;
then the client runs one non-interactive turn with its own defaults (Claude Code's model
names, a Codex model name over /v1/responses, OpenCode's provider entry). The clients
come from the npm registry (tests/agent_clients.py, `.ci/agent-clients`). The stack
runs the demo's tiers with the realistic demo tokenizer: `standard` (agent traffic, 64K
window) serves a scripted model that answers ANSWER (a random model would write up to
the clients' output budget, minutes on 2 cores, and the answer proves the round trip),
`fast` (haiku names) a random one, and `tool` / `claude-tool` the scripted models that call
OpenCode's `bash` / Claude Code's `Bash` tool on each user turn and answer in text after
the result (one tool round trip each).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store
from mlx_stack.services.demo_models import build_scripted_model
from mlx_stack.services.demo_stack import TOOL_ANSWER, TOOL_COMMAND, tool_script
from mlx_stack.system import ports, secrets
from tests.agent_clients import AgentBins, agent_bins
from tests.helpers import cli_env, run_cli, stack_processes

pytestmark = pytest.mark.integration

PROMPT = "Reply with the single word: ok"
ANSWER = "ok, from the mlx-stack demo."
TURN_TIMEOUT_S = 600
# Clients fetch nothing they need from here at test time, but OpenCode installs its
# provider package from npm on first use: keep that cache between runs.
XDG_CACHE = Path.home() / ".cache" / "mlx-stack-ci" / "xdg-cache"


@dataclass
class Stack:
    home: Paths
    client_home: Path
    workdir: Path
    bins: AgentBins
    key: str

    def env(self, **extra: str) -> dict[str, str]:
        """A client's environment: a throwaway HOME, nothing of the caller's API setup."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANTHROPIC_", "OPENAI_", "CODEX_", "CLAUDE_", "OPENCODE_", "XDG_"))}
        env.update(HOME=str(self.client_home), XDG_CACHE_HOME=str(XDG_CACHE), DISABLE_AUTOUPDATER="1",
                   PATH=f"{self.bins.prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}", **extra)
        return env

    def connect(self, client: str) -> str:
        r = run_cli(self.home, "connect", client, env=cli_env(self.home, HOME=str(self.client_home)))
        assert r.returncode == 0, r.stderr
        assert self.key not in r.stdout + r.stderr  # masked unless --show-key
        return r.stderr

    def run(self, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        r = subprocess.run(argv, env=self.env(**extra), cwd=self.workdir, text=True, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=TURN_TIMEOUT_S)
        print(f"{argv[0]}: exit {r.returncode} in {time.monotonic() - started:.1f} s")
        return r


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    bins = agent_bins()
    root = tmp_path_factory.mktemp("agents")
    home = Paths(root / "state")
    client_home, workdir = root / "client-home", root / "work"
    client_home.mkdir()
    workdir.mkdir()
    try:
        r = run_cli(home, "setup", "--demo", "--no-start")
        assert r.returncode == 0, r.stderr
        demo = stack_store.load(home)
        kept = [t for t in demo.tiers if t.name in ("standard", "fast")]
        text, answer = tool_script("bash")
        scripted = build_scripted_model(home.models_dir / "tool-bash", text, after_tool=answer,
                                        context_length=65536)
        tool = replace(demo.tier("standard"), name="tool", model="demo-tool", path=str(scripted))
        text, answer = tool_script("Bash")  # Claude Code's shell tool
        claude_scripted = build_scripted_model(home.models_dir / "tool-Bash", text, after_tool=answer,
                                               context_length=65536)
        claude_tool = replace(tool, name="claude-tool", model="demo-claude-tool", path=str(claude_scripted))
        answering = build_scripted_model(home.models_dir / "answer", ANSWER, context_length=65536)
        kept = [replace(t, path=str(answering)) if t.name == "standard" else t for t in kept]
        tiers = tuple(replace(t, port=ports.free_port()) for t in (*kept, tool, claude_tool))
        order = ("standard", "fast", "tool", "claude-tool")
        stack_store.save(home, replace(demo, tiers=tiers, fallback_order=order,
                                       gateway=replace(demo.gateway, port=ports.free_port())))
        r = run_cli(home, "up", timeout=420)
        assert r.returncode == 0, r.stderr
        yield Stack(home, client_home, workdir, bins, secrets.read_secret(home, secrets.GATEWAY_KEY) or "")
    finally:
        lifecycle.down(home, grace=5)
        for proc in stack_processes(home):  # a safety net: never leave servers behind
            proc.kill()


def test_the_names_agents_send_reach_their_tiers(stack: Stack) -> None:
    """The front door routes the clients' own model names through the built-in aliases."""
    base = f"http://127.0.0.1:{stack_store.load(stack.home).gateway.port}"
    hello = [{"role": "user", "content": "hi"}]
    with httpx.Client(base_url=base, headers={"x-api-key": stack.key}, timeout=120) as http:
        for path, model, tier in (("/v1/messages", "claude-haiku-4-5-20251001", "fast"),
                                  ("/v1/messages", "claude-opus-4-8[1m]", "standard"),
                                  ("/v1/chat/completions", "gpt-5-codex", "standard")):
            r = http.post(path, json={"model": model, "messages": hello, "max_tokens": 4})
            assert r.status_code == 200, (model, r.text)
            assert (r.headers["x-mlx-stack-tier"], r.headers["x-mlx-stack-route"]) == (tier, "alias"), model
            assert r.headers["x-mlx-stack-requested"] == model
        r = http.post("/v1/chat/completions", json={"model": "llama-70b", "messages": hello, "max_tokens": 4})
        assert r.status_code == 404 and "claude-*opus*" in r.text, r.text
        listed = [m["id"] for m in http.get("/v1/models").json()["data"]]
        assert listed[:2] == ["standard", "fast"] and "gpt-*" in listed


def _tail(r: subprocess.CompletedProcess[str]) -> str:
    return f"stdout: {r.stdout[-1500:]}\nstderr: {r.stderr[-1500:]}"


def test_claude_code_with_its_own_model_names(stack: Stack) -> None:
    stack.connect("claude")
    settings = json.loads((stack.client_home / ".claude" / "settings.json").read_text())
    assert settings["env"]["ANTHROPIC_AUTH_TOKEN"] == stack.key
    r = stack.run(stack.bins.path("claude"), "-p", PROMPT, "--output-format", "json")
    assert r.returncode == 0, _tail(r)
    result = json.loads(r.stdout)
    assert result.get("is_error") is False and ANSWER in result["result"], _tail(r)


def test_codex_exec_over_responses_with_a_codex_model_name(stack: Stack) -> None:
    stack.connect("codex")
    r = stack.run(stack.bins.path("codex"), "exec", "--skip-git-repo-check", "--profile", "mlx-stack", PROMPT,
                  MLX_STACK_API_KEY=stack.key)
    assert r.returncode == 0 and ANSWER in r.stdout, _tail(r)


def test_opencode_run(stack: Stack) -> None:
    stack.connect("opencode")
    r = stack.run(stack.bins.path("opencode"), "run", "-m", "mlx-stack/standard", PROMPT)
    assert r.returncode == 0 and ANSWER in r.stdout, _tail(r)
    assert "error" not in r.stderr.lower(), _tail(r)


def test_a_tool_round_trip_through_opencode(stack: Stack) -> None:
    """The scripted tier calls `bash`; OpenCode runs it and sends the result back; the
    tier's next turn (after the tool result) is plain text."""
    stack.connect("opencode")
    r = stack.run(stack.bins.path("opencode"), "run", "-m", "mlx-stack/tool", "Run the greeting command.")
    assert r.returncode == 0, _tail(r)
    out = r.stdout + r.stderr
    assert TOOL_COMMAND in out and "hello from mlx-stack" in out.replace(TOOL_COMMAND, ""), _tail(r)
    assert TOOL_ANSWER in out, _tail(r)


def test_a_tool_round_trip_through_claude_code(stack: Stack) -> None:
    """The scripted tier calls Claude Code's `Bash` tool; Claude Code runs it (allowed by
    the command line) and sends the result; the tier's next turn is plain text."""
    stack.connect("claude")
    r = stack.run(stack.bins.path("claude"), "-p", "Run the greeting command.", "--model", "claude-tool",
                  "--allowedTools", "Bash", "--output-format", "json")
    assert r.returncode == 0, _tail(r)
    result = json.loads(r.stdout)
    assert result.get("is_error") is False and TOOL_ANSWER in result["result"], _tail(r)
    assert result.get("num_turns", 2) >= 2, _tail(r)


def _base(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack_store.load(stack.home).gateway.port}"


def test_count_tokens_is_the_tiers_own_count(stack: Stack) -> None:
    from tokenizers import Tokenizer

    system, question = "You are a careful coding agent. " * 20, "Count the tokens in this sentence, please."
    r = httpx.post(_base(stack) + "/v1/messages/count_tokens?beta=true", timeout=60,
                   headers={"x-api-key": stack.key, "anthropic-beta": "token-counting-2024-11-01"},
                   json={"model": "claude-opus-4-8[1m]", "system": system,
                         "messages": [{"role": "user", "content": question}]})
    assert r.status_code == 200, r.text
    tier = stack_store.load(stack.home).tier("standard")
    tok = Tokenizer.from_file(str(Path(tier.path) / "tokenizer.json"))
    expected = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in (system, question))
    assert r.json()["input_tokens"] == expected


def test_a_prompt_longer_than_every_window_gets_the_error_clients_compact_on(stack: Stack) -> None:
    huge = "word " * 400_000  # ~400K tokens: past every window
    headers = {"x-api-key": stack.key}
    r = httpx.post(_base(stack) + "/v1/messages", headers=headers, timeout=60, json={
        "model": "claude-opus-4-8[1m]", "max_tokens": 10, "messages": [{"role": "user", "content": huge}]})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"].startswith("prompt is too long:")
    r = httpx.post(_base(stack) + "/v1/chat/completions", headers=headers, timeout=60, json={
        "model": "gpt-5-codex", "messages": [{"role": "user", "content": huge}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert "maximum context length" in r.json()["error"]["message"]


def test_claude_codes_output_limit_is_lowered_to_what_the_tier_takes(stack: Stack) -> None:
    r = httpx.post(_base(stack) + "/v1/messages", headers={"x-api-key": stack.key}, timeout=120, json={
        "model": "claude-opus-4-8[1m]", "max_tokens": 64000, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text


def test_new_conversations_share_the_prefix_despite_the_billing_line(stack: Stack) -> None:
    """Two Claude Code conversations differ only in the billing line's suffix: with the line
    normalized, the second one's long system prompt comes from the tier's prefix cache."""
    system = " ".join(f"Rule {i}: keep functions small and name things well." for i in range(300))

    def ask(suffix: str, question: str) -> None:
        billing = f"x-anthropic-billing-header: cc_version=2.1.197.{suffix}; cc_entrypoint=sdk-cli;"
        body = {"model": "claude-opus-4-8[1m]", "max_tokens": 4,
                "system": [{"type": "text", "text": billing}, {"type": "text", "text": system}],
                "messages": [{"role": "user", "content": question}]}
        r = httpx.post(_base(stack) + "/v1/messages", headers={"x-api-key": stack.key}, json=body,
                       timeout=300)
        assert r.status_code == 200, r.text

    def hits() -> float:
        text = httpx.get(_base(stack) + "/metrics", headers={"x-api-key": stack.key}, timeout=30).text
        name = 'mlx_stack_gateway_tier_prefix_cache_hits{tier="standard"}'
        line = [x for x in text.splitlines() if x.startswith(name)]
        assert line, "the tier reports no prefix-cache counts"
        return float(line[0].rsplit(" ", 1)[1])

    ask("a01", "First conversation.")
    before = hits()
    ask("b02", "Second conversation.")
    assert hits() > before
