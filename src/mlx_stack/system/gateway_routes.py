"""Which model names a running gateway serves (``GET /v1/models``), standard library only."""

from __future__ import annotations

import json
from typing import cast
from urllib.parse import urlsplit

from mlx_stack.json_types import as_object
from mlx_stack.system import http_client


def served_models(base_url: str, *, api_key: str | None = None, timeout: float = 5.0) -> list[str] | None:
    """The ids ``{base_url}/v1/models`` lists, or None when it does not answer 200 with a list."""
    url = urlsplit(base_url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        status, raw = http_client.request(url, "GET", url.path.rstrip("/") + "/v1/models", headers=headers,
                                          timeout=timeout)
    except OSError:
        return None
    if status != 200:
        return None
    try:
        data = json.loads(raw).get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, list):
        return None
    return [str(m.get("id")) for m in map(as_object, cast(list[object], data)) if m is not None]
