"""Which tier each conversation was on.

A tier's prefix cache holds the conversations it served: the next turn of one belongs
on the same tier. :class:`Sessions` remembers, per conversation (``core.agent_requests.
session_key``), the tier that last answered it, and puts that tier first again when
``auto`` would otherwise choose differently (a turn that grew past the long-prompt
threshold, a tool-less turn of a tool conversation). A named tier is never overridden.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import replace

from mlx_stack.core.front_door import Plan

KEPT = 4096  # conversations remembered (least recently used forgotten first)
TTL_S = 3600.0


class Sessions:
    def __init__(self, kept: int = KEPT, ttl_s: float = TTL_S) -> None:
        self._tiers: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.kept = kept
        self.ttl_s = ttl_s
        self.kept_on = 0  # requests put back on their conversation's tier

    def keep(self, session: str, p: Plan, *, continued: bool = True) -> Plan:
        """``p`` with the conversation's tier first, when ``auto`` chose and it can serve.
        ``continued``: the request carries earlier turns (a conversation known only by its
        opening is not followed on its first turn: another with the same opening may be new)."""
        seen = self._tiers.get(session) if continued or not session.startswith("o:") else None
        if seen is None or not p.reason.startswith("auto") or not p.chain or p.chain[0] == seen[0]:
            return p
        tier, at = seen
        if time.monotonic() - at > self.ttl_s or tier not in p.chain:
            return p
        self.kept_on += 1
        return replace(p, routed=tier, reason="auto-session",
                       chain=(tier, *(n for n in p.chain if n != tier)))

    def remember(self, session: str, tier: str) -> None:
        self._tiers[session] = (tier, time.monotonic())
        self._tiers.move_to_end(session)
        while len(self._tiers) > self.kept:
            self._tiers.popitem(last=False)
