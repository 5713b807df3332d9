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
    limit = worker_count(nb_workers)
    members: dict[str, list[int]] = {g: [] for g in depends}
    for i, item in enumerate(items):
        members[group_of(item)].append(i)
    left = {g: len(ix) for g, ix in members.items()}
    finished: set[str] = set()
    started: set[int] = set()
    results: list[object] = [None] * len(items)
    running: set[int] = set()
    done: queue.Queue = queue.Queue()
    error: BaseException | None = None
    since = time.monotonic()

    def worker(i: int) -> None:
        try:
            done.put((i, True, work(items[i])))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            done.put((i, False, e))

    def settle() -> None:
        changed = True
        while changed:
            changed = False
            for g in depends:
                if g not in finished and not left[g] and all(d in finished for d in depends[g]):
                    finished.add(g)
                    changed = True

    try:
        while True:
            settle()
            if error is None:
                for g in depends:
                    if not all(d in finished for d in depends[g]):
                        continue
                    for i in members[g]:
                        if len(running) >= limit:
                            break
                        if i not in started:
                            started.add(i)
                            running.add(i)
                            start_command_thread(lambda i=i: worker(i), f"palhm-object-{i}")
            if not running:
                break
            try:
                i, ok, value = done.get(timeout=POLL)
            except queue.Empty:
                pass
            else:
                running.discard(i)
                if ok:
                    results[i] = value
                    left[group_of(items[i])] -= 1
                elif error is None:
                    error = value
                    # Not in this thread: a stop signal meanwhile must not wait
                    # for the grace period of commands that ignore SIGTERM.
                    start_helper_thread(children.stop, "palhm-stop")
            if signals.stopping and error is None:
                error = signals.pending_error()  # the stop already ends the commands
            limit_at = signals.finish_by(since)
            if error is not None and limit_at is not None and time.monotonic() >= limit_at:
                break  # the rest are left behind
    except BaseException:
        children.stop()
        raise
    if error is not None:
        raise error
    return results
