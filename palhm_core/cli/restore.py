"""``palhm restore`` and the deep checks of ``palhm backups verify --deep``."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("palhm")

DESCRIPTION = """\
Restore the objects of a copy (the newest complete one by default). Each
object is read back from the backend, its SHA-256 checked as it streams, and
fed to its "restore" pipeline, or written under DIR with --to. A restore
pipeline gets the end of its input only once the object matched its
manifest: on a mismatch its commands are ended and PALHM exits 1. Without
--to, every object restored needs a "restore" pipeline.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "restore",
        help="restore a copy's objects through their restore pipelines, or into DIR",
        description=DESCRIPTION,
    )
    p.add_argument("task", metavar="TASK")
    p.add_argument(
        "prefix", nargs="?", metavar="PREFIX", help="a copy's PREFIX, or latest (default)"
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="objects to restore, or directories of objects (default: all of them)",
    )
    p.add_argument("--to", metavar="DIR", help="write the objects under DIR instead")
    p.add_argument("--force", action="store_true", help="with --to: replace files that exist")
    p.set_defaults(func=cmd_restore)


def _selected(entries: list[dict], paths: list[str], prefix: str) -> list[dict]:
    from palhm_core.errors import UsageError

    if not paths:
        return entries
    chosen = []
    for want in paths:
        want = want.strip("/")
        found = [e for e in entries if e["path"] == want or e["path"].startswith(want + "/")]
        if not found:
            raise UsageError(f"copy {prefix!r} has no object {want!r}")
        chosen += [e for e in found if e not in chosen]
    return chosen


def cmd_restore(args) -> int:
    from palhm_core.cli import effective_vl, load_config, storage_of
    from palhm_core.copies import judge_copies, warnings
    from palhm_core.errors import PalhmError, UsageError
    from palhm_core.process import Children
    from palhm_core.verify import pick_copies

    _, conf, vl = load_config(args)
    task = conf.task(args.task)
    backend = storage_of(task, "restore")
    if args.force and not args.to:
        raise UsageError("--force replaces files under --to DIR: give --to")
    _stop_on_signals()
    backend.open()
    children = Children()
    try:
        copies = judge_copies(backend, task.id)
        # Damaged and future-dated copies are said first: "latest" passes
        # over a newer one and restores older data.
        for line in warnings(copies):
            log.warning("%s: %s", task.id, line)
        (copy,) = pick_copies(copies, backend, args.prefix, False)
        if copy.manifest is None:
            raise PalhmError(f"copy {copy.prefix!r} is damaged: {copy.why}")
        entries = _selected(copy.manifest["objects"], args.paths, copy.prefix)
        if args.to:
            _into_dir(backend, copy.prefix, entries, args.to, args.force)
        else:
            _through_pipelines(
                task, backend, copy.prefix, entries, children, effective_vl(args, vl)
            )
    finally:
        children.stop(grace=2.0)
        backend.close()
    return 0


def _into_dir(backend, prefix: str, entries: list[dict], to: str, force: bool) -> None:
    from palhm_core.errors import UsageError
    from palhm_core.restore import write_object

    try:
        os.makedirs(to, mode=0o700, exist_ok=True)
    except FileExistsError:
        pass  # not a directory: said below
    except OSError as e:
        raise UsageError(f"--to {to}: cannot make the directory: {e.strerror or e}") from None
    if not os.path.isdir(to):
        raise UsageError(f"--to {to}: not a directory")
    for entry in entries:
        where = write_object(backend, prefix, entry, to, force=force)
        log.info("restored %s/%s to %s", prefix, entry["path"], where)


def _through_pipelines(task, backend, prefix: str, entries: list[dict], children, vl) -> None:
    """Each object into the restore pipeline its task declares for it."""
    from palhm_core.errors import TaskError, UsageError
    from palhm_core.restore import Mismatch, feed_object, pipeline_text

    restores = {o.path: o.restore for o in task.objects if o.restore}
    missing = [e["path"] for e in entries if e["path"] not in restores]
    if missing:
        raise UsageError(
            f"task {task.id!r}: no restore pipeline for {', '.join(map(repr, missing))} "
            '(declare "restore" for the object, or give --to DIR)'
        )
    for entry in entries:
        execs = restores[entry["path"]]
        log.info("restoring %s/%s: %s", prefix, entry["path"], pipeline_text(execs))
        try:
            feed_object(backend, prefix, entry, execs, children, vl=vl)
        except Mismatch:
            raise
        except TaskError as e:
            raise TaskError(
                f"{prefix}/{entry['path']}: restore `{pipeline_text(execs)}` failed: {e}"
            ) from None
        log.info("restored %s/%s", prefix, entry["path"])


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP stop a restore as Ctrl-C does: the restore
    pipeline is ended before its input ends (never a clean end of a part of
    the object), and PALHM exits 128+N."""
    import signal

    from palhm_core.errors import Interrupted

    def stop(signum, frame):
        raise Interrupted(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)


def deep_checker(args, task, backend):
    """For ``backups verify --deep``: a function giving the problem with one
    object of a copy (its SHA-256, and its ``check`` when it has one), or
    None; None without ``--deep``."""
    if not getattr(args, "deep", False):
        return None
    from palhm_core.cli import effective_vl
    from palhm_core.process import Children
    from palhm_core.restore import check_object

    checks = {o.path: o.check for o in task.objects}
    children = Children()
    vl = effective_vl(args, 3)

    def problem(prefix: str, entry: dict) -> str | None:
        execs = checks.get(entry["path"], [])
        return check_object(backend, prefix, entry, execs, children, vl=vl)

    return problem


def print_restore_plan(task, as_json: bool) -> int:
    """``palhm plan --restore``: how each object of a backup task is
    restored and checked, running nothing."""
    import json
    import sys

    from palhm_core.errors import UsageError
    from palhm_core.redact import redact
    from palhm_core.restore import pipeline_text

    if not hasattr(task, "objects"):
        raise UsageError(f"task {task.id!r} is a {task.name} task: it makes no copies to restore")
    rows = [
        {
            "path": o.path,
            "restore": redact(pipeline_text(o.restore)) if o.restore else None,
            "check": redact(pipeline_text(o.check)) if o.check else None,
        }
        for o in task.objects
    ]
    if as_json:
        json.dump({"task": task.id, "objects": rows}, sys.stdout, indent=2)
        print()
        return 0
    print(f"{task.id} ({task.name}): palhm restore {task.id} [PREFIX|latest]")
    for row in rows:
        print(f"  {row['path']}")
        print(f"    restore: {row['restore'] or 'none: palhm restore --to DIR writes the file'}")
        print(f"    check: {row['check'] or 'none: SHA-256 only'}")
    return 0
