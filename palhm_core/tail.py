"""Keeping the end of a command's stderr when its verbosity hides it.

A quiet run (``-q``, or ``vl`` below a command's ``vl-stderr``) prints nothing
when all is well; but when a command fails, its last words ("Access denied for
user") are what the administrator needs in the cron mail. So hidden stderr is
read through a pipe into a small ring instead of ``/dev/null``, and shown with
the error only if that command failed.
"""

from __future__ import annotations

import os
import threading

KEEP = 2048


class StderrTail:
    """A pipe whose reader keeps the last :data:`KEEP` bytes."""

    def __init__(self):
        self._read, self.fd = os.pipe2(os.O_CLOEXEC)
        self._data = b""
        self._thread = threading.Thread(target=self._drain, name="palhm-stderr", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            while chunk := os.read(self._read, 65536):
                self._data = (self._data + chunk)[-KEEP:]
        finally:
            os.close(self._read)

    def child_started(self) -> None:
        """The child holds the write end now: close PALHM's copy."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def text(self, timeout: float = 2.0) -> str:
        """The last lines the command wrote, once it has exited."""
        self.child_started()
        self._thread.join(timeout)
        lines = self._data.decode("utf-8", "replace").strip().splitlines()
        return "\n".join(f"  | {line}" for line in lines[-10:])
