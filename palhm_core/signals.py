"""SIGINT, SIGTERM and SIGHUP: stop every child, roll back, exit 128+N.

The handler does not raise into whatever Python is doing at that moment: it
records the first signal and ends every child's process group from a helper
thread. The code driving a task notices (:meth:`StopSignals.check`) at points
where stopping is safe, rolls back and raises :class:`Interrupted`.
"""

from __future__ import annotations

import signal
import threading

from palhm_core.errors import Interrupted
from palhm_core.process import Children

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    def __init__(self, children: Children):
        self.children = children
        self.received: int | None = None
        self._event = threading.Event()
        self._saved = {}

    def __enter__(self) -> StopSignals:
        for sig in SIGNALS:
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._saved.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
            self._event.set()
            threading.Thread(target=self.children.stop, name="palhm-stop", daemon=True).start()

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop signal arrived."""
        if self.received is not None:
            raise Interrupted(self.received)

    def pending_error(self) -> Interrupted | None:
        return Interrupted(self.received) if self.received is not None else None

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if a signal arrived."""
        return self._event.wait(timeout)
