"""How `setup` changes a stack, decided without I/O.

- :func:`diff` says which tiers a new stack adds, removes, changes (same name,
  anything else different: that tier restarts) or leaves alone (keeps serving).
- :func:`check_flags` refuses flag combinations that make no sense, before
  anything is downloaded or started.
- :func:`tier_name_for` derives a tier name from a model name for `--add` without `--as`.
- :func:`assign_ports` keeps the ports tiers already have and gives new ones free ports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mlx_stack.core.stack import _NAME, RESERVED_NAMES, Stack, Tier  # pyright: ignore[reportPrivateUsage]
from mlx_stack.errors import UsageError

FIRST_TIER_PORT = 8100
INTENT_CHOICES = ("agent", "balanced", "agent-fleet")
BUDGET_RANGE = (10, 90)


@dataclass(frozen=True)
class StackDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]
    routes_changed: bool  # the gateway's model list or fallbacks differ

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.routes_changed)


def diff(old: Stack | None, new: Stack) -> StackDiff:
    before = {t.name: t for t in old.tiers} if old is not None else {}
    after = {t.name: t for t in new.tiers}
    added = tuple(n for n in after if n not in before)
    removed = tuple(n for n in before if n not in after)
    changed = tuple(n for n in after if n in before and after[n] != before[n])
    unchanged = tuple(n for n in after if n in before and after[n] == before[n])
    routes = old is None or bool(added or removed or changed) or old.fallback_order != new.fallback_order \
        or old.gateway != new.gateway or old.cloud != new.cloud
    return StackDiff(added, removed, changed, unchanged, routes)


@dataclass(frozen=True)
class SetupFlags:
    demo: bool = False
    accept_defaults: bool = False
    intent: str | None = None
    budget_pct: int | None = None
    add: tuple[str, ...] = ()
    as_: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    model: str | None = None
    no_pull: bool = False
    no_start: bool = False
    force: bool = False  # start even when the memory guard says the tiers do not fit
    on_demand: bool = False  # the --add tiers are on-demand (started by the front door when needed)
    idle_unload: str | None = None  # their idle timeout (30s, 10m, 2h)
    demo_tool: str | None = None  # with --demo: standard is a scripted model calling this tool
    add_embedding: str | None = None  # an encoder for /v1/embeddings (tier `embed`)
    add_rerank: str | None = None  # a cross-encoder for /v1/rerank (tier `rerank`)

    @property
    def changes_stack(self) -> bool:
        return bool(self.add or self.remove or self.add_embedding or self.add_rerank)


def check_flags(f: SetupFlags) -> None:
    """Raise UsageError (exit 2) for a combination of flags that cannot be honoured."""
    def bad(message: str, hint: str) -> UsageError:
        return UsageError(message, hint=hint)

    if f.demo:
        others = [name for name, given in (
            ("--accept-defaults", f.accept_defaults), ("--intent", f.intent is not None),
            ("--budget-pct", f.budget_pct is not None), ("--add", bool(f.add)), ("--as", bool(f.as_)),
            ("--remove", bool(f.remove)), ("--model", f.model is not None), ("--no-pull", f.no_pull),
            ("--add-embedding", f.add_embedding is not None), ("--add-rerank", f.add_rerank is not None),
        ) if given]
        if others:
            raise bad(f"--demo cannot be combined with {', '.join(others)}",
                      "`mlx-stack setup --demo [--no-start]` builds its own tiny models")
    if f.demo_tool is not None and not f.demo:
        raise bad("--demo-tool only applies to --demo",
                  "`mlx-stack setup --demo --demo-tool Bash` scripts the demo's standard tier")
    if f.demo_tool is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", f.demo_tool):
        raise bad(f"invalid --demo-tool {f.demo_tool!r}: expected a tool name (letters, digits, _ . -)",
                  "the name of a tool the agent client offers, e.g. Bash (Claude Code) or bash (OpenCode)")
    if f.intent is not None and f.intent not in INTENT_CHOICES:
        raise bad(f"invalid --intent {f.intent!r}: expected one of {', '.join(INTENT_CHOICES)}",
                  "agent: a 64K+ window for coding agents; balanced favours quality; "
                  "agent-fleet favours speed and tool calling")
    lo, hi = BUDGET_RANGE
    if f.budget_pct is not None and not lo <= f.budget_pct <= hi:
        raise bad(f"invalid --budget-pct {f.budget_pct}: expected a whole number from {lo} to {hi}",
                  "the share of memory all tiers together may use")
    if f.model is not None and f.changes_stack:
        raise bad("--model cannot be combined with --add or --remove",
                  "--model writes a one-tier stack; --add/--remove change the current stack")
    if (f.model is not None or f.changes_stack) and (f.intent is not None or f.budget_pct is not None):
        raise bad("--intent and --budget-pct only apply to a recommended setup",
                  "drop them, or run `mlx-stack setup` without --add/--remove/--model")
    if f.as_ and len(f.as_) != len(f.add):
        raise bad(f"{len(f.as_)} --as for {len(f.add)} --add: give one --as per --add, or none",
                  "the n-th --as names the tier of the n-th --add, e.g. "
                  "`mlx-stack setup --add mlx-community/Qwen3-0.6B-4bit --as small`")
    if (f.on_demand or f.idle_unload is not None) and not f.add:
        raise bad("--on-demand and --idle-unload apply to the tiers of --add",
                  "e.g. `mlx-stack setup --add MODEL --as coder --on-demand --idle-unload 10m`; "
                  "for a tier that exists: `mlx-stack config set tiers.NAME.mode on-demand`")
    if f.idle_unload is not None:
        from mlx_stack.core.stack import parse_duration

        if not f.on_demand:
            raise bad("--idle-unload needs --on-demand", "only an on-demand tier unloads when idle")
        if parse_duration(f.idle_unload) is None:
            raise bad(f"invalid --idle-unload {f.idle_unload!r}", "a duration like 30s, 10m or 2h")
    names = list(f.as_)
    for name in names:
        check_tier_name(name)
    if len(set(names)) != len(names):
        raise bad("the same tier is named twice with --as", "give each added model its own tier name")
    if len(set(f.remove)) != len(f.remove):
        raise bad("the same tier is given twice to --remove", "name each tier once")
    both = sorted(set(names) & set(f.remove))
    if both:
        raise bad(f"tier {both[0]!r} is both added and removed",
                  f"to change the model of {both[0]}, only `--add MODEL --as {both[0]}`")


def check_tier_name(name: str) -> str:
    if not _NAME.match(name) or name in RESERVED_NAMES:
        raise UsageError(
            f"invalid tier name {name!r}",
            hint="lowercase letters, digits and '-', starting with a letter, at most 32; "
            "not " + "/".join(sorted(RESERVED_NAMES)),
        )
    return name


def tier_name_for(model: str) -> str:
    """``mlx-community/Qwen3-0.6B-4bit`` -> ``qwen3-0-6b-4bit`` (a valid tier name)."""
    base = model.rstrip("/").split("/")[-1].lower()
    slug = re.sub(r"[^a-z0-9]+", "-", base).strip("-") or "model"
    if not slug[0].isalpha():
        slug = "m-" + slug
    slug = slug[:32].rstrip("-")
    return slug if slug not in RESERVED_NAMES else f"{slug}-tier"


def assign_ports(tiers: Sequence[Tier], previous: Stack | None, gateway_port: int,
                 is_free: Callable[[int], bool], start: int = FIRST_TIER_PORT) -> list[Tier]:
    """Tiers with ports: a tier keeps the port it had (same name); others get the next free one."""
    from dataclasses import replace

    kept = {t.name: t.port for t in previous.tiers} if previous is not None else {}
    used = {gateway_port} | {kept[t.name] for t in tiers if t.name in kept}
    out: list[Tier] = []
    port = start
    for t in tiers:
        if t.name in kept:
            out.append(replace(t, port=kept[t.name]))
            continue
        while port in used or (previous is not None and port in {x.port for x in previous.tiers}) \
                or not is_free(port):
            port += 1
        used.add(port)
        out.append(replace(t, port=port))
    return out


def propose_on_demand(order: Sequence[str], planned_mb: dict[str, int], budget_mb: int,
                      on_demand: Sequence[str] = ()) -> list[str]:
    """The resident tiers to make on-demand so the rest fit the budget together: tiers stay
    resident in fallback order while they fit (the first one always stays); the others
    are proposed. Tiers already on-demand count for nothing here."""
    used = 0
    out: list[str] = []
    for i, name in enumerate(order):
        if name in on_demand or name not in planned_mb:
            continue
        if i == 0 or used + planned_mb[name] <= budget_mb:
            used += planned_mb[name]
        else:
            out.append(name)
    return out
