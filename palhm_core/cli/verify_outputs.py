"""What ``palhm backups verify --report FILE --metrics-dir DIR`` records: the
result of the last verify (deep or not) of a task, for monitoring.

The report is one JSON document: ``task``, ``finished`` (ISO 8601),
``deep``, ``success``, ``copies`` (each ``prefix`` and ``objects`` checked)
and ``problems`` (one line each, as printed). The textfile
``DIR/palhm_verify_TASK.prom`` (beside the runs' ``palhm_TASK.prom``) holds,
labelled ``{task="TASK"}``: ``palhm_last_verify_success`` (1 or 0),
``palhm_last_verify_deep`` (1 when the check pipelines ran),
``palhm_last_verify_timestamp_seconds``, ``palhm_last_verify_objects`` and
``palhm_last_verify_bad_objects``. Both are replaced in one step, mode 0600.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone


def add_arguments(parser) -> None:
    parser.add_argument(
        "--report", metavar="FILE", help="write the result (JSON) to FILE, replacing it in one step"
    )
    parser.add_argument(
        "--metrics-dir",
        metavar="DIR",
        help="write a Prometheus node-exporter textfile DIR/palhm_verify_TASK.prom",
    )


def write(args, task_id: str, checked: list[tuple[str, int]], problems: list) -> None:
    """Write what ``args`` asks for: ``checked`` holds (PREFIX, objects
    checked) of each copy, ``problems`` what was wrong."""
    if not args.report and not args.metrics_dir:
        return
    from palhm_core.redact import redact
    from palhm_core.report import _file_part, _label_value, write_atomically

    finished = time.time()
    deep = bool(getattr(args, "deep", False))
    if args.report:
        doc = {
            "task": task_id,
            "finished": datetime.fromtimestamp(finished, timezone.utc).isoformat(),
            "deep": deep,
            "success": not problems,
            "copies": [{"prefix": p, "objects": n} for p, n in checked],
            "problems": [redact(str(p)) for p in problems],
        }
        write_atomically(args.report, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o600)
    if args.metrics_dir:
        label = '{task="' + _label_value(task_id) + '"}'
        values = [
            (
                "palhm_last_verify_success",
                "1 if the last verify found nothing wrong.",
                int(not problems),
            ),
            ("palhm_last_verify_deep", "1 if the last verify ran the check pipelines.", int(deep)),
            ("palhm_last_verify_timestamp_seconds", "When the last verify ended.", finished),
            (
                "palhm_last_verify_objects",
                "Objects the last verify read.",
                sum(n for _, n in checked),
            ),
            ("palhm_last_verify_bad_objects", "Problems the last verify found.", len(problems)),
        ]
        lines = []
        for name, text, value in values:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name}{label} {value}"]
        path = os.path.join(args.metrics_dir, f"palhm_verify_{_file_part(task_id)}.prom")
        write_atomically(path, ("\n".join(lines) + "\n").encode(), mode=0o600)
