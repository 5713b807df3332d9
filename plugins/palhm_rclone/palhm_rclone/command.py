"""Running the rclone program: argv lists (no shell), every wait bounded,
stderr kept in a temporary file and told as one line.

Each command runs in a process group of its own (:class:`palhm_core.api.Children`),
so that a Ctrl-C in a terminal reaches PALHM, which then ends its rclone
commands itself (SIGTERM, then SIGKILL) while it rolls back; if PALHM is
killed, its guardian process ends them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile

from palhm_core.api import BackendError, Children, TaskError
from palhm_rclone.params import Settings, hide_secrets

#: Seconds between SIGTERM and SIGKILL when a command is ended.
GRACE = 2.0
#: rclone's exit statuses for "directory not found" and "file not found".
NOT_FOUND = (3, 4)
#: rclone's log line prefix: a date and time, then the level.
_STAMP = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?:[A-Z]+\s*: )?")

#: Every rclone command this process started and has not reaped.
_children = Children()


def _forked() -> None:
    """A forked child keeps none of its parent's commands (nor its guardian)."""
    global _children
    _children = Children()


os.register_at_fork(after_in_child=_forked)


class Command:
    """One rclone command started: ``proc``, with stderr in a temporary file."""

    def __init__(self, rclone: Rclone, args: list[str], *, stdin=None, stdout=None):
        self.label = f"rclone {args[0]}"
        self.timeout = rclone.settings.timeout
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        try:
            self.child = _children.spawn(
                rclone.argv(args),
                stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=subprocess.DEVNULL if stdout is None else stdout,
                stderr=self.errors,
            )
        except TaskError as e:
            self.errors.close()
            raise BackendError(str(e)) from None
        self.proc = self.child.proc

    def wait(self, what: str) -> int:
        """Wait (bounded) for the exit status; on time out end the command
        and raise ``what: ...``."""
        try:
            return _children.wait(self.child, self.timeout)
        except TaskError:  # timed out: ended
            raise BackendError(
                f"{what}: {self.label} did not finish within {self.timeout:g} s"
            ) from None

    def end(self) -> None:
        """End the command's group: SIGTERM, SIGKILL after a grace period."""
        self.child.signal_group(signal.SIGTERM)
        try:
            _children.wait(self.child, GRACE)
        except TaskError:  # it outlived the grace period: killed
            pass

    def problem(self) -> str:
        """rclone's last error line, without its time stamp, for a message."""
        self.errors.seek(0)
        lines = self.errors.read().decode(errors="replace").splitlines()
        wanted = [ln for ln in lines if re.search(r"ERROR|CRITICAL|Failed|error", ln)]
        line = (wanted or lines or [f"exited with status {self.child.returncode}"])[-1]
        return hide_secrets(_STAMP.sub("", line.strip()))

    def close(self) -> None:
        self.errors.close()

    def failure(self, what: str) -> BackendError:
        return BackendError(f"{what}: {self.label}: {self.problem()}")


class Rclone:
    """The rclone program with this backend's config file and flags."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def argv(self, args: list[str]) -> list[str]:
        s = self.settings
        config = ["--config", s.config] if s.config else []
        return [s.program, args[0], "--quiet", *config, *s.flags, *args[1:]]

    def start(self, args: list[str], **stdio) -> Command:
        return Command(self, args, **stdio)

    def run(self, args: list[str], what: str, *, missing_ok: bool = False) -> bytes:
        """Run a command to its end (bounded); its stdout. An exit status of
        "not found" gives ``b""`` with ``missing_ok``; any other failure
        raises ``what: rclone CMD: rclone's error``."""
        with tempfile.TemporaryFile() as out:
            cmd = self.start(args, stdout=out)
            try:
                rc = cmd.wait(what)
                if rc in NOT_FOUND and missing_ok:
                    return b""
                if rc != 0:
                    raise cmd.failure(what)
            finally:
                cmd.close()
            out.seek(0)
            return out.read()
