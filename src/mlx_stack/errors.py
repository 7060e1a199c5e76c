"""One family of domain errors. Each carries an exit code and a hint.

The root command group in ``cli.app`` turns any of them into one red line on stderr (plus the hint)
and exits with the error's code. The codes are documented in README.md ("Exit codes").
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    INTERNAL = 1  # a bug: unexpected exception
    USAGE = 2  # bad flag, bad value (Typer/Click also use 2 for usage errors)
    STATE = 3  # a config/state file is corrupt or has an unsupported schema
    NOT_FOUND = 4  # unknown model, tier, chip, log, or no stack configured yet
    CONFLICT = 5  # a port is taken, the lock is held, not enough memory or disk
    NETWORK = 6  # offline, hub unreachable, gated model without a token
    SERVICE = 7  # a service failed to start or to become healthy
    UNSUPPORTED = 8  # the platform lacks what the command needs (launchd/systemd)
    INTERRUPTED = 130


class MlxStackError(Exception):
    """Base of every error a user can cause or fix."""

    exit_code: int = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(MlxStackError):
    exit_code = ExitCode.USAGE


class StateError(MlxStackError):
    exit_code = ExitCode.STATE


class NotFoundError(MlxStackError):
    exit_code = ExitCode.NOT_FOUND


class ConflictError(MlxStackError):
    exit_code = ExitCode.CONFLICT


class NetworkError(MlxStackError):
    exit_code = ExitCode.NETWORK


class ServiceError(MlxStackError):
    exit_code = ExitCode.SERVICE


class UnsupportedError(MlxStackError):
    exit_code = ExitCode.UNSUPPORTED
