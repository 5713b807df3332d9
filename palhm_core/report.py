"""The run report (``palhm run --report FILE``) and the Prometheus
node-exporter textfile (``palhm run --metrics-dir DIR``), both written
atomically: a temporary file in the same directory, flushed, then renamed over
the old one, so a reader sees the old document or the new one, never half.

Both come from plugins of the core's own events, which ``palhm run`` registers
for the run: :class:`RunRecord` keeps the report of every task that made one
(``palhm_task_finished``) and builds the document when the run ends, which is
handed to every plugin by ``palhm_run_finished``; :class:`RunOutputs` writes
the files then.

Both are written mode 0600 (a run's report may quote a failing command's
stderr, redacted but still the host's business); the textfile keeps the read
bits of the file it replaces, so that ``chmod 644`` once lets a node exporter
running as another user read it.

The report is one JSON document per run. When the task the run names made a
report of its own (a backup task: see
:func:`palhm_core.hookspecs.palhm_task_finished`: ``objects`` with path,
bytes, sha256, seconds and exit-codes; ``total-bytes``; ``rotated``;
``future-copies``, ``damaged-copies`` and ``foreign-copies``, the PREFIXes of
the copies rotation left alone and why) and succeeded, it is that report plus
``type``, ``success`` and ``exit-status``. Otherwise (a routine task, a
failure) it has ``task``, ``type``, ``started``, ``finished``, ``seconds``,
``success``, ``exit-status`` and ``runs``: the report of every task run that
made one (the backups run through ``task`` steps), in the order they finished.
A failed run has ``success: false``, ``error`` (the line PALHM printed) and
the reports of the backups that completed before the failure in ``runs``.

The textfile ``palhm_TASK.prom`` holds, labelled ``{task="TASK"}``:
``palhm_last_run_success`` (1 or 0), ``palhm_last_run_timestamp_seconds``,
``palhm_last_run_duration_seconds``, ``palhm_last_run_bytes`` (bytes stored by
the run, 0 when it failed), ``palhm_last_run_exit_status``,
``palhm_future_copies`` and ``palhm_damaged_copies`` (the backups' counts of
copies dated after now and of damaged copies, when the run listed them) and
``palhm_last_success_timestamp_seconds``, which a failed run carries over from
the previous file (and leaves out when no run ever succeeded). A backup's
report names, in ``kept-by``, every copy rotation kept and the rules that keep
it (``just made``, ``last``, ``daily``, ``within 2d``...: see
:mod:`palhm_core.retention`); with a retention policy, the textfile counts
the copies each of its rules keeps in
``palhm_kept_copies{task="TASK",rule="RULE"}``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from palhm_core.errors import LockBusy, PalhmError
from palhm_core.hookspecs import hookimpl
from palhm_core.redact import redact

if TYPE_CHECKING:
    from palhm_core.task import Task

log = logging.getLogger("palhm")


class ReportError(PalhmError):
    """The report or the metrics could not be written."""


class RunRecord:
    """What the report says of one run: a plugin of the core's own events
    that keeps every task's report, in the order the tasks finished.

    :param task_id: the task the command line names.
    """

    def __init__(self, task_id: str):
        self.task_id = task_id
        #: The task's type, once the config has loaded.
        self.task_type: str | None = None
        self.started = time.time()
        #: (task id, report) of every task run that made a report.
        self.reports: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def palhm_task_finished(self, task: Task, report: dict[str, Any] | None) -> None:
        if report is not None:
            self.reports.append((task.id, report))

    def document(self, error: BaseException | None, exit_status: int) -> dict[str, Any]:
        """The run's report, now that it ended (with ``error``, or None)."""
        return build_report(
            self.task_id,
            self.task_type,
            self.started,
            time.time(),
            self.reports,
            error,
            exit_status,
        )


class RunOutputs:
    """``palhm run --report FILE --metrics-dir DIR``: a plugin writing both
    when the run finishes (not when it found the task's lock taken). A file
    that cannot be written fails a run that succeeded (:attr:`error`, which
    ``palhm run`` raises) and is an error line beside the failure of one that
    did not."""

    def __init__(self, report: str | None, metrics_dir: str | None):
        self.report = report
        self.metrics_dir = metrics_dir
        #: Why a file of a successful run could not be written.
        self.error: ReportError | None = None

    @hookimpl
    def palhm_run_finished(self, exit_status: int, report: dict[str, Any]) -> None:
        if exit_status == LockBusy.exit_status:
            return  # the run that holds the lock writes them
        try:
            if self.report:
                write_report(self.report, report)
            if self.metrics_dir:
                write_metrics(self.metrics_dir, report, time.time())
        except ReportError as e:
            if exit_status == 0:
                self.error = e
            else:
                log.error("%s", e)


def build_report(
    task_id: str,
    task_type: str | None,
    started: float,
    finished: float,
    runs: list[tuple[str, dict[str, Any]]],
    error: BaseException | None = None,
    exit_status: int = 0,
) -> dict[str, Any]:
    """The run's document. ``runs``: (task id, report) of every task run that
    made a report, in the order they finished; times are Unix times."""
    status = {"success": error is None, "exit-status": exit_status}
    if error is not None:
        status["error"] = redact(str(error))
    top = next((r for tid, r in runs if tid == task_id), None)
    if top is not None and error is None:
        doc = {"task": task_id, "type": task_type, **status}
        doc.update((k, _redacted(k, v)) for k, v in top.items() if k != "task")
        return doc
    return {
        "task": task_id,
        "type": task_type,
        "started": _iso(started),
        "finished": _iso(finished),
        "seconds": round(finished - started, 3),
        **status,
        "runs": [{k: _redacted(k, v) for k, v in r.items()} for _, r in runs],
    }


def report_bytes(doc: dict[str, Any]) -> int:
    """Bytes the run stored: its own ``total-bytes`` or its runs' sum."""
    if not doc.get("success"):
        return 0
    if "total-bytes" in doc:
        return int(doc["total-bytes"])
    return sum(int(r.get("total-bytes", 0)) for r in doc.get("runs", ()))


def _listed_copies(doc: dict[str, Any], key: str) -> int | None:
    """How many copies the run's backups listed under ``key``; None when no
    backup of the run got as far as listing them."""
    found = [r[key] for r in [doc, *doc.get("runs", ())] if key in r]
    return sum(len(v) for v in found) if found else None


def _kept_by_rule(doc: dict[str, Any]) -> dict[str, int]:
    """How many copies the rules of the run's retention policies keep
    (``kept-by``; a copy kept by several rules counts under each; the copy
    just made is counted only under the rules that keep it)."""
    counts: dict[str, int] = {}
    for r in [doc, *doc.get("runs", ())]:
        for rules in r.get("kept-by", {}).values():
            for rule in rules:
                if rule != "just made" and not rule.startswith("sorts after "):
                    counts[rule] = counts.get(rule, 0) + 1
    return counts


def write_report(path: str, doc: dict[str, Any]) -> None:
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    write_atomically(path, text.encode(), mode=0o600)


def write_metrics(directory: str, doc: dict[str, Any], finished: float) -> str:
    """Write ``DIR/palhm_TASK.prom``; returns its path."""
    task = doc["task"]
    path = os.path.join(directory, f"palhm_{_file_part(task)}.prom")
    success = bool(doc.get("success"))
    last_success = finished if success else _old_value(path, "palhm_last_success_timestamp_seconds")
    label = '{task="' + _label_value(task) + '"}'
    lines: list[str] = []

    def gauge(name: str, help_text: str, value) -> None:
        if value is not None:
            lines.extend((f"# HELP {name} {help_text}", f"# TYPE {name} gauge"))
            lines.append(f"{name}{label} {_number(value)}")

    gauge("palhm_last_run_success", "1 if the last run succeeded, else 0.", int(success))
    gauge("palhm_last_run_timestamp_seconds", "When the last run ended.", finished)
    gauge("palhm_last_run_duration_seconds", "How long the last run took.", doc.get("seconds"))
    gauge("palhm_last_run_bytes", "Bytes stored by the last run.", report_bytes(doc))
    gauge("palhm_last_run_exit_status", "Exit status of the last run.", doc.get("exit-status"))
    gauge(
        "palhm_future_copies",
        "Copies dated after the last run's clock (not counted, not rotated).",
        _listed_copies(doc, "future-copies"),
    )
    gauge(
        "palhm_damaged_copies",
        "Copies whose manifest is unreadable or disagrees with the storage (never rotated).",
        _listed_copies(doc, "damaged-copies"),
    )
    gauge(
        "palhm_last_success_timestamp_seconds", "When the last successful run ended.", last_success
    )
    kept = _kept_by_rule(doc)
    if kept:
        name = "palhm_kept_copies"
        lines += [
            f"# HELP {name} Copies rotation kept, by each rule that keeps them.",
            f"# TYPE {name} gauge",
        ]
        for rule, n in sorted(kept.items()):
            lines.append(f'{name}{label[:-1]},rule="{_label_value(rule)}"}} {n}')
    write_atomically(path, ("\n".join(lines) + "\n").encode(), mode=_kept_mode(path))
    return path


def write_atomically(path: str, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` in one step (rename in the same directory)."""
    path = os.path.abspath(path)
    directory, name = os.path.split(path)
    try:
        import tempfile

        # A name the node exporter ignores (not *.prom) while it is incomplete.
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise ReportError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ReportError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _kept_mode(path: str) -> int:
    """0600, plus the read bits an administrator gave the file replaced (a
    node exporter running as another user needs ``chmod 644`` once)."""
    try:
        return 0o600 | (stat.S_IMODE(os.stat(path).st_mode) & 0o044)
    except OSError:
        return 0o600


def _redacted(key: str, value):
    return redact(value) if isinstance(value, str) and key in ("backend", "error") else value


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def _file_part(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@+-]", "_", task).lstrip(".") or "task"


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _old_value(path: str, name: str) -> float | None:
    """The sample of metric ``name`` in an earlier textfile, if any."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + "{") or line.startswith(name + " "):
                    return float(line.rsplit(None, 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None
