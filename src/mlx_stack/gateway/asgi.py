"""The ASGI interface the front door speaks: types only (nothing here runs per request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

# A scope or message is a dict whose value type depends on the key (str, bytes, int, bool,
# header pairs, a client tuple) and the server adds keys of its own: Any is the honest value.
Scope: TypeAlias = dict[str, Any]
Message: TypeAlias = dict[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
