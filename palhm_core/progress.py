"""Progress on a terminal: while backups run, one line on stderr, redrawn in
place, with each running object's bytes and rate::

    palhm: db.sql.zst 1.2 GiB 85.0 MiB/s  etc.tar.gz 40.0 MiB 3.1 MiB/s

Shown only when stderr is a terminal (not under systemd's journal, not with
``-q``); a log line erases it and it is drawn again after. The display is a
plugin of the core's own events, registered by ``palhm run``: it keeps the
:class:`palhm_core.pipeline.Progress` counters a backup task announces with
``palhm_objects_started`` until that task ends, and only reads them. An object
counts as running from its first byte until it has produced nothing for
:data:`IDLE_AFTER` seconds.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING

from palhm_core import logs
from palhm_core.hookspecs import hookimpl
from palhm_core.signals import start_helper_thread

if TYPE_CHECKING:
    from palhm_core.pipeline import Progress

#: Seconds between redraws.
INTERVAL = 0.5
#: Seconds of rate history.
WINDOW = 3.0
#: An object that produced nothing for this long is no longer shown.
IDLE_AFTER = 3.0

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human(n: float) -> str:
    """``1.2 GiB``."""
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def wanted(stream=None, quiet: bool = False) -> bool:
    """Show progress on ``stream`` (stderr)?"""
    stream = stream or sys.stderr
    if quiet or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty() and not logs.under_journal(stream)
    except (AttributeError, ValueError):
        return False


class _Track:
    def __init__(self, now: float, nbytes: int):
        self.samples = [(now, nbytes)]
        self.changed = now if nbytes else float("-inf")

    def update(self, now: float, nbytes: int) -> float:
        if nbytes != self.samples[-1][1]:
            self.changed = now
        self.samples.append((now, nbytes))
        while len(self.samples) > 2 and now - self.samples[1][0] >= WINDOW:
            self.samples.pop(0)
        t0, b0 = self.samples[0]
        return (nbytes - b0) / (now - t0) if now > t0 else 0.0


class ProgressDisplay:
    """The thread drawing the line; :meth:`start`, then :meth:`stop`."""

    def __init__(self, stream=None, interval: float = INTERVAL):
        self.stream = stream or sys.stderr
        #: Task id -> the counters of its objects, while it runs.
        self._running: dict[str, list[Progress]] = {}
        self._lock = threading.Lock()
        self.interval = interval
        self._stop = threading.Event()
        self._thread = None
        self._tracks: dict[int, _Track] = {}
        self._line = ""
        self._shown = False

    @hookimpl
    def palhm_objects_started(self, task, progress: list[Progress]) -> None:
        with self._lock:
            self._running[task.id] = list(progress)

    @hookimpl
    def palhm_task_finished(self, task) -> None:
        with self._lock:
            self._running.pop(task.id, None)

    @hookimpl
    def palhm_task_failed(self, task) -> None:
        self.palhm_task_finished(task)

    def start(self) -> ProgressDisplay:
        logs.set_status_line(self)
        self._thread = start_helper_thread(self._loop, "palhm-progress")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with logs.TERMINAL:
            logs.set_status_line(None)
            self.erase()

    def __enter__(self) -> ProgressDisplay:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            line = self.render(time.monotonic())
            with logs.TERMINAL:
                self._line = line
                self.draw()

    def render(self, now: float) -> str:
        """The line for what runs now ("" when nothing does)."""
        parts = []
        seen = set()
        with self._lock:
            running = [p for counters in self._running.values() for p in counters]
        for progress in running:
            key = id(progress)
            seen.add(key)
            nbytes = progress.bytes
            track = self._tracks.get(key)
            if track is None:
                track = self._tracks[key] = _Track(now, nbytes)
            rate = track.update(now, nbytes)
            if nbytes and now - track.changed < IDLE_AFTER:
                parts.append(f"{progress.path} {human(nbytes)} {human(rate)}/s")
        for key in set(self._tracks) - seen:
            del self._tracks[key]
        if not parts:
            return ""
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            width = 0
        width = width if width > 20 else 80  # a terminal that does not say
        line = "palhm: " + "  ".join(parts)
        if len(line) > width - 1:
            line = line[: max(0, width - 2)] + "…"
        return line

    # Called with logs.TERMINAL held.
    def erase(self) -> None:
        if self._shown:
            self._write("\r\x1b[K")
            self._shown = False

    def draw(self) -> None:
        if self._line:
            self._write("\r\x1b[K" + self._line)
            self._shown = True
        else:
            self.erase()

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self._stop.set()
