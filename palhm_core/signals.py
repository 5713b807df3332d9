"""Stopping a run: SIGINT, SIGTERM and SIGHUP, and task timeouts.

The handler does not raise into whatever Python is doing at that moment: it
records the first signal and ends every child's process group from a helper
thread (so that a command that was about to start is refused, and one that
runs ends at once). The code driving a task notices (:meth:`StopSignals.check`)
at points where stopping is safe, rolls back and raises :class:`Interrupted`;
PALHM exits with 128+N. Only the first signal counts: a second Ctrl-C does not
interrupt the rollback. A task's ``timeout`` stops the run the same way
(:meth:`StopSignals.deadline`), with the task's error instead.

A stopped run ends within :data:`STOP_BOUND` seconds whatever it was doing.
Work that cannot be interrupted (a pipeline's thread blocked on a backend, a
request to a server that stopped answering) is given :data:`FINISH_WAIT`
seconds to finish once the run is stopping, then left behind in its daemon
thread (:meth:`StopSignals.call`): what it leaves in the backend is a crashed
run's leftover, which the next run removes.

The ``sigmask`` builtin blocks signals in the main thread, and the commands
started afterwards inherit the mask. Helper threads PALHM starts
(:func:`start_helper_thread`) block the stop signals themselves, so a blocked
signal cannot be delivered to one of them behind the mask's back. Threads that
start commands (:func:`start_command_thread`) have the main thread's mask
instead, the one the commands must inherit: so a command gets SIGTERM unless
``sigmask`` blocked it.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

from palhm_core.errors import Interrupted, PalhmError
from palhm_core.process import Children

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Once a run is stopping, how long the main thread waits for work under way
#: (the objects being built, then the rollback) before leaving it behind.
FINISH_WAIT = 3.0
#: A stopped run exits within this many seconds: the objects' and the
#: rollback's :data:`FINISH_WAIT`, and the commands' last grace period.
STOP_BOUND = 10.0
#: How often a waiting main thread looks whether the run is stopping.
POLL = 0.1

T = TypeVar("T")


class Unfinished(PalhmError):
    """Work under way did not finish within :data:`FINISH_WAIT` seconds of
    the stop and was left behind."""


class StopSignals:
    """The stop state of one run: the first stop signal, or the first task
    timeout that expired. Either ends every command and makes
    :meth:`check` raise."""

    def __init__(self, children: Children):
        self.children = children
        #: The first stop signal, if one arrived.
        self.received: int | None = None
        #: What stopped the run (a signal's :class:`Interrupted`, a timeout's
        #: error), raised by :meth:`check`.
        self.reason: PalhmError | None = None
        #: What :meth:`call` left running, by name.
        self.abandoned: list[str] = []
        self._stopped_at = 0.0
        self._event = threading.Event()
        self._lock = threading.Lock()
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
            self._stop(Interrupted(signum), signum)

    def _stop(self, reason: PalhmError, signum: int | None) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            self._stopped_at = time.monotonic()
        self._event.set()
        start_helper_thread(lambda: self.children.stop(signum=signum), "palhm-stop")

    @property
    def stopping(self) -> bool:
        return self.reason is not None

    def check(self) -> None:
        """Raise what stopped the run, if something did."""
        if self.reason is not None:
            raise self.reason

    def pending_error(self) -> PalhmError | None:
        return self.reason

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if the run is stopping."""
        return self._event.wait(timeout)

    def finish_by(self, started: float) -> float | None:
        """When work started at ``started`` (monotonic) is left behind: None
        while the run is not stopping, else :data:`FINISH_WAIT` seconds after
        the later of its start and the stop."""
        if self.reason is None:
            return None
        return max(started, self._stopped_at) + FINISH_WAIT

    @contextmanager
    def deadline(self, seconds: float | None, error: Callable[[], PalhmError]):
        """Stop the run with ``error()`` if the ``with`` body is still running
        after ``seconds`` (None: no limit)."""
        if seconds is None:
            yield
            return
        done = threading.Event()

        def expire() -> None:
            if not done.wait(seconds):
                self._stop(error(), None)

        start_helper_thread(expire, "palhm-timeout")
        try:
            yield
        finally:
            done.set()

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` run in a helper thread: its result, or its exception.

        While the run goes on, this waits as long as ``fn`` takes (a backend
        bounds its own requests); once it is stopping, :data:`FINISH_WAIT`
        seconds more at most. Then ``fn`` is left running, ``what`` is noted
        in :attr:`abandoned` and :class:`Unfinished` raised.
        """
        outcome: list = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append((True, fn()))
            except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
                outcome.append((False, e))
            finally:
                done.set()

        started = time.monotonic()
        start_helper_thread(run, f"palhm-{what}")
        while not done.wait(POLL):
            limit = self.finish_by(started)
            if limit is not None and time.monotonic() >= limit:
                self.abandoned.append(what)
                raise Unfinished(f"{what} did not finish within {FINISH_WAIT:g} s of the stop")
        ok, value = outcome[0]
        if ok:
            return value
        raise value


def start_helper_thread(target, name: str) -> threading.Thread:
    """Start a daemon thread with the stop signals blocked, so that they are
    always delivered to the main thread (or stay pending while the ``sigmask``
    builtin blocks them there). Every thread PALHM starts goes through here."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return thread


def start_command_thread(target, name: str) -> threading.Thread:
    """Start a daemon thread that starts commands (a backup object's
    pipeline), from the main thread: it has the main thread's signal mask,
    which the commands it starts inherit (the stop signals are not blocked in
    them unless the ``sigmask`` builtin blocked them in PALHM)."""
    assert threading.current_thread() is threading.main_thread()
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
