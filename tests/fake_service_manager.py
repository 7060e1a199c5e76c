"""Hand-written fakes of launchctl and systemctl that record every command line."""

from __future__ import annotations

from collections.abc import Sequence

from mlx_stack.system.service_manager import RunResult


class FakeLaunchctl:
    """launchctl with an asynchronous bootout: the job lingers for ``drain`` prints."""

    def __init__(self, loaded: bool = False, pid: int = 4242, drain: int = 2,
                 last_exit: str = "(never exited)", running: bool = True):
        self.calls: list[list[str]] = []
        self.loaded = loaded
        self.pid = pid
        self.last_exit = last_exit
        self.running = running
        self.drain = drain
        self._draining = 0

    def __call__(self, argv: Sequence[str], timeout: float = 30.0) -> RunResult:
        argv = list(argv)
        self.calls.append(argv)
        verb = argv[1]
        if verb == "print":
            if self._draining:
                self._draining -= 1
                return RunResult(tuple(argv), 0, "state = not running\n")
            if self.loaded:
                running = f"\tstate = running\n\tpid = {self.pid}\n"
                body = running if self.running else "\tstate = not running\n"
                text = f"{argv[2]} = {{\n{body}\tlast exit code = {self.last_exit}\n}}\n"
                return RunResult(tuple(argv), 0, text)
            return RunResult(tuple(argv), 113, "", "Could not find service")
        if verb == "bootout":
            if not self.loaded:
                return RunResult(tuple(argv), 3, "", "No such process")
            self.loaded = False
            self._draining = self.drain
            return RunResult(tuple(argv), 0)
        if verb == "bootstrap":
            if self.loaded or self._draining:
                return RunResult(tuple(argv), 5, "", "Bootstrap failed: 5: Input/output error")
            self.loaded = True
            return RunResult(tuple(argv), 0)
        return RunResult(tuple(argv), 0)

    def verbs(self) -> list[str]:
        return [c[1] for c in self.calls]


class FakeSystemctl:
    def __init__(self, active: bool = False, pid: int = 777):
        self.calls: list[list[str]] = []
        self.active = active
        self.pid = pid

    def __call__(self, argv: Sequence[str], timeout: float = 30.0) -> RunResult:
        argv = list(argv)
        self.calls.append(argv)
        verb = argv[2]
        if verb in ("restart", "start"):
            self.active = True
        elif verb == "disable" and "--now" in argv:
            self.active = False
        elif verb == "show":
            state = "active\nSubState=running" if self.active else "inactive\nSubState=dead"
            pid = self.pid if self.active else 0
            return RunResult(tuple(argv), 0, f"LoadState=loaded\nActiveState={state}\nMainPID={pid}\n")
        return RunResult(tuple(argv), 0)
