"""A command's stderr, relayed by PALHM line by line.

Commands never write to PALHM's stderr themselves: each one's stderr is a
pipe that a helper thread reads. Shown stderr (the verbosity at least the
command's ``vl-stderr``) is written out one whole line at a time, between
PALHM's own log lines (:func:`palhm_core.logs.write_lines`), so that a
command's unfinished line and PALHM's error line are never spliced into one
line of a cron mail or the journal. Lines are passed on as the command wrote
them, prefixed with the command's name from ``-v`` on (verbosity 4). A
command's last line without a newline gets one when the command closes its
stderr, and a line longer than :data:`MAX_LINE` bytes is passed on in pieces
of that size, each ended by a newline, so memory stays bounded.

Hidden stderr is not discarded either: a quiet run (``-q``) prints nothing
when all is well, but when a command fails its last words ("Access denied for
user") are what the administrator needs. So the relay keeps the last
:data:`KEEP` bytes, and :meth:`StderrRelay.text` gives them, secrets
redacted, to follow the error line.
"""

from __future__ import annotations

import os
import select

from palhm_core import logs
from palhm_core.redact import redact
from palhm_core.signals import start_helper_thread

KEEP = 2048
#: A longer line is passed on in pieces of this many bytes.
MAX_LINE = 64 << 10
#: At most this many of the last lines follow an error.
TAIL_LINES = 10
#: Seconds the relay may take to pass on what a command wrote after it ended.
DRAIN = 2.0


class StderrRelay:
    """A pipe for one command's stderr (:attr:`fd`, for the child) and the
    thread that reads it."""

    def __init__(self, label: str, *, show: bool, prefix: bool):
        self._read, self.fd = os.pipe2(os.O_CLOEXEC)
        self.show = show
        self._prefix = f"{label}: ".encode() if prefix else b""
        self._partial = b""
        self._tail = b""
        self._stopped = False
        self._thread = start_helper_thread(self._drain, "palhm-stderr")

    def child_started(self) -> None:
        """The child holds the write end now (or never will): close PALHM's copy."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _drain(self) -> None:
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        try:
            while not self._stopped:
                if not poller.poll(200):
                    continue
                chunk = os.read(self._read, 65536)
                if not chunk:
                    break
                self._take(chunk)
        finally:
            os.close(self._read)
            if self._partial:
                self._emit(self._partial + b"\n")

    def _take(self, chunk: bytes) -> None:
        self._tail = (self._tail + chunk)[-KEEP:]
        if not self.show:
            return
        data = self._partial + chunk
        end = data.rfind(b"\n") + 1
        whole, self._partial = data[:end], data[end:]
        while len(self._partial) >= MAX_LINE:
            whole += self._partial[:MAX_LINE] + b"\n"
            self._partial = self._partial[MAX_LINE:]
        if whole:
            self._emit(whole)

    def _emit(self, lines: bytes) -> None:
        if self._prefix:
            lines = b"".join(self._prefix + line for line in lines.splitlines(keepends=True))
        logs.write_lines(lines)

    def finish(self, timeout: float = DRAIN) -> None:
        """Wait until everything the command wrote was passed on: its stderr
        closes when it and what it started have ended. A process that left
        PALHM's process groups and keeps the pipe open is given ``timeout``
        seconds, then no longer read."""
        self.child_started()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stopped = True
            self._thread.join()

    def text(self) -> str:
        """The last lines of hidden stderr, secrets redacted, indented to
        follow an error line; empty when the stderr was shown."""
        if self.show:
            return ""
        self.finish()
        lines = redact(self._tail.decode("utf-8", "replace")).strip().splitlines()
        return "\n".join(f"  | {line}" for line in lines[-TAIL_LINES:])
