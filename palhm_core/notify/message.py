"""The message of a task's start, success or failure.

The JSON document (:attr:`Message.doc`) holds:

- ``host``, ``task``, ``type`` (the task type), ``event`` (``start``,
  ``success`` or ``failure``), ``started`` (ISO 8601);
- once it ended: ``finished``, ``seconds``, ``exit-status`` (the status
  ``palhm run`` exits with for this outcome), ``error`` (the line PALHM
  printed, ``null`` on success) and ``error-text`` (every line of it, such as
  a command's last stderr lines);
- ``copies``: the copies the task made (directly or through ``task`` steps),
  each ``{"task", "prefix", "backend", "bytes", "seconds"}``, and
  ``rotated``: the copies rotation deleted, each ``{"task", "prefix"}``.

Every string has gone through :func:`palhm_core.redact.redact`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from palhm_core.notify import Message
from palhm_core.redact import redact

OUTCOME_WORDS = {"start": "started", "success": "succeeded", "failure": "FAILED"}


def exit_status_of(error: BaseException) -> int:
    """The status ``palhm run`` exits with when a task ends with ``error``."""
    if isinstance(error, KeyboardInterrupt):
        return 130
    return getattr(error, "exit_status", 1)


def task_message(
    *,
    host: str,
    task_id: str,
    task_type: str,
    event: str,
    started: float,
    finished: float | None = None,
    error: str | None = None,
    exit_status: int = 0,
    reports: list[tuple[str, dict[str, Any]]] = (),
) -> Message:
    """The message of ``event`` for a task that started at ``started`` (epoch
    seconds) and ended at ``finished`` with ``exit_status`` and ``error``
    (the text PALHM printed, or None); ``reports`` are the (task id, report)
    of the backups it ran."""
    doc: dict[str, Any] = {
        "host": host,
        "task": task_id,
        "type": task_type,
        "event": event,
        "started": _iso(started),
    }
    if event != "start":
        error_text = redact(error) if error else None
        doc.update(
            {
                "finished": _iso(finished),
                "seconds": round((finished or started) - started, 3),
                "exit-status": exit_status,
                "error": error_text.splitlines()[0] if error_text else None,
                "error-text": error_text,
                "copies": [_copy(tid, r) for tid, r in reports if r.get("prefix")],
                "rotated": [
                    {"task": tid, "prefix": p} for tid, r in reports for p in r.get("rotated", ())
                ],
            }
        )
    subject = f"PALHM on {host}: task {task_id} {OUTCOME_WORDS[event]}"
    return Message(event, one_line(redact(subject)), _text(doc), doc)


def one_line(text: str) -> str:
    """``text`` as a mail header or a title takes it: its line breaks and
    other control characters (a task id may hold any) as blanks, so that
    no text becomes a header of its own."""
    return " ".join("".join(" " if c < " " or c == "\x7f" else c for c in text).split())


def _copy(task_id: str, report: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": task_id,
        "prefix": report["prefix"],
        "backend": redact(str(report.get("backend", ""))),
        "bytes": report.get("total-bytes"),
        "seconds": report.get("seconds"),
    }


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _text(doc: dict[str, Any]) -> str:
    """The body a person reads in a mail."""
    lines = [
        f"host:        {doc['host']}",
        f"task:        {doc['task']} ({doc['type']})",
        f"event:       {doc['event']}",
        f"started:     {doc['started']}",
    ]
    if doc["event"] != "start":
        lines += [
            f"finished:    {doc['finished']} ({doc['seconds']:g} s)",
            f"exit status: {doc['exit-status']}",
        ]
        if doc["error-text"]:
            lines += ["", "error:", *(f"  {line}" for line in doc["error-text"].splitlines())]
        if doc["copies"]:
            lines += ["", "copies made:"]
            for c in doc["copies"]:
                size = "" if c["bytes"] is None else f", {c['bytes']} bytes"
                took = "" if c["seconds"] is None else f" in {c['seconds']:g} s"
                lines.append(f"  {c['task']}: {c['prefix']} on {c['backend']}{size}{took}")
        if doc["rotated"]:
            lines += ["", "copies rotated away:"]
            lines += [f"  {r['task']}: {r['prefix']}" for r in doc["rotated"]]
    return "\n".join(lines) + "\n"
