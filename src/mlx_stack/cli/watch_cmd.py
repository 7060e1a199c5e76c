"""`mlx-stack watch`: keep the stack running (restart crashed or wedged services)."""

from __future__ import annotations

import typer


def watch(
    interval: float = typer.Option(30.0, "--interval", min=0.1, help="Seconds between probes of a service."),
    max_restarts: int = typer.Option(
        5, "--max-restarts", min=1, help="Restarts within --flap-window before a service counts as flapping."
    ),
    restart_delay: float = typer.Option(
        5.0, "--restart-delay", min=0.0, help="First backoff delay; it doubles per failure, up to 300 s."
    ),
    daemon: bool = typer.Option(False, "--daemon", help="Run in the background (log: logs/watchdog.log)."),
    probe_timeout: float = typer.Option(
        10.0, "--probe-timeout", min=0.1, help="Deadline of one probe (a one-token completion)."
    ),
    wedge_probes: int = typer.Option(
        3, "--wedge-probes", min=1, help="Failed probes in a row, with no sign of work, that mean wedged."
    ),
    start_timeout: float = typer.Option(
        300.0, "--start-timeout", min=1.0, help="Seconds a (re)started service has to answer a probe."
    ),
    flap_window: float = typer.Option(600.0, "--flap-window", min=1.0, help="Window for --max-restarts."),
    cooldown: float = typer.Option(
        600.0, "--cooldown", min=1.0, help="Seconds a flapping service is left alone before one more try."
    ),
    standby: bool = typer.Option(
        False, "--standby", help="If a watchdog already runs, wait and take over when it exits."
    ),
) -> None:
    """Watch the stack: restart crashed and wedged services with backoff, stop
    restarting a flapping one for a cool-down, bring back what should run after a
    reboot. One watchdog at a time; SIGTERM stops it and leaves the services running."""
    import os
    import sys

    from mlx_stack.cli.terminal import terminal
    from mlx_stack.core.watchdog import Policy
    from mlx_stack.paths import paths
    from mlx_stack.services import watchdog

    p = paths()
    policy = Policy(interval_s=interval, restart_delay_s=restart_delay, max_restarts=max_restarts,
                    flap_window_s=flap_window, flap_cooldown_s=cooldown, start_timeout_s=start_timeout,
                    wedge_probes=wedge_probes, fast_poll_s=min(1.0, interval))
    opts = watchdog.Options(policy, probe_timeout_s=probe_timeout)
    if daemon:
        if not standby:
            watchdog.ensure_not_running(p)
        args = ["watch", "--interval", str(interval), "--max-restarts", str(max_restarts),
                "--restart-delay", str(restart_delay), "--probe-timeout", str(probe_timeout),
                "--wedge-probes", str(wedge_probes), "--start-timeout", str(start_timeout),
                "--flap-window", str(flap_window), "--cooldown", str(cooldown)]
        pid = watchdog.spawn_daemon(p, [*args, "--standby"] if standby else args)
        terminal.success(f"watchdog running in the background (pid {pid})")
        terminal.info(f"log: {p.watchdog_log}; stop it with `kill {pid}`")
        return
    if not standby:
        watchdog.ensure_not_running(p)  # say it here, before our output goes to the log file
    if not sys.stderr.isatty() and os.environ.get(watchdog.LOGGED_ENV) != "1":
        # launchd, systemd, --daemon: a rotated log rather than an endless file.
        terminal.info(f"watchdog: logging to {p.watchdog_log}")
        watchdog.log_to_file(p)
    watchdog.serve(p, opts, standby=standby)
