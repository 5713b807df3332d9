"""Which copies are a task's own, judged once for rotation, ``latest`` and
``palhm backups``.

A backend lists what its storage holds (:class:`~palhm_core.backend.CopyInfo`:
the objects and the sizes the storage reports). For every complete copy the
core reads the manifest and compares its claims with the storage:

- ``foreign``: the manifest names another task, or another host;
- ``damaged``: the manifest cannot be read or is malformed, or names objects
  the storage lacks, sizes it does not hold, or misses objects it holds;
- ``complete``: this task's, and the storage holds what the manifest says.

Only ``complete`` copies are counted and rotated. A complete copy whose
manifest says it finished more than :data:`FUTURE_TOLERANCE` after now is
*future-dated*: the clock was ahead when it was made (or is behind now). It is
not counted, not rotated and never ``latest``, and every run warns about it,
so that neither a clock that jumped ahead nor one that went back makes
rotation delete the newest data.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from palhm_core.backend import Backend, CopyInfo
from palhm_core.errors import PalhmError
from palhm_core.manifest import (
    MANIFEST_MAX_BYTES,
    MANIFEST_NAME,
    check_manifest,
    finished_time,
    this_host,
)

#: How far after now a copy may say it finished before it is future-dated
#: (clocks of the hosts and storage in one place may differ a little).
FUTURE_TOLERANCE = timedelta(minutes=5)
READ_CHUNK = 1 << 16
#: Objects named in a reason before "and N more".
NAMED = 3


def judge_copies(
    backend: Backend, task: str, *, host: str | None = None, now: datetime | None = None
) -> list[CopyInfo]:
    """Every copy the backend lists, oldest first, with ``state``, ``why``,
    ``manifest`` and ``future`` set for the task ``task`` of ``host`` (this
    host by default) at ``now`` (the clock by default)."""
    host = this_host() if host is None else host
    now = datetime.now(timezone.utc) if now is None else now
    listed = sorted(backend.list_copies(), key=lambda c: c.prefix)
    if backend.parallel_reads < 2 or sum(c.complete for c in listed) < 2:
        return [_judge(backend, c, task, host, now) for c in listed]
    # Imported here: most runs never read in parallel, and start faster without it.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(backend.parallel_reads) as pool:
        return list(pool.map(lambda c: _judge(backend, c, task, host, now), listed))


def own(copies: list[CopyInfo]) -> list[CopyInfo]:
    """The copies that count: complete, this task's, not future-dated."""
    return [c for c in copies if c.state == "complete" and not c.future]


def warnings(copies: list[CopyInfo]) -> list[str]:
    """One line per copy the administrator must look at: future-dated and
    damaged copies, which rotation leaves alone."""
    lines = []
    for c in copies:
        if c.future:
            lines.append(
                f"copy {c.prefix} says it finished at {c.manifest['finished']}, after now: "
                "the clock was or is wrong; it is not counted, rotated or latest "
                "until that time (delete it by hand if it is stale)"
            )
        elif c.state == "damaged":
            lines.append(f"copy {c.prefix} is damaged, never counted or rotated: {c.why}")
    return lines


def _judge(backend: Backend, copy: CopyInfo, task: str, host: str, now: datetime) -> CopyInfo:
    if not copy.complete:
        return replace(copy, state="incomplete", why="")
    try:
        with backend.open_object(copy.prefix, MANIFEST_NAME) as f:
            data = _read_bounded(f)
    except FileNotFoundError:
        return replace(copy, state="incomplete", why="")
    except (OSError, PalhmError) as e:
        return _damaged(copy, f"cannot read {MANIFEST_NAME}: {getattr(e, 'strerror', None) or e}")
    manifest, problem = check_manifest(data)
    if manifest is None:
        return _damaged(copy, f"{MANIFEST_NAME}: {problem}")
    if manifest["task"] != task:
        return replace(copy, state="foreign", why=f"made by task {manifest['task']!r}")
    if manifest.get("host", host) != host:
        return replace(
            copy, state="foreign", why=f"made by task {task!r} on host {manifest['host']!r}"
        )
    if manifest["prefix"] != copy.prefix:
        return _damaged(copy, f"{MANIFEST_NAME} is the manifest of copy {manifest['prefix']!r}")
    problem = _disagreement(copy.files, manifest["objects"])
    if problem:
        return replace(_damaged(copy, problem), manifest=manifest)
    finished = finished_time(manifest)
    return replace(
        copy, state="complete", why="", manifest=manifest, future=finished > now + FUTURE_TOLERANCE
    )


def _read_bounded(f) -> bytes:
    """All of ``f``, or the first :data:`MANIFEST_MAX_BYTES` + 1 bytes."""
    chunks = []
    size = 0
    while size <= MANIFEST_MAX_BYTES:
        chunk = f.read(READ_CHUNK)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _damaged(copy: CopyInfo, why: str) -> CopyInfo:
    return replace(copy, state="damaged", why=why, future=False)


def _disagreement(stored: dict[str, int] | None, objects: list[dict]) -> str:
    """What the storage and the manifest disagree about; "" if nothing."""
    if stored is None:
        return "the backend cannot tell what the copy holds"
    claimed = {o["path"]: o["size"] for o in objects}
    problems = []
    missing = [p for p in claimed if p not in stored]
    if missing:
        problems.append(f"{_some(missing)} missing")
    differ = [p for p in claimed if p in stored and stored[p] != claimed[p]]
    if differ:
        p = differ[0]
        problems.append(
            f"{p!r} holds {stored[p]} bytes, the manifest says {claimed[p]}"
            + (f" (and {len(differ) - 1} more differ)" if len(differ) > 1 else "")
        )
    extra = [p for p in stored if p not in claimed]
    if extra:
        problems.append(f"{_some(extra)} not in the manifest")
    return "; ".join(problems)


def _some(paths: list[str]) -> str:
    named = ", ".join(repr(p) for p in sorted(paths)[:NAMED])
    return named + (f" and {len(paths) - NAMED} more" if len(paths) > NAMED else "")
