"""What the benchmark scripts share: a demo stack on free ports, and the report.

Run as scripts (`python benchmarks/NAME.py`), they import this module from their folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from mlx_stack.core.stack import Stack
from mlx_stack.paths import Paths
from mlx_stack.services import demo_stack, stack_store
from mlx_stack.system import ports

# (name, value, unit, op, target, passed)
Check = tuple[str, float, str, str, float, bool]


def demo_stack_on_free_ports(p: Paths) -> Stack:
    """The demo stack written to ``p``, its tiers and front door moved to free ports."""
    demo_stack.write_demo_stack(p)
    stack = stack_store.load(p)
    tiers = tuple(replace(t, port=ports.free_port()) for t in stack.tiers)
    gateway = replace(stack.gateway, port=ports.free_port())
    stack_store.save(p, replace(stack, tiers=tiers, gateway=gateway))
    return stack_store.load(p)


def report(checks: Sequence[Check], results: dict[str, object], path: Path, width: int = 52) -> int:
    """Print each figure beside its target with PASS/FAIL, write ``results`` (with the checks
    and the load average) to ``path`` as JSON; the exit code: 0 when every check passed."""
    for name, value, unit, op, target, ok in checks:
        print(f"{name:<{width}} {value:>9.2f} {unit:<4} target {op} {target:<6g} {'PASS' if ok else 'FAIL'}")
    keys = ("name", "value", "unit", "op", "target", "pass")
    results["checks"] = [dict(zip(keys, c, strict=True)) for c in checks]
    results["load_average"] = os.getloadavg()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return 0 if all(c[5] for c in checks) else 1
