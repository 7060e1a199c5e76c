"""setup's pure decisions: stack diffs, flag combinations, tier names, ports."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.core.stack_change import SetupFlags, assign_ports, check_flags, diff, tier_name_for
from mlx_stack.errors import UsageError


def _tier(name: str, port: int, model: str = "m") -> Tier:
    return Tier(name=name, model=f"{model}-{name}", path=f"/models/{name}", port=port)


def _stack(*tiers: Tier, gateway: int = 4000) -> Stack:
    return Stack(tiers=tiers, fallback_order=tuple(t.name for t in tiers), gateway=Gateway(port=gateway))


OLD = _stack(_tier("standard", 8100), _tier("fast", 8101), _tier("longctx", 8102))


def test_diff_names_added_removed_changed_and_unchanged() -> None:
    new = _stack(_tier("standard", 8100), replace(_tier("fast", 8101), path="/other"), _tier("extra", 8103))
    d = diff(OLD, new)
    assert (d.added, d.removed) == (("extra",), ("longctx",))
    assert (d.changed, d.unchanged) == (("fast",), ("standard",))
    assert d.routes_changed and not d.empty


def test_diff_of_the_same_stack_is_empty_and_a_first_stack_changes_routes() -> None:
    assert diff(OLD, OLD).empty
    d = diff(None, OLD)
    assert d.added == ("standard", "fast", "longctx") and d.routes_changed
    assert diff(OLD, replace(OLD, fallback_order=("fast", "standard", "longctx"))).routes_changed
    assert diff(OLD, replace(OLD, gateway=Gateway(port=4001))).routes_changed


@pytest.mark.parametrize(("flags", "message"), [
    (SetupFlags(demo=True, add=("x",)), "--demo cannot be combined with --add"),
    (SetupFlags(demo=True, model="x", no_pull=True), "--demo cannot be combined with --model, --no-pull"),
    (SetupFlags(demo=True, accept_defaults=True), "--demo cannot be combined with --accept-defaults"),
    (SetupFlags(intent="fastest"), "invalid --intent 'fastest'"),
    (SetupFlags(budget_pct=5), "invalid --budget-pct 5"),
    (SetupFlags(budget_pct=95), "invalid --budget-pct 95"),
    (SetupFlags(model="x", add=("y",)), "--model cannot be combined with --add or --remove"),
    (SetupFlags(model="x", remove=("fast",)), "--model cannot be combined with --add or --remove"),
    (SetupFlags(add=("x",), intent="balanced"), "--intent and --budget-pct only apply"),
    (SetupFlags(remove=("fast",), budget_pct=50), "--intent and --budget-pct only apply"),
    (SetupFlags(model="x", intent="agent-fleet"), "--intent and --budget-pct only apply"),
    (SetupFlags(as_=("extra",)), "1 --as for 0 --add"),
    (SetupFlags(add=("a", "b"), as_=("x",)), "1 --as for 2 --add"),
    (SetupFlags(add=("a",), as_=("Bad Name",)), "invalid tier name 'Bad Name'"),
    (SetupFlags(add=("a",), as_=("gateway",)), "invalid tier name 'gateway'"),
    (SetupFlags(add=("a", "b"), as_=("x", "x")), "the same tier is named twice"),
    (SetupFlags(remove=("fast", "fast")), "the same tier is given twice"),
    (SetupFlags(add=("a",), as_=("fast",), remove=("fast",)), "tier 'fast' is both added and removed"),
])
def test_bad_flag_combinations(flags: SetupFlags, message: str) -> None:
    with pytest.raises(UsageError) as err:
        check_flags(flags)
    assert message in err.value.message
    assert err.value.exit_code == 2 and err.value.hint


@pytest.mark.parametrize("flags", [
    SetupFlags(), SetupFlags(demo=True, no_start=True), SetupFlags(intent="agent-fleet", budget_pct=10),
    SetupFlags(add=("a", "b")), SetupFlags(add=("a",), as_=("extra",), remove=("fast",), no_pull=True),
    SetupFlags(model="x", no_start=True, accept_defaults=True),
])
def test_good_flag_combinations(flags: SetupFlags) -> None:
    check_flags(flags)


@pytest.mark.parametrize(("model", "name"), [
    ("mlx-community/Qwen3-0.6B-4bit", "qwen3-0-6b-4bit"),
    ("qwen3-8b", "qwen3-8b"),
    ("/models/7B_Model/", "m-7b-model"),
    ("org/" + "x" * 50, "x" * 32),
    ("org/Gateway", "gateway-tier"),
])
def test_tier_names_from_models(model: str, name: str) -> None:
    assert tier_name_for(model) == name


def test_ports_kept_for_existing_tiers_new_ones_skip_taken_ports() -> None:
    tiers = [replace(_tier("standard", 0), model="new"), _tier("extra", 0), _tier("more", 0)]
    busy = {8103}  # held by some other program
    placed = assign_ports(tiers, OLD, 4000, lambda port: port not in busy)
    assert [t.port for t in placed] == [8100, 8104, 8105]  # 8101/8102: fast/longctx still run
    fresh = assign_ports([_tier("a", 0), _tier("b", 0)], None, 8100, lambda port: True)
    assert [t.port for t in fresh] == [8101, 8102]  # never the gateway's port
