"""``palhm backups``: list, verify and read back the copies of a task."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("backups", help="list, verify or read the copies of a backup task")
    p.set_defaults(func=lambda args: p.print_help() or 2)
