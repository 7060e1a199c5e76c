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
    """What `status` shows: the hardware, the services and the routing report."""

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
    """The hardware profile, the services (probed in parallel; the last look's requests sent
    first, services.look_ahead) and the routing report, the last two made while the probes
    wait."""
    from mlx_stack.services import look_ahead

    sent = look_ahead.send(p)  # the last look's requests go first; the rest loads while they wait
    from mlx_stack.services import lifecycle, stack_store
    from mlx_stack.system.host import OneScan
    from mlx_stack.system.probes import in_parallel

    stack = stack_store.load(p) if stack_store.exists(p) else None  # first: a bad one writes nothing

    def hardware() -> HardwareProfile:
        from mlx_stack.services import hardware

        return hardware.this_boot(p)  # detected once per boot (a Mac's detection takes ~0.3 s)

    if stack is None:  # "not configured"
        return StackStatus(hardware(), lifecycle.status(p, show_key=show_key, stack=None), None)
    configured = stack

    def routing() -> RoutingReport:
        from mlx_stack.services import routing

        return routing.report(p, configured)

    # The probes go first; the rest (and its imports) is done while they wait.
    looked = OneScan(sent.ahead)
    services, rules, hw = in_parallel([
        lambda: lifecycle.status(p, show_key=show_key, stack=stack, host=looked), routing, hardware])
    look_ahead.remember(p, sent, looked)
    return StackStatus(cast("HardwareProfile", hw), cast("StatusReport", services),
                       cast("RoutingReport", rules))
