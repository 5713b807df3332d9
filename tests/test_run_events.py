"""What a plugin hears of a run and gives ``palhm plan``, through the
installed ``palhm``: the objects' live counters (``palhm_objects_started``),
the run report (``palhm_run_finished``, the same document ``--report``
writes), and plan steps (``Task.plan()``) that ``palhm plan`` nests without
reading their text.

The plugin is a distribution written into a temporary directory (a
``.dist-info`` with the entry point, and the module) that the ``palhm``
under test finds on its ``PYTHONPATH``, as it would in site-packages.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from types import SimpleNamespace

from conftest import backup_task, copies, inline, run_palhm, write_config

from palhm_core.pipeline import Progress
from palhm_core.progress import ProgressDisplay

LISTENER = """
import json
import os

from palhm_core.api import PlanStep, Task, hookimpl

#: task id -> the counters its objects_started event handed over
_counters = {}


def _record(**event):
    with open(os.environ["LISTENER_LOG"], "a") as f:
        f.write(json.dumps(event) + "\\n")


@hookimpl
def palhm_objects_started(task, progress, dry_run):
    _counters[task.id] = progress
    _record(event="objects_started", task=task.id, paths=[p.path for p in progress],
            dry_run=dry_run)


@hookimpl
def palhm_task_finished(task, report):
    stored = [[p.path, p.bytes] for p in _counters.get(task.id, ())]
    _record(event="task_finished", task=task.id, stored=stored,
            prefix=(report or {}).get("prefix"))


@hookimpl
def palhm_run_finished(exit_status, report, dry_run):
    _record(event="run_finished", exit_status=exit_status, report=report, dry_run=dry_run)


class Fanout(Task):
    name = "fanout"
    description = "Runs nothing; its plan nests a step and names another task (a test plugin)."
    schema = {
        "properties": {"then": {"type": "string", "description": "The task it names."}},
        "required": ["then"],
    }

    def __init__(self, conf, place, ctx):
        super().__init__(conf, place, ctx)
        self.then = conf["then"]

    def pointers(self):
        return [(self.then, self.place / "then")]

    def run(self, ctx):
        return None

    def plan(self):
        dump = ["mysqldump", "--password=hunter2", "db"]
        return [
            PlanStep("note", "dump the database", steps=[
                PlanStep("exec", " ".join(dump), commands=[dump]),
            ]),
            PlanStep("task", "after that, " + self.then, task=self.then),
        ]


@hookimpl
def palhm_task_types():
    return [Fanout]
"""


def listener_env(tmp_path: Path) -> dict:
    """Install the listener plugin into ``tmp_path/site``; the environment
    of a ``palhm`` that loads it and logs its events to ``tmp_path/events``."""
    site = tmp_path / "site"
    info = site / "palhm_listener-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: palhm-listener\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[palhm]\nlistener = palhm_listener\n")
    (site / "palhm_listener.py").write_text(textwrap.dedent(LISTENER))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return {
        "PYTHONPATH": path,
        "LISTENER_LOG": str(tmp_path / "events"),
        "PALHM_LOCK_DIR": str(tmp_path / "locks"),
    }


def events(tmp_path: Path) -> list[dict]:
    log = tmp_path / "events"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_a_plugin_reads_the_objects_counters_and_gets_the_run_report(tmp_path):
    root = tmp_path / "root"
    task = backup_task(
        "b",
        objects=[
            {"path": "a.txt", "pipeline": [inline("echo", "hello")]},
            {"path": "big.bin", "pipeline": [inline("head", "-c", "300000", "/dev/zero")]},
        ],
        root=str(root),
    )
    config = write_config(tmp_path, {"tasks": [task]})
    report = tmp_path / "report.json"
    result = run_palhm(
        "-q", "run", "--report", report, "b", config=config, env=listener_env(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    (prefix,) = copies(root)
    seen = events(tmp_path)
    assert [e["event"] for e in seen] == ["objects_started", "task_finished", "run_finished"]
    started, finished, run = seen
    assert started["paths"] == ["a.txt", "big.bin"] and started["dry_run"] is False
    # The counters end at what was stored.
    sizes = [[p, (root / prefix / p).stat().st_size] for p in ("a.txt", "big.bin")]
    assert finished["stored"] == sizes == [["a.txt", 6], ["big.bin", 300000]]
    assert finished["prefix"] == prefix
    assert run["exit_status"] == 0 and run["dry_run"] is False
    assert run["report"] == json.loads(report.read_text())
    assert run["report"]["prefix"] == prefix and run["report"]["success"] is True


def test_a_dry_run_counts_the_bytes_it_stores_nowhere(tmp_path):
    root = tmp_path / "root"
    task = backup_task(
        "b", objects=[{"path": "x", "pipeline": [inline("echo", "hello")]}], root=str(root)
    )
    config = write_config(tmp_path, {"tasks": [task]})
    result = run_palhm("-q", "run", "--dry-run", "b", config=config, env=listener_env(tmp_path))
    assert result.returncode == 0, result.stderr
    started, finished, run = events(tmp_path)
    assert started["paths"] == ["x"] and started["dry_run"] is True
    assert finished["stored"] == [["x", 6]]
    assert run["exit_status"] == 0 and run["dry_run"] is True
    assert not root.exists()


def test_plan_nests_the_steps_a_task_type_gives_and_hides_secrets(tmp_path):
    backup = backup_task(
        "b", objects=[{"path": "a.txt", "pipeline": [inline("echo", "hi")]}], root=str(tmp_path)
    )
    fanout = {"id": "f", "type": "fanout", "then": "b"}
    config = write_config(tmp_path, {"tasks": [backup, fanout]})
    env = listener_env(tmp_path)
    result = run_palhm("plan", "f", config=config, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "f (fanout)",
        "  dump the database",
        "    mysqldump --password=<hidden> db",
        "  after that, b",  # a task step: the task's plan follows, whatever its text
        "    b (backup)",
        "      group default",
        "        a.txt: echo hi",
    ]
    doc = json.loads(run_palhm("plan", "--json", "f", config=config, env=env).stdout)
    assert doc["steps"] == [
        "dump the database",
        "  mysqldump --password=<hidden> db",
        "after that, b",
    ]
    assert doc["tasks"]["b"]["steps"] == ["group default", "  a.txt: echo hi"]
    assert "hunter2" not in result.stdout + json.dumps(doc)


def test_a_report_that_cannot_be_written_fails_a_successful_run(tmp_path):
    root = tmp_path / "root"
    task = backup_task(
        "b", objects=[{"path": "x", "pipeline": [inline("echo", "hi")]}], root=str(root)
    )
    config = write_config(tmp_path, {"tasks": [task]})
    missing = tmp_path / "no-such-dir" / "report.json"
    result = run_palhm(
        "-q",
        "run",
        "--report",
        missing,
        "b",
        config=config,
        env={"PALHM_LOCK_DIR": str(tmp_path / "locks")},
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"palhm: cannot write {missing}: No such file or directory"
    ]
    assert len(copies(root)) == 1  # the copy itself was made

    failing = backup_task(
        "b", objects=[{"path": "x", "pipeline": [inline("false")]}], root=str(root)
    )
    config = write_config(tmp_path / "failing", {"tasks": [failing]})
    result = run_palhm(
        "run",
        "--report",
        missing,
        "b",
        config=config,
        env={"PALHM_LOCK_DIR": str(tmp_path / "locks")},
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    # The run's own error, and the report's, which does not change the status.
    assert any(
        line.endswith(f"cannot write {missing}: No such file or directory") for line in lines
    )
    assert lines[-1].endswith("'false' exited with status 1 (accepted: ==0)")


def test_the_progress_line_forgets_a_task_once_it_ends():
    display = ProgressDisplay()
    one, two = SimpleNamespace(id="one"), SimpleNamespace(id="two")
    a, b = Progress("a.sql"), Progress("b.tar")
    a.bytes = b.bytes = 2048
    display.palhm_objects_started(task=one, progress=[a])
    display.palhm_objects_started(task=two, progress=[b])
    assert "a.sql 2.0 KiB" in display.render(1.0) and "b.tar 2.0 KiB" in display.render(1.0)
    display.palhm_task_finished(task=one)
    display.palhm_task_failed(task=two)
    a.bytes = b.bytes = 4096  # still moving, but their tasks ended
    assert display.render(2.0) == ""
