"""Building objects as their group DAG allows, ``nb-workers`` at a time.

An object starts once every group its group depends on has finished (a group
finishes when its own dependencies have and all its objects are built);
objects start in config order. The first failure stops dispatching and ends
every running pipeline; the first error is raised once all workers are back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from palhm_core.process import Children
from palhm_core.signals import StopSignals

T = TypeVar("T")


def worker_count(nb_workers: int) -> int | None:
    """0: the CPUs this process may use; negative: Python's default (None);
    positive: that many."""
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
    running: dict[Future, int] = {}
    error: BaseException | None = None

    def settle() -> None:
        changed = True
        while changed:
            changed = False
            for g in depends:
                if g not in finished and not left[g] and all(d in finished for d in depends[g]):
                    finished.add(g)
                    changed = True

    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="palhm-object") as pool:
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
                                running[pool.submit(work, items[i])] = i
                if not running:
                    break
                done, _ = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
                if signals.received is not None and error is None:
                    children.stop()
                    error = signals.pending_error()
                for fut in done:
                    i = running.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        results[i] = fut.result()
                        left[group_of(items[i])] -= 1
                    elif error is None:
                        error = exc
                        children.stop()
        except BaseException:
            children.stop()
            raise
    if error is not None:
        raise error
    return results
