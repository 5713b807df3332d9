"""The errors PALHM reports to the administrator.

Every error a user can cause is a :class:`PalhmError`: the CLI prints its
message as one line on stderr and exits with its ``exit_status``. Anything else
is a bug in PALHM or a plugin and is reported with a traceback.
"""

from __future__ import annotations


class PalhmError(Exception):
    """An error worth one clear line in cron mail."""

    exit_status = 1


class ConfigError(PalhmError):
    """The configuration is wrong: ``FILE: place: problem``."""

    exit_status = 2

    def __init__(self, message: str, file: str | None = None, place: str | None = None):
        self.file = file
        self.place = place
        self.problem = message
        parts = [p for p in (file, place) if p]
        super().__init__(": ".join([*parts, message]))


class UsageError(PalhmError):
    """The command line is wrong."""

    exit_status = 2


class PluginError(PalhmError):
    """Plugins conflict, or one that is needed is missing."""

    exit_status = 2


class TaskError(PalhmError):
    """A task failed: a command exited out of its accepted range, and so on."""


class BackendError(PalhmError):
    """The storage backend refused or failed an operation."""


class LockBusy(PalhmError):
    """Another run of the same task holds its lock."""

    exit_status = 75


class Interrupted(PalhmError):
    """PALHM was asked to stop by a signal; the run was rolled back."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.exit_status = 128 + signum
