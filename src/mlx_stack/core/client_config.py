"""The coding agents' own config files, pointed at this stack (pure, no I/O).

`mlx-stack connect CLIENT` merges one entry into a client's file and leaves the rest as
it was; `doctor` reads the entry back (:func:`problem`). What each client reads (checked
against Claude Code 2.1.197, Codex CLI 0.171 and OpenCode 1.18 installed from npm):

- Claude Code: ``~/.claude/settings.json`` (``$CLAUDE_CONFIG_DIR``), its ``env`` block:
  ``ANTHROPIC_BASE_URL`` (the front door, no ``/v1``), ``ANTHROPIC_AUTH_TOKEN`` (sent as
  ``Authorization: Bearer``), ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` and
  ``CLAUDE_CODE_MAX_OUTPUT_TOKENS`` (see :func:`max_output_tokens`). An
  ``ANTHROPIC_API_KEY`` there would win over the token, so it is removed.
- Codex CLI: ``$CODEX_HOME/config.toml`` (``~/.codex``), the table
  ``[model_providers.mlx-stack]`` (``base_url`` ending in ``/v1``, ``env_key``,
  ``wire_api = "responses"``); a profile file ``$CODEX_HOME/mlx-stack.config.toml``
  (``codex --profile mlx-stack``) selects it with a Codex model name the aliases route.
  Only that table's lines are rewritten, so comments elsewhere stay.
- OpenCode: ``~/.config/opencode/opencode.json``, ``provider.mlx-stack`` (the
  ``@ai-sdk/openai-compatible`` package, ``baseURL``, ``apiKey`` as ``{file:...}`` so the
  key stays in the stack's secrets folder, one model per tier and ``auto``).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass

from mlx_stack.json_types import as_object

CLIENTS = ("claude", "codex", "opencode")
PROVIDER = "mlx-stack"  # the provider/profile name in Codex's and OpenCode's files
KEY_ENV = "MLX_STACK_API_KEY"  # the variable Codex reads the key from (env_key)
CODEX_MODEL = "gpt-5-codex"  # a Codex model name; the built-in aliases route it
OPENCODE_PACKAGE = "@ai-sdk/openai-compatible"
CLAUDE_BASE, CLAUDE_TOKEN = "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"
CLAUDE_QUIET = "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"
CLAUDE_MAX_OUT = "CLAUDE_CODE_MAX_OUTPUT_TOKENS"
# Claude Code 2.1.197 asks for max_tokens 64000 with its default (opus) model; vllm-mlx 0.6
# refuses more than its --max-request-tokens (32768 by default) with a 400.
MAX_OUTPUT_TOKENS = 32000


class ClientFileError(ValueError):
    """A client's file cannot be merged (not JSON/TOML, or of a shape we must not touch)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    scheme: str = "http"  # https with gateway.tls-cert

    @property
    def root(self) -> str:
        """The front door without a path (what Claude Code appends ``/v1/messages`` to)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def v1(self) -> str:
        return self.root + "/v1"


def _json_object(text: str | None, source: str) -> dict[str, object]:
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ClientFileError(f"{source} is not valid JSON ({exc})") from None
    top = as_object(data)
    if top is None:
        raise ClientFileError(f"{source} does not hold a JSON object")
    return top


# --- Claude Code --------------------------------------------------------------------------


def max_output_tokens(window: int | None) -> int:
    """The answer budget Claude Code may ask for: at most a quarter of the agent tier's
    window, never past what vllm-mlx accepts."""
    return MAX_OUTPUT_TOKENS if not window else max(1024, min(MAX_OUTPUT_TOKENS, window // 4))


def claude_env(endpoint: Endpoint, key: str, window: int | None = None) -> dict[str, str]:
    return {CLAUDE_BASE: endpoint.root, CLAUDE_TOKEN: key, CLAUDE_QUIET: "1",
            CLAUDE_MAX_OUT: str(max_output_tokens(window))}


def merge_claude(text: str | None, endpoint: Endpoint, key: str, source: str,
                 window: int | None = None) -> str:
    """settings.json with our ``env`` entries merged in (everything else kept)."""
    data = _json_object(text, source)
    env = data.get("env", {})
    merged = as_object(env)
    if merged is None:
        raise ClientFileError(f"{source}: `env` is not an object")
    merged = {k: v for k, v in merged.items() if k != "ANTHROPIC_API_KEY"}
    merged.update(claude_env(endpoint, key, window))
    data["env"] = merged
    return json.dumps(data, indent=2) + "\n"


# --- Codex CLI ----------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_TABLE_START = re.compile(r"^\s*\[")
_OUR_TABLE = f"model_providers.{PROVIDER}"


def _header_name(line: str) -> str | None:
    m = _HEADER.match(line)
    if m is None:
        return None
    return ".".join(part.strip().strip('"').strip("'") for part in m.group(1).split("."))


def codex_table(endpoint: Endpoint) -> str:
    return (f"[{_OUR_TABLE}]\n"
            f'name = "mlx-stack"\n'
            f'base_url = "{endpoint.v1}"\n'
            f'env_key = "{KEY_ENV}"\n'
            f'wire_api = "responses"\n')


def codex_profile() -> str:
    """The whole profile file (``codex --profile mlx-stack``): ours, written as a whole."""
    return ("# Written by `mlx-stack connect codex`: run `codex --profile mlx-stack`.\n"
            f'model_provider = "{PROVIDER}"\n'
            f'model = "{CODEX_MODEL}"\n')


def _parse_toml(text: str, source: str) -> dict[str, object]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ClientFileError(f"{source} is not valid TOML ({exc})") from None


def _without_ours(doc: Mapping[str, object]) -> dict[str, object]:
    out = dict(doc)
    providers = as_object(out.get("model_providers"))
    if providers is not None:
        rest = {k: v for k, v in providers.items() if k != PROVIDER}
        if rest:
            out["model_providers"] = rest
        else:
            del out["model_providers"]
    return out


def merge_codex(text: str | None, endpoint: Endpoint, source: str) -> str:
    """config.toml with the ``[model_providers.mlx-stack]`` table replaced or appended; the
    other lines are kept byte for byte. ClientFileError when the result would not read back
    as the same settings plus ours (e.g. the provider written as an inline table)."""
    before = _parse_toml(text or "", source)
    lines = (text or "").splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _header_name(line) == _OUR_TABLE), None)
    table = codex_table(endpoint)
    if start is None:
        head = "".join(lines)
        if head and not head.endswith("\n"):
            head += "\n"
        out = head + ("\n" if head.strip() else "") + table
    else:
        end = next((i for i in range(start + 1, len(lines)) if _TABLE_START.match(lines[i])), len(lines))
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1  # blank and comment lines just above the next table belong to it
        tail = lines[end:]
        out = "".join(lines[:start]) + table + ("\n" if tail and tail[0].strip() else "") + "".join(tail)
    after = _parse_toml(out, source)
    if _without_ours(after) != _without_ours(before) or codex_problem(after, endpoint) is not None:
        raise ClientFileError(f"{source}: the `{_OUR_TABLE}` provider is written in a form this "
                              "command does not edit (an inline or dotted table)")
    return out


def codex_problem(doc: Mapping[str, object], endpoint: Endpoint) -> str | None:
    """Why a parsed config.toml does not point Codex at this stack, or None."""
    entry = as_object((as_object(doc.get("model_providers")) or {}).get(PROVIDER))
    if entry is None:
        return f"no [{_OUR_TABLE}] table"
    if entry.get("base_url") != endpoint.v1:
        return f"[{_OUR_TABLE}] base_url is {entry.get('base_url')!r}, this stack is {endpoint.v1}"
    if entry.get("wire_api") != "responses":
        return f"[{_OUR_TABLE}] wire_api is not \"responses\""
    if not entry.get("env_key"):
        return f"[{_OUR_TABLE}] has no env_key"
    return None


# --- OpenCode -----------------------------------------------------------------------------


def opencode_provider(endpoint: Endpoint, key_file: str,
                      windows: Mapping[str, int | None]) -> dict[str, object]:
    models: dict[str, object] = {}
    for name, window in windows.items():
        model: dict[str, object] = {"name": f"{name} (mlx-stack)"}
        if window:
            model["limit"] = {"context": window, "output": min(8192, max(window // 4, 256))}
        models[name] = model
    return {"npm": OPENCODE_PACKAGE, "name": "mlx-stack",
            "options": {"baseURL": endpoint.v1, "apiKey": f"{{file:{key_file}}}"},
            "models": models}


def merge_opencode(text: str | None, endpoint: Endpoint, key_file: str,
                   windows: Mapping[str, int | None], source: str) -> str:
    data = _json_object(text, source)
    providers = as_object(data.get("provider", {}))
    if providers is None:
        raise ClientFileError(f"{source}: `provider` is not an object")
    providers[PROVIDER] = opencode_provider(endpoint, key_file, windows)
    data["provider"] = providers
    data.setdefault("$schema", "https://opencode.ai/config.json")
    return json.dumps(data, indent=2) + "\n"


# --- doctor -------------------------------------------------------------------------------


def problem(client: str, text: str, endpoint: Endpoint, key: str | None, source: str) -> str | None:
    """Why ``client``'s file (its text) does not point at this stack, or None."""
    try:
        if client == "codex":
            return codex_problem(_parse_toml(text, source), endpoint)
        data = _json_object(text, source)
    except ClientFileError as exc:
        return str(exc)
    if client == "claude":
        env = as_object(data.get("env")) or {}
        if env.get(CLAUDE_BASE) != endpoint.root:
            return f"env.{CLAUDE_BASE} is {env.get(CLAUDE_BASE)!r}, this stack is {endpoint.root}"
        if key is not None and env.get(CLAUDE_TOKEN) != key:
            return f"env.{CLAUDE_TOKEN} is not this stack's key"
        return None
    entry = as_object((as_object(data.get("provider")) or {}).get(PROVIDER))
    options = as_object(entry.get("options")) if entry is not None else None
    if options is None:
        return f"no provider.{PROVIDER}"
    if options.get("baseURL") != endpoint.v1:
        return (f"provider.{PROVIDER}.options.baseURL is {options.get('baseURL')!r}, "
                f"this stack is {endpoint.v1}")
    return None


def is_connected(client: str, text: str) -> bool:
    """True when the file holds an entry for mlx-stack at all (doctor checks only those):
    our provider for Codex and OpenCode; for Claude Code a base URL on this machine."""
    if client != "claude":
        return PROVIDER in text
    try:
        env = as_object(_json_object(text, "settings.json").get("env")) or {}
    except ClientFileError:
        return False
    base = env.get(CLAUDE_BASE)
    return isinstance(base, str) and re.match(r"^http://(127\.0\.0\.1|localhost)[:/]", base) is not None
