"""``palhm backups prune``: apply a task's rotation now, or show what it
would keep and delete."""

from __future__ import annotations

import json
import sys

DESCRIPTION = """\
Apply the task's rotation now: its retention policy (backend-param.keep), then
nb-copy-limit and root-size-limit, as a run does after making a copy; the
newest complete copy stands for the copy just made and is always kept.
--dry-run deletes nothing and shows which rules keep each copy and which copies
would go. Takes the task's lock, as a run does (exit 75 while a run holds it).
"""


def add_parser(bsub) -> None:
    p = bsub.add_parser(
        "prune",
        help="apply the task's rotation now (--dry-run: show what it keeps and deletes)",
        description=DESCRIPTION,
    )
    p.add_argument("task", metavar="TASK")
    p.add_argument("--dry-run", action="store_true", help="delete nothing, only show")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.add_argument(
        "--lock-dir",
        metavar="DIR",
        help="where lock files go (as for palhm run; default: $PALHM_LOCK_DIR, else "
        "/run/palhm as root, $XDG_RUNTIME_DIR/palhm otherwise)",
    )
    p.set_defaults(func=cmd_prune)


def cmd_prune(args) -> int:
    from palhm_core.cli import config_path, load_config, storage_of
    from palhm_core.lock import RunLocks

    plugins, conf, _ = load_config(args)
    task = conf.task(args.task)
    backend = storage_of(task, "prune")
    locks = RunLocks(config_path(args), [task.id], args.lock_dir)
    locks.acquire()
    try:
        backend.open()
        try:
            return _prune(args, plugins, task, backend)
        finally:
            backend.close()
    finally:
        locks.release()


def _prune(args, plugins, task, backend) -> int:
    import logging

    from palhm_core.copies import judge_copies, own, warnings
    from palhm_core.rotation import decide, delete

    log = logging.getLogger("palhm")
    copies = judge_copies(backend, task.id)
    for line in warnings(copies):
        log.warning("%s: %s", task.id, line)
    counted = own(copies)
    if not counted:
        log.info("%s: no complete copy on %s: nothing to prune", task.id, backend.describe())
        return 0
    rotation = decide(
        copies,
        keep=max(c.prefix for c in counted),
        keep_reason="newest",
        nb_copy_limit=task.nb_copy_limit,
        root_size_limit=task.root_size_limit,
        policy=task.policy,
    )
    rows = _rows(counted, rotation)
    if args.json:
        doc = {"task": task.id, "dry-run": args.dry_run, "copies": rows}
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        _table(rows, args.dry_run)
    if args.dry_run:
        return 0

    def gone(copy) -> None:
        log.info(
            "%s: deleted copy %s (%s)", task.id, copy.prefix, rotation.why_deleted[copy.prefix]
        )
        plugins.emit("palhm_copy_rotated", task=task, backend=backend, copy=copy)

    delete(backend, rotation, on_delete=gone)
    return 0


def _rows(counted, rotation) -> list[dict]:
    """One row per copy that counts, oldest name first: kept or not, and why."""
    from palhm_core.rotation import copy_time

    return [
        {
            "prefix": c.prefix,
            "time": copy_time(c).isoformat(),
            "size": c.size,
            "keep": c.prefix in rotation.kept,
            "reasons": (
                rotation.kept[c.prefix]
                if c.prefix in rotation.kept
                else [rotation.why_deleted[c.prefix]]
            ),
        }
        for c in sorted(counted, key=lambda c: c.prefix)
    ]


def _table(rows: list[dict], dry_run: bool) -> None:
    kept = [r for r in rows if r["keep"]]
    gone = [r for r in rows if not r["keep"]]
    print(f"keep {len(kept)} copies:")
    _print([("PREFIX", "TIME", "REASONS")] + [_row(r) for r in kept])
    if gone:
        print()
        print(f"{'would delete' if dry_run else 'delete'} {len(gone)} copies:")
        _print([("PREFIX", "TIME", "WHY")] + [_row(r) for r in gone])


def _row(r: dict) -> tuple[str, str, str]:
    return r["prefix"], r["time"], ", ".join(r["reasons"]) or "-"


def _print(table: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
