"""`mlx-stack status`: this machine's hardware, every service's state and the routing
rules with the front door's counts, from one read of stack.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from mlx_stack.paths import Paths

if TYPE_CHECKING:
    from mlx_stack.core.hardware import HardwareProfile
    from mlx_stack.services.lifecycle import StatusReport
    from mlx_stack.services.routing import RoutingReport


@dataclass
class StackStatus:
    hardware: HardwareProfile
    services: StatusReport
    routing: RoutingReport | None  # None when no stack is configured yet

    def as_dict(self) -> dict[str, object]:
        return {"hardware": self.hardware.as_dict(), **self.services.as_dict(),
                "routing": self.routing.as_dict() if self.routing is not None else None}

    @property
    def exit_code(self) -> int:
        """The services' exit code (see :attr:`StatusReport.exit_code`)."""
        return self.services.exit_code


def status(p: Paths, *, show_key: bool = False) -> StackStatus:
    """The hardware profile, the services (probed in parallel) and the routing report (its
    front door counts read while the probes wait)."""
    from mlx_stack.services import hardware, lifecycle, routing, stack_store
    from mlx_stack.system.probes import in_parallel

    stack = stack_store.load(p) if stack_store.exists(p) else None  # first: a bad one writes nothing
    hw = hardware.this_boot(p)  # detected once per boot (a Mac's detection takes ~0.3 s)
    if stack is None:  # "not configured"
        return StackStatus(hw, lifecycle.status(p, show_key=show_key, stack=None), None)
    services, rules = in_parallel([lambda: lifecycle.status(p, show_key=show_key, stack=stack),
                                   lambda: routing.report(p, stack)])
    return StackStatus(hw, cast("StatusReport", services), cast("RoutingReport", rules))
