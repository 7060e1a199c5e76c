"""`config set tiers.NAME.mode|idle-unload`: a tier's mode, kept in stack.yaml.

``mode`` is ``resident`` (started by `up`, runs until `down`) or ``on-demand`` (the front
door starts it on the first request that needs it and stops it after ``idle-unload``
without requests). The change is written under the stack lock and reaches a running
front door through its routes file (re-read within half a second). Nothing is started
or stopped here: a tier made resident starts at the next `up`; a running tier made
on-demand is stopped by the front door once idle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mlx_stack.core.stack import MODES, ON_DEMAND, RESIDENT, format_duration, parse_duration
from mlx_stack.errors import UsageError
from mlx_stack.paths import Paths

FIELDS = ("mode", "idle-unload")


@dataclass(frozen=True)
class TierSetting:
    key: str
    value: str  # as stored, e.g. "on-demand" or "10m"
    note: str = ""


def split_key(key: str) -> tuple[str, str]:
    """``tiers.coder.mode`` -> (``coder``, ``mode``); UsageError for anything else."""
    parts = key.split(".")
    if len(parts) != 3 or parts[0] != "tiers" or parts[2] not in FIELDS:
        raise UsageError(f"unknown key {key!r}",
                         hint="tier keys: tiers.NAME.mode (resident|on-demand), "
                         "tiers.NAME.idle-unload (30s, 10m, 2h)")
    return parts[1], parts[2]


def set_tier(p: Paths, key: str, raw: str | None) -> TierSetting:
    """Change a tier's mode or idle timeout (``raw`` None: back to the default)."""
    from mlx_stack.errors import NotFoundError
    from mlx_stack.services import stack_store
    from mlx_stack.system.locks import file_lock

    name, field = split_key(key)
    with file_lock(p.lock_file, what="mlx-stack"):
        stack = stack_store.load(p)
        try:
            tier = stack.tier(name)
        except NotFoundError as exc:
            raise UsageError(exc.message, hint=exc.hint) from None
        if field == "mode":
            mode = RESIDENT if raw is None else raw.strip().lower()
            if mode not in MODES:
                raise UsageError(f"invalid {key}: {raw!r}", hint="resident or on-demand")
            tier = replace(tier, mode=mode, idle_unload_s=tier.idle_unload_s if mode == ON_DEMAND else None)
            value = mode
            note = ("the front door starts it on the first request that needs it and stops it after "
                    f"{format_duration(tier.idle_unload)} idle" if mode == ON_DEMAND
                    else "`mlx-stack up` starts it")
        else:
            if not tier.on_demand:
                raise UsageError(f"tier {name} is resident: only an on-demand tier unloads when idle",
                                 hint=f"first `mlx-stack config set tiers.{name}.mode on-demand`")
            seconds = None if raw is None else parse_duration(raw)
            if raw is not None and seconds is None:
                raise UsageError(f"invalid {key}: {raw!r}", hint="a duration like 30s, 10m or 2h")
            tier = replace(tier, idle_unload_s=seconds)
            value = format_duration(tier.idle_unload)
            note = ""
        stack = stack.with_tier(tier)
        stack_store.save(p, stack)
        from mlx_stack.services import gateway_config
        from mlx_stack.services.service_control import litellm_port

        if p.routes_file.exists():  # a running front door follows within half a second
            gateway_config.write_gateway_config(p, stack, cloud_port=litellm_port(p))
            from mlx_stack.services import dashboard

            dashboard.write_context(p, stack)  # the page's planned memory follows the mode
    return TierSetting(key, value, note)
