"""Building objects as their group DAG allows, ``nb-workers`` at a time.

An object starts once every group its group depends on has finished (a group
finishes when its own dependencies have and all its objects are built);
objects start in config order, each in a worker thread of its own. The first
failure stops dispatching and ends every running pipeline; the first error is
raised once all workers are back. When the run is stopping (a signal, a task's
timeout), workers still busy :data:`~palhm_core.signals.FINISH_WAIT` seconds
after the stop (one blocked on a server that stopped answering) are left
behind, so that the stop is never held up by them.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable
from typing import TypeVar

from palhm_core.process import Children
from palhm_core.signals import POLL, StopSignals, start_command_thread, start_helper_thread

T = TypeVar("T")


def worker_count(nb_workers: int) -> int:
    """0: the CPUs this process may use; negative: Python's default for a
    thread pool; positive: that many."""
    if nb_workers == 0:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1
    if nb_workers < 0:
        return min(32, (os.cpu_count() or 1) + 4)
    return nb_workers


def build_all(
    items: list[T],
    group_of: Callable[[T], str],
    depends: dict[str, list[str]],
    work: Callable[[T], object],
    *,
    nb_workers: int,
    children: Children,
    signals: StopSignals,
) -> list[object]:
    """Run ``work(item)`` for every item; results in item order."""
    build = _Build(items, group_of, depends, work, worker_count(nb_workers))
    since = time.monotonic()
    try:
        while True:
            build.settle()
            if build.error is None:
                build.dispatch()
            if not build.running:
                break
            build.collect(children)
            if signals.stopping and build.error is None:
                build.error = signals.pending_error()  # the stop already ends the commands
            limit_at = signals.finish_by(since)
            if build.error is not None and limit_at is not None and time.monotonic() >= limit_at:
                break  # the rest are left behind
    except BaseException:
        children.stop()
        raise
    if build.error is not None:
        raise build.error
    return build.results


class _Build:
    """The state of one :func:`build_all`: which groups have finished, which
    items run, their results and the first error."""

    def __init__(self, items, group_of, depends: dict[str, list[str]], work, limit: int):
        self.items = items
        self.group_of = group_of
        self.depends = depends
        self.work = work
        self.limit = limit
        self.members: dict[str, list[int]] = {g: [] for g in depends}
        for i, item in enumerate(items):
            self.members[group_of(item)].append(i)
        #: Items of each group not built yet.
        self.left = {g: len(ix) for g, ix in self.members.items()}
        self.finished: set[str] = set()
        self.started: set[int] = set()
        self.running: set[int] = set()
        self.results: list[object] = [None] * len(items)
        self.error: BaseException | None = None
        self.done: queue.Queue = queue.Queue()

    def _ready(self, group: str) -> bool:
        return all(d in self.finished for d in self.depends[group])

    def settle(self) -> None:
        """Mark finished every group whose dependencies have and whose items
        are all built."""
        changed = True
        while changed:
            changed = False
            for g in self.depends:
                if g not in self.finished and not self.left[g] and self._ready(g):
                    self.finished.add(g)
                    changed = True

    def dispatch(self) -> None:
        """Start the items whose groups may start, in config order, up to the
        worker limit."""
        for g in self.depends:
            if not self._ready(g):
                continue
            for i in self.members[g]:
                if len(self.running) >= self.limit:
                    break
                if i not in self.started:
                    self.started.add(i)
                    self.running.add(i)
                    start_command_thread(lambda i=i: self._worker(i), f"palhm-object-{i}")

    def _worker(self, i: int) -> None:
        try:
            self.done.put((i, True, self.work(self.items[i])))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.done.put((i, False, e))

    def collect(self, children: Children) -> None:
        """Wait (at most :data:`POLL` seconds) for an item to end; on the
        first failure, end every running pipeline."""
        try:
            i, ok, value = self.done.get(timeout=POLL)
        except queue.Empty:
            return
        self.running.discard(i)
        if ok:
            self.results[i] = value
            self.left[self.group_of(self.items[i])] -= 1
        elif self.error is None:
            self.error = value
            # Not in this thread: a stop signal meanwhile must not wait
            # for the grace period of commands that ignore SIGTERM.
            start_helper_thread(children.stop, "palhm-stop")
