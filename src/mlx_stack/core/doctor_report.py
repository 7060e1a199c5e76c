"""The `doctor --report` document: every check and the raw outputs behind them,
redacted, as one JSON object a user can attach to a bug.

Redaction (pure): every stored key and token value, anything shaped like an API key
or a bearer token, and the serial numbers and UUIDs ``system_profiler`` prints are
replaced; the home folder becomes ``~``. Log lines and prompts are never collected.

A report is also a hardware sample: :func:`hardware_sample` returns the raw outputs
``core.hardware.profile_from_mac`` parses, and the profile the reporting machine
built from them, so tests can replay it (tests/unit/hw_samples/*.doctor.json).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

from mlx_stack.core.doctor import Check, exit_code, summary
from mlx_stack.json_types import JSONObject, as_list, as_object

FORMAT = "mlx-stack-doctor-report"
SCHEMA = 1
REDACTED = "<redacted>"

# Keys system_profiler prints that identify the machine or its owner.
_PRIVATE_SP_KEYS = ("serial_number", "platform_UUID", "provisioning_UDID")
# Key-like strings, whoever printed them: OpenAI/OpenRouter/LiteLLM (sk-...), Hugging Face
# (hf_...), and anything after "Bearer ".
_TOKEN_RE = re.compile(r"\b(?:sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{16,})|(?<=Bearer )[A-Za-z0-9._~+/=-]{8,}")
_SERIAL_RE = re.compile(
    r'("(?:IOPlatformSerialNumber|IOPlatformUUID|serial-number)"\s*=\s*)(<[^>]*>|"[^"]*")')


def scrub_sp_json(text: str) -> str:
    """``system_profiler -json`` output without the serial number and UUIDs."""
    try:
        data = json.loads(text)
    except ValueError:
        return text

    def walk(node: object) -> object:
        if isinstance(node, dict):
            items = cast(dict[str, object], node).items()
            return {k: (REDACTED if k in _PRIVATE_SP_KEYS else walk(v)) for k, v in items}
        if isinstance(node, list):
            return [walk(v) for v in cast(list[object], node)]
        return node

    return json.dumps(walk(data), indent=2)


def redact_text(text: str, secrets: Iterable[str], home: str) -> str:
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _TOKEN_RE.sub(REDACTED, text)
    text = _SERIAL_RE.sub(lambda m: m.group(1) + f'"{REDACTED}"', text)
    home = home.rstrip("/")
    if len(home) > 1:
        text = re.sub(re.escape(home) + r"(?=/|\b|$)", "~", text)
    return text


def redact(node: object, secrets: Iterable[str], home: str) -> object:
    """``node`` (JSON-like) with every string redacted (a mapping or sequence comes back as
    a new dict or list)."""
    values = list(secrets)
    if isinstance(node, str):
        return redact_text(node, values, home)
    if isinstance(node, Mapping):
        items = cast(Mapping[object, object], node).items()
        return {redact_text(str(k), values, home): redact(v, values, home) for k, v in items}
    if isinstance(node, list | tuple):
        return [redact(v, values, home) for v in cast(list[object] | tuple[object, ...], node)]
    return node


def build(checks: Sequence[Check], *, meta: Mapping[str, object], raw: Mapping[str, object],
          secrets: Iterable[str], home: str) -> JSONObject:
    """The whole report, redacted."""
    raw_copy = dict(raw)
    doc: dict[str, object] = {
        "format": FORMAT,
        "schema": SCHEMA,
        **meta,
        "exit_code": exit_code(checks),
        "summary": summary(checks),
        "checks": [c.as_dict() for c in checks],
        "raw": raw_copy,
    }
    mac = raw_copy.get("mac")
    if isinstance(mac, Mapping):
        mac = raw_copy["mac"] = dict(cast(Mapping[str, object], mac))
        for key in ("sp_hardware", "sp_displays"):
            text = mac.get(key)
            if isinstance(text, str) and text:
                mac[key] = scrub_sp_json(text)
    return cast(JSONObject, redact(doc, secrets, home))  # a mapping comes back as a dict


def is_report(data: object) -> bool:
    doc = as_object(data)
    return doc is not None and doc.get("format") == FORMAT


def hardware_sample(data: object) -> dict[str, object]:
    """From a report: the inputs of ``profile_from_mac`` (``mac``, None for a non-Mac
    report) and the profile the reporting machine built (``profile``)."""
    if not is_report(data):
        raise ValueError("not an mlx-stack doctor report")
    doc = as_object(data) or {}
    raw = as_object(doc.get("raw")) or {}
    checks = [c for c in map(as_object, as_list(doc.get("checks"))) if c is not None]
    hw = next((c for c in checks if c.get("id") == "hardware"), None)
    mac = as_object(raw.get("mac"))
    return {
        "mac": None if not mac else {
            "sysctl_text": mac.get("sysctl", ""),
            "ioreg_text": mac.get("ioreg", ""),
            "sp_displays_json": mac.get("sp_displays", ""),
            "sp_hardware_json": mac.get("sp_hardware", ""),
            "working_set_bytes": mac.get("working_set_bytes"),
        },
        "profile": (hw or {}).get("data", {}),
    }
