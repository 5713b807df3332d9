"""``palhm backups``: list, verify and read back the copies of a backup task."""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    from palhm_core.cli import prune, verify_outputs

    p = sub.add_parser("backups", help="list, verify or read back the copies of a backup task")
    bsub = p.add_subparsers(dest="backups_command", metavar="ACTION", required=True)
    ls = bsub.add_parser("list", help="the task's copies, oldest first")
    ls.add_argument("task", metavar="TASK")
    ls.add_argument("--json", action="store_true", help="as JSON")
    ls.set_defaults(func=cmd_list)
    ver = bsub.add_parser("verify", help="read copies back and check them against their manifest")
    ver.add_argument("task", metavar="TASK")
    which = ver.add_mutually_exclusive_group()
    which.add_argument("prefix", nargs="?", metavar="PREFIX", help="one copy")
    which.add_argument(
        "--latest",
        action="store_true",
        help="the newest copy of the task, complete or damaged (default)",
    )
    which.add_argument("--all", action="store_true", help="every complete copy")
    ver.add_argument(
        "--deep",
        action="store_true",
        help="also feed each object to its check pipeline (zstd -t, pg_restore --list...)",
    )
    verify_outputs.add_arguments(ver)
    ver.set_defaults(func=cmd_verify)
    cat = bsub.add_parser("cat", help="write one object to stdout, checking its SHA-256")
    cat.add_argument("task", metavar="TASK")
    cat.add_argument("prefix", metavar="PREFIX", help="a copy's PREFIX, or latest")
    cat.add_argument("path", metavar="PATH")
    cat.set_defaults(func=cmd_cat)
    prune.add_parser(bsub)


def _backend(args):
    """The task's backend, opened; None for a backend that keeps no copies."""
    from palhm_core.cli import load_config
    from palhm_core.errors import UsageError

    _, conf, _ = load_config(args)
    task = conf.task(args.task)
    backend = task.storage()
    if backend is None:
        raise UsageError(f"task {task.id!r} is a {task.name} task: it makes no copies")
    return task, backend


def _keeps_nothing(task, backend) -> bool:
    if backend.stores_nothing:
        print(
            f"task {task.id!r} uses the {backend.name} backend: it keeps no copies, "
            "nothing to check",
            file=sys.stderr,
        )
        return True
    return False


def _judged(task, backend):
    """The task's copies as the core judges them, oldest first."""
    from palhm_core.copies import judge_copies

    backend.open()
    try:
        return judge_copies(backend, task.id)
    finally:
        backend.close()


def cmd_list(args) -> int:
    from datetime import datetime, timezone

    task, backend = _backend(args)
    if _keeps_nothing(task, backend):
        return 0
    now = datetime.now(timezone.utc)
    rows = [_row(c, now) for c in _judged(task, backend)]
    if args.json:
        json.dump(
            {"task": task.id, "backend": backend.describe(), "copies": rows}, sys.stdout, indent=2
        )
        print()
        return 0
    table = [("PREFIX", "STATE", "OBJECTS", "SIZE", "AGE", "NOTE")]
    for r in rows:
        table.append(
            (
                r["prefix"],
                "future" if r["future"] else r["state"],
                "-" if r["objects"] is None else str(r["objects"]),
                _size(r["size"]) if r["state"] != "incomplete" else "-",
                "-" if r["age-seconds"] is None else _age(r["age-seconds"]),
                r["why"],
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _row(c, now) -> dict:
    """One copy as ``backups list --json`` shows it."""
    from palhm_core.manifest import finished_time

    finished = finished_time(c.manifest) if c.manifest else c.finished
    age = None
    if finished is not None and finished.tzinfo is not None and not c.future:
        age = max(0, int((now - finished).total_seconds()))
    why = c.why
    if c.future:
        why = f"finished {c.manifest['finished']}, after now: the clock was or is wrong"
    return {
        "prefix": c.prefix,
        "state": c.state,
        "complete": c.state == "complete",
        "future": c.future,
        "why": why,
        "objects": c.objects,
        "size": c.size,
        "age-seconds": age,
    }


def cmd_verify(args) -> int:
    from palhm_core.cli import verify_outputs
    from palhm_core.cli.restore import deep_checker
    from palhm_core.copies import judge_copies
    from palhm_core.errors import TaskError
    from palhm_core.verify import pick_copies, verify_copy

    task, backend = _backend(args)
    if _keeps_nothing(task, backend):
        return 0
    backend.open()
    problems = []
    checked = []
    try:
        copies = judge_copies(backend, task.id)
        for copy in pick_copies(copies, backend, args.prefix, args.all, damaged=True):
            count, found = verify_copy(backend, copy, deep_checker(args, task, backend))
            problems += found
            checked.append((copy.prefix, count))
            state = f"{count} objects, " + ("OK" if not found else f"{len(found)} bad")
            if copy.state == "damaged":
                state = f"damaged: {copy.why}" if copy.manifest is None else f"{state}, damaged"
            print(f"{copy.prefix}: {state}")
    finally:
        backend.close()
    verify_outputs.write(args, task.id, checked, problems)
    if problems:
        raise TaskError("\n".join(str(p) for p in problems))
    return 0


def cmd_cat(args) -> int:
    from palhm_core.copies import judge_copies
    from palhm_core.errors import PalhmError, TaskError
    from palhm_core.verify import pick_copies, stream

    task, backend = _backend(args)
    if backend.stores_nothing:
        raise PalhmError(f"task {task.id!r} uses the {backend.name} backend: it keeps no copies")
    backend.open()
    try:
        (copy,) = pick_copies(judge_copies(backend, task.id), backend, args.prefix, False)
        if copy.manifest is None:
            raise PalhmError(f"copy {copy.prefix!r} is damaged: {copy.why}")
        entry = next((o for o in copy.manifest["objects"] if o["path"] == args.path), None)
        if entry is None:
            raise PalhmError(f"copy {copy.prefix!r} has no object {args.path!r}")
        out = sys.stdout.buffer
        try:
            size, digest = stream(backend, copy.prefix, args.path, out.write)
        except FileNotFoundError:
            raise TaskError(f"{copy.prefix}/{args.path}: missing") from None
        out.flush()
    finally:
        backend.close()
    if size != entry["size"] or digest != entry["sha256"]:
        raise TaskError(
            f"{copy.prefix}/{args.path}: does not match the manifest "
            f"(size {size}, SHA-256 {digest}): do not trust this output"
        )
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _age(seconds: int) -> str:
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
