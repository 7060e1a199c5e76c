"""`setup`: from nothing to a running stack chosen for this machine, or the stack's next shape.

Three shapes, one ending:

- recommended (no model flags): hardware -> recommendation (intent, budget) ->
  confirmation -> downloads -> the three tiers;
- ``--model M``: one tier, ``standard``, serving M;
- ``--add M [--as T]`` / ``--remove T``: the current stack, changed.

Then :func:`stack_apply.apply` writes stack.yaml under the lock and changes only
what differs on a running stack, and ``up`` starts whatever is not running yet.
Every download happens before the stack is touched: a failed or interrupted
setup leaves the previous stack exactly as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mlx_stack.core.stack import CHAT, EMBEDDING, RERANK, Gateway, Stack, Tier
from mlx_stack.core.stack_change import SetupFlags, assign_ports, check_flags, check_tier_name, tier_name_for
from mlx_stack.core.units import format_bytes
from mlx_stack.errors import ConflictError, MlxStackError, NotFoundError
from mlx_stack.paths import Paths
from mlx_stack.services import pull as pulling
from mlx_stack.services.stack_apply import ApplyResult

if TYPE_CHECKING:
    from mlx_stack.core.catalog import CatalogEntry
    from mlx_stack.core.hardware import HardwareProfile
    from mlx_stack.core.memory_plan import ServingProfile, TierNeed
    from mlx_stack.core.scoring import Recommendation
    from mlx_stack.services.serving_plan import Planned


class SetupUI(Protocol):
    """What setup shows and asks; the CLI implements it with Rich, tests with a recorder."""

    interactive: bool

    def say(self, message: str) -> None: ...
    def hardware(self, profile: HardwareProfile) -> None: ...
    def recommendation(self, rec: Recommendation, profiles: Mapping[str, ServingProfile]) -> None: ...
    def ask_intent(self, default: str) -> str: ...
    def ask_budget_pct(self, default: int) -> int: ...
    def confirm(self, question: str) -> bool: ...
    def pull_started(self, plan: pulling.Plan) -> None: ...
    def pull_progress(self, done: int, total: int) -> None: ...
    def pull_finished(self) -> None: ...


def stack_text(p: Paths) -> str | None:
    """stack.yaml as it is now (None: none, or unreadable): taken before a setup, to say
    after a failure whether the stack changed."""
    from mlx_stack.errors import StateError
    from mlx_stack.system.fs import read_state_bytes

    try:
        raw = read_state_bytes(p.stack_file, "")
    except StateError:
        return None
    return None if raw is None else raw.decode("utf-8", "surrogateescape")  # compared, never parsed


def resume_hint(p: Paths, before: str | None, *, resume: bool = False) -> str:
    """What a failed or interrupted setup left: the stack as it was (``before``), or updated."""
    if stack_text(p) == before:
        what = "the previous stack is unchanged" if before is not None else "no stack was written"
        if resume:
            return f"{what}; run the same command again to resume (finished downloads are kept)"
        return what
    return "stack.yaml was updated; run `mlx-stack up` to start what is not running yet"


class SetupCancelled(MlxStackError):
    """The user said no at the confirmation: nothing changed (exit 0)."""

    exit_code = 0


@dataclass(frozen=True)
class Wanted:
    """One tier to set up: its name and the model to serve."""

    tier: str
    spec: str  # catalog id, hub repo or a local folder
    quant: str | None = None
    context: int | None = None  # the window the recommendation planned (the agent intent's)
    kind: str = "chat"  # or embedding | rerank (--add-embedding / --add-rerank)


@dataclass
class SetupResult:
    stack: Stack
    applied: ApplyResult
    up_started: list[str] = field(default_factory=list)
    endpoint: str = ""
    downloaded: list[str] = field(default_factory=list)


def run(p: Paths, flags: SetupFlags, ui: SetupUI) -> SetupResult:
    """Validate, decide, download, then apply. Raises before touching the stack on any failure."""
    from mlx_stack.services import config, lifecycle

    check_flags(flags)
    settings = config.load(p)
    default_quant = settings.get("default-quant")
    previous = _previous(p, flags, ui)
    intent = flags.intent
    if flags.changes_stack:
        wanted = _changes(previous, flags)
    elif flags.model is not None:
        wanted = [Wanted("standard", flags.model)]
    else:
        wanted, intent = _recommended(p, flags, ui, default_quant, settings.get("memory-budget-pct"))
    tiers, downloaded, needs = _fetch(p, wanted, ui, no_pull=flags.no_pull, default_quant=default_quant,
                                      confirm=not flags.accept_defaults and ui.interactive)
    new = _build(p, previous, tiers, flags, int(settings.get("litellm-port")), intent)
    new = _plan(p, new, needs, intent, flags, ui)
    from mlx_stack.services import stack_apply

    applied = stack_apply.apply(p, new, start=not flags.no_start, say=ui.say,
                                replace_corrupt=not flags.changes_stack, force=flags.force)
    result = SetupResult(new, applied, downloaded=downloaded, endpoint=lifecycle.endpoint(new))
    if not flags.no_start:
        up = lifecycle.up(p, force=flags.force)
        result.up_started = up.started
    return result


def _plan(p: Paths, stack: Stack, needs: dict[str, TierNeed], intent: str | None, flags: SetupFlags,
          ui: SetupUI) -> Stack:
    """Every new or changed tier gets its serving profile (kept tiers keep theirs)."""
    from mlx_stack.core.units import gb
    from mlx_stack.services import serving_plan

    planned = serving_plan.plan_stack(p, stack, intent=intent, needs=needs, pct=flags.budget_pct)
    if planned.over_budget and not flags.force:
        proposal = _propose_on_demand(planned, ui, ask=ui.interactive and not flags.accept_defaults)
        if proposal is not None:
            return proposal
    if any(t.on_demand for t in planned.stack.tiers):
        budgeted = _on_demand_budget(planned.stack, planned.budget_bytes)
        if budgeted is not None:
            return budgeted
    if planned.over_budget:
        total = sum(t.serving.need_mb for t in planned.stack.tiers if t.serving is not None) * 1024 * 1024
        ui.say(f"warning: the tiers need {gb(total)}, more than the memory budget of "
               f"{gb(planned.budget_bytes)}; new tiers get no prefix cache (the memory guard still checks "
               "each start)")
    return planned.stack


def _propose_on_demand(planned: Planned, ui: SetupUI, *, ask: bool) -> Stack | None:
    """Tiers that do not fit together in the budget: propose on-demand for those past the
    budget (in fallback order); asked on a terminal, taken with --accept-defaults."""
    from mlx_stack.core.memory_plan import MB
    from mlx_stack.core.stack import ON_DEMAND
    from mlx_stack.core.stack_change import propose_on_demand
    from mlx_stack.core.units import gb

    stack = planned.stack
    plans = {t.name: t.serving.planned_mb for t in stack.tiers if t.serving is not None}
    budget_mb = planned.budget_bytes // MB
    names = propose_on_demand(stack.fallback_order, plans, budget_mb,
                              [t.name for t in stack.tiers if t.on_demand])
    if not names:
        return None
    question = (f"the tiers do not fit together in the memory budget of {gb(planned.budget_bytes)}: make "
                f"{', '.join(names)} on-demand (started by the front door on the first request that needs "
                "it, stopped after 10 min idle)?")
    if ask and not ui.confirm(question):
        return None
    if not ask:
        ui.say(f"{', '.join(names)}: on-demand (the tiers do not fit together in the memory budget of "
               f"{gb(planned.budget_bytes)}); change it with `mlx-stack config set tiers.NAME.mode resident`")
    tiers = tuple(replace(t, mode=ON_DEMAND) if t.name in names else t for t in stack.tiers)
    return _on_demand_budget(replace(stack, tiers=tiers), planned.budget_bytes) or replace(stack, tiers=tiers)


def _on_demand_budget(stack: Stack, budget_bytes: int) -> Stack | None:
    """A stack with on-demand tiers records the budget of what runs at once: the configured
    one, or the resident tiers plus the largest on-demand one when that is more (so
    starting a second on-demand tier past it evicts the first). None when a tier has no plan."""
    from mlx_stack.core.memory_plan import MB

    plans = {t.name: t.serving.planned_mb for t in stack.tiers if t.serving is not None}
    if len(plans) != len(stack.tiers):
        return None
    resident = sum(plans[t.name] for t in stack.tiers if not t.on_demand)
    largest = max((plans[t.name] for t in stack.tiers if t.on_demand), default=0)
    return replace(stack, memory_budget_mb=max(budget_bytes // MB, resident + largest))


def _previous(p: Paths, flags: SetupFlags, ui: SetupUI) -> Stack | None:
    """The current stack; a corrupt stack.yaml is replaced by a new setup, not changed by --add/--remove."""
    from mlx_stack.errors import StateError
    from mlx_stack.services import stack_store

    if not stack_store.exists(p):
        return None
    try:
        return stack_store.load(p)
    except StateError as exc:
        if flags.changes_stack:
            raise
        ui.say(f"warning: {exc.message}; a new stack will replace it")
        return None


def _changes(previous: Stack | None, flags: SetupFlags) -> list[Wanted]:
    if previous is None:
        raise NotFoundError(
            "no stack to change yet",
            hint="run `mlx-stack setup` (or `--model MODEL`) first; --add/--remove change an existing stack",
        )
    for name in flags.remove:
        previous.tier(name)  # NotFoundError naming the tiers
    names = list(flags.as_) + [tier_name_for(spec) for spec in flags.add[len(flags.as_):]]
    for name in names:
        check_tier_name(name)
    if len(set(names)) != len(names):
        raise ConflictError("two added models would get the same tier name",
                            hint="name each with --as")
    if len(previous.tiers) - len(flags.remove) + len([n for n in names if n not in previous.tier_names]) < 1:
        raise ConflictError("that would leave the stack without any tier",
                            hint="`mlx-stack down` stops the stack; --remove keeps at least one tier")
    wanted = [Wanted(name, spec) for name, spec in zip(names, flags.add, strict=True)]
    return wanted + _retrieval_wanted(previous, flags, {w.tier for w in wanted})


def _retrieval_wanted(previous: Stack, flags: SetupFlags, taken: set[str]) -> list[Wanted]:
    """--add-embedding / --add-rerank: tier `embed` / `rerank` (replacing the model of a
    retrieval tier of that name), else a name from the model's."""
    out: list[Wanted] = []
    for spec, kind, name in ((flags.add_embedding, EMBEDDING, "embed"), (flags.add_rerank, RERANK, "rerank")):
        if spec is None:
            continue
        held = next((t for t in previous.tiers if t.name == name), None)
        if name in taken or (held is not None and held.kind != kind):
            name = tier_name_for(spec)
        out.append(Wanted(name, spec, kind=kind))
    return out


def _recommended(
    p: Paths, flags: SetupFlags, ui: SetupUI, quant: str, config_pct: int
) -> tuple[list[Wanted], str]:
    """The recommended tiers, and the intent they were chosen for (asked or from --intent)."""
    from mlx_stack.core.memory_plan import for_recommendation
    from mlx_stack.core.scoring import recommend
    from mlx_stack.services import hardware
    from mlx_stack.services.catalog_store import load_catalog
    from mlx_stack.services.models import saved_results
    from mlx_stack.system import hub

    profile = hardware.detect()
    ui.hardware(profile)
    ask = ui.interactive and not flags.accept_defaults
    catalog = list(load_catalog())
    if flags.accept_defaults or not ui.interactive or not hub.token():
        catalog = [e for e in catalog if not e.gated]  # the zero-config path needs no token
    # The proposal: `agent` (a 64K+ window for coding agents) when this machine can afford it.
    default = "agent" if recommend(profile, catalog, intent="agent", quant=quant,
                                   memory_budget_pct=int(config_pct)).tiers else "balanced"
    intent = flags.intent or (ui.ask_intent(default) if ask else default)
    pct = flags.budget_pct or (ui.ask_budget_pct(int(config_pct)) if ask else int(config_pct))
    rec = recommend(profile, catalog, intent=intent, quant=quant, memory_budget_pct=pct,
                    saved=saved_results(p, profile))
    # Each tier's serving plan within the GPU working-set limit (the memory without one).
    ui.recommendation(rec, for_recommendation(rec, int(profile.gpu_limit_bytes or profile.memory_bytes)))
    if not rec.tiers:
        reason = rec.dropped[0].reason if rec.dropped else "no catalog model fits"
        raise ConflictError(f"nothing to run on this machine: {reason}",
                            hint="raise --budget-pct, or pick a model yourself with `--model`")
    agent_window = {t.name: t.context for t in rec.tiers if intent == "agent" and t.name == "standard"}
    retrieval = [Wanted(r.name, r.entry.id, r.quant, kind=r.entry.kind) for r in rec.retrieval]
    chat = [Wanted(t.name, t.entry.id, t.quant, agent_window.get(t.name)) for t in rec.tiers]
    return chat + retrieval, intent


@dataclass(frozen=True)
class _Local:
    wanted: Wanted
    model: str
    path: str
    entry: CatalogEntry | None = None
    quant: str | None = None


def _fetch(p: Paths, wanted: list[Wanted], ui: SetupUI, *, no_pull: bool, default_quant: str,
           confirm: bool) -> tuple[list[Tier], list[str], dict[str, TierNeed]]:
    """Every wanted model as a local folder: found on disk, or planned, confirmed, downloaded."""
    local: list[_Local] = []
    plans: list[tuple[Wanted, pulling.Plan]] = []
    for w in wanted:
        found = _on_disk(p, w, default_quant)
        if found is not None:
            local.append(found)
        elif no_pull:
            raise NotFoundError(
                f"{w.spec} (for tier {w.tier}) is not on this machine",
                hint=f"drop --no-pull to download it, or run `mlx-stack pull {w.spec}` first",
            )
        else:
            target = pulling.resolve(w.spec, w.quant, default_quant)
            plans.append((w, pulling.plan(p, target)))
    downloaded: list[str] = []
    if plans:
        total = sum(pl.to_fetch for _, pl in plans)
        free = min(pl.free for _, pl in plans)
        ui.say(f"to download: {len(plans)} model(s), {format_bytes(total)}; "
               f"{format_bytes(free)} free on disk")
        if total and free < total + pulling.HEADROOM:
            raise ConflictError(
                f"not enough disk space: the models need {format_bytes(total)}, {format_bytes(free)} free",
                hint="free some space, or `mlx-stack config set model-dir /path/on/a/bigger/disk`",
            )
        if confirm and not ui.confirm(f"Download {format_bytes(total)} and continue?"):
            raise SetupCancelled("setup cancelled; nothing was changed", exit_code=0)
        for w, pl in plans:
            ui.pull_started(pl)
            try:
                model = pulling.execute(p, pl, on_progress=ui.pull_progress)
            finally:
                ui.pull_finished()
            downloaded.append(model.repo)
            local.append(_Local(w, model.model, model.path, pl.target.entry, pl.target.quant))
    by_tier = {item.wanted.tier: item for item in local}
    tiers = [_tier_for(by_tier[w.tier]) for w in wanted]
    return tiers, downloaded, {t.name: n for t in tiers if (n := _catalog_need(by_tier[t.name], t))}


def _catalog_need(item: _Local, tier: Tier) -> TierNeed | None:
    """A catalog model's need: the recommender's own figure for the tier's context."""
    from mlx_stack.core.memory_plan import need_from_catalog
    from mlx_stack.services.serving_plan import planned_context

    if item.entry is None or item.quant is None or item.quant not in item.entry.repos or tier.retrieval:
        return None  # a retrieval tier: weights from its folder, no KV (serving_plan)
    context = item.wanted.context or planned_context(tier.name, tier.context_window)
    return need_from_catalog(tier.name, item.entry, item.quant, context)


def _on_disk(p: Paths, w: Wanted, default_quant: str) -> _Local | None:
    """A local folder, a model `pull` recorded, or a complete copy in the HF cache (no network)."""
    from mlx_stack.services import pulled_models

    folder = Path(w.spec).expanduser()
    if (w.spec.startswith((".", "/", "~")) or folder.is_dir()) and (folder / "config.json").is_file():
        return _Local(w, folder.name, str(folder.absolute()))
    if w.spec.startswith((".", "/", "~")):
        raise NotFoundError(f"{w.spec}: no model folder (config.json) there",
                            hint="give a folder with config.json and *.safetensors, a catalog id or org/name")
    target = pulling.resolve(w.spec, w.quant, default_quant)
    found = pulled_models.find(p, target.repo) or pulled_models.find(p, w.spec)
    if found is not None:
        return _Local(w, target.model, found.path, target.entry, target.quant)
    from mlx_stack.system import hub

    cache, local_dir = pulling.destination(p, target.repo)
    path = hub.cached_snapshot(target.repo, revision=None, cache=cache, local_dir=local_dir,
                               allow=pulling.ALLOW)
    return _Local(w, target.model, str(path), target.entry, target.quant) if path is not None else None


def _tier_for(item: _Local) -> Tier:
    if item.wanted.kind != CHAT:
        return _retrieval_tier(item)
    entry = item.entry
    if entry is not None:
        caps = entry.capabilities
        # the window the front door routes on: the agent intent's, else the model's own
        return Tier(name=item.wanted.tier, model=item.model, path=item.path, port=0,
                    tool_call_parser=caps.tool_call_parser, reasoning_parser=caps.reasoning_parser,
                    context_window=min(item.wanted.context or entry.context_length, entry.context_length))
    parser, context = _local_hints(Path(item.path))
    return Tier(name=item.wanted.tier, model=item.model, path=item.path, port=0,
                tool_call_parser=parser, context_window=context)


def _retrieval_tier(item: _Local) -> Tier:
    """An encoder or reranker tier; a reranker must sit in a hub cache (vllm-mlx 0.6 loads
    one only by repo id through the cache, never from a plain folder)."""
    from mlx_stack.core.stack import hub_cache_of

    w = item.wanted
    if w.kind == RERANK and hub_cache_of(item.path) is None:
        raise ConflictError(
            f"{w.spec}: a reranker must be in the Hugging Face cache ({item.path} is a plain folder)",
            hint="vllm-mlx 0.6 loads rerankers by repo id only: `mlx-stack config unset model-dir`, "
            "then `mlx-stack setup --add-rerank org/name`")
    limit = item.entry.retrieval.max_input_tokens if item.entry is not None and item.entry.retrieval else None
    return Tier(name=w.tier, model=item.model, path=item.path, port=0, kind=w.kind, max_input_tokens=limit)


def _local_hints(folder: Path) -> tuple[str | None, int | None]:
    """A model folder outside the catalog: the demo builder's marker says hermes tool calls."""
    import json

    parser = "hermes" if (folder / ".mlx-stack-model.json").is_file() else None
    try:
        config = json.loads((folder / "config.json").read_text())
        context = config.get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        context = None
    return parser, context if isinstance(context, int) and context > 0 else None


def _build(p: Paths, previous: Stack | None, tiers: list[Tier], flags: SetupFlags, config_port: int,
           intent: str | None) -> Stack:
    from mlx_stack.system import ports

    if flags.changes_stack:
        assert previous is not None
        kept = [t for t in previous.tiers if t.name not in flags.remove]
        by_name = {t.name: t for t in kept}
        for t in tiers:
            by_name[t.name] = t
        order = [n for n in previous.fallback_order if n in by_name]
        order += [n for n, t in by_name.items() if n not in order and not t.retrieval]
        if flags.on_demand:
            from mlx_stack.core.stack import ON_DEMAND, parse_duration

            idle = parse_duration(flags.idle_unload) if flags.idle_unload else None
            for t in tiers:
                by_name[t.name] = replace(t, mode=ON_DEMAND, idle_unload_s=idle)
        placed = assign_ports(list(by_name.values()), previous, previous.gateway.port, ports.is_free)
        return replace(previous, tiers=tuple(placed), fallback_order=tuple(order))
    gateway = Gateway(host=previous.gateway.host if previous else "127.0.0.1", port=config_port)
    placed = assign_ports(tiers, previous, gateway.port, ports.is_free)
    cloud = previous.cloud if previous is not None else Stack(tiers=(), fallback_order=()).cloud
    order = tuple(t.name for t in placed if not t.retrieval)
    # `auto` sends tool calls to `fast` for an agent fleet (core.routing); else the defaults.
    from mlx_stack.core.routing import default_rules

    routing = default_rules(order, intent="agent-fleet") if intent == "agent-fleet" else None
    return Stack(tiers=tuple(placed), fallback_order=order, gateway=gateway, cloud=cloud, routing=routing,
                 # the user's model-name aliases survive a new setup (dropped if their tier is gone)
                 aliases=previous.aliases if previous else (),
                 default_tier=previous.default_tier if previous else None)
