"""SIGINT, SIGTERM and SIGHUP: stop every child, roll back, exit 128+N.

The handler does not raise into whatever Python is doing at that moment: it
records the first signal and ends every child's process group from a helper
thread (so that a command that was about to start is refused, and one that
runs ends at once). The code driving a task notices (:meth:`StopSignals.check`)
at points where stopping is safe, rolls back and raises :class:`Interrupted`.
Only the first signal counts: a second Ctrl-C does not interrupt the rollback.

The ``sigmask`` builtin blocks signals in the main thread, and the commands
started afterwards inherit the mask. Helper threads PALHM starts
(:func:`start_helper_thread`) block the stop signals themselves, so a blocked
signal cannot be delivered to one of them behind the mask's back.
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
            threading.Thread(
                target=self.children.stop,
                kwargs={"signum": signum},
                name="palhm-stop",
                daemon=True,
            ).start()

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop signal arrived."""
        if self.received is not None:
            raise Interrupted(self.received)

    def pending_error(self) -> Interrupted | None:
        return Interrupted(self.received) if self.received is not None else None

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if a signal arrived."""
        return self._event.wait(timeout)


def start_helper_thread(target, name: str) -> threading.Thread:
    """Start a daemon thread with the stop signals blocked, so that they are
    always delivered to the main thread (or stay pending while the ``sigmask``
    builtin blocks them there)."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return thread
