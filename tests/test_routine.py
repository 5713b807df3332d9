"""Routine tasks through ``palhm run``: steps in order, the first failure
stops the task, exit-code ranges, what is shown at which verbosity, the
environment, task pointers and the ``sigmask`` builtin."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import run_palhm, write_config

PY = sys.executable


def py(code: str, **extra) -> dict:
    """An exec-inline step running ``code`` with this Python."""
    return {"type": "exec-inline", "argv": [PY, "-c", code], **extra}


def append(log: Path, text: str, **extra) -> dict:
    return py(f"open({str(log)!r}, 'a').write({text!r} + '\\n')", **extra)


def exit_with(code: int, **extra) -> dict:
    return py(f"import sys; sys.exit({code})", **extra)


def routine(tmp_path: Path, steps, task_id="default", execs=(), more_tasks=(), **top) -> Path:
    doc = {
        **top,
        "execs": list(execs),
        "tasks": [{"id": task_id, "type": "routine", "routine": list(steps)}, *more_tasks],
    }
    return write_config(tmp_path, doc)


def run(tmp_path: Path, config: Path, *options, task=None, env=None):
    """``palhm [OPTIONS] run [TASK]``."""
    args = [*options, "run", *([task] if task else [])]
    return run_palhm(*args, config=config, env={"PALHM_LOCK_DIR": str(tmp_path), **(env or {})})


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_steps_run_in_order(tmp_path):
    log = tmp_path / "log"
    config = routine(tmp_path, [append(log, str(i)) for i in range(6)])
    result = run(tmp_path, config)
    assert (result.returncode, result.stderr) == (0, "")
    assert lines(log) == ["0", "1", "2", "3", "4", "5"]


def test_the_first_failing_step_stops_the_task(tmp_path):
    log = tmp_path / "log"
    config = routine(
        tmp_path,
        [append(log, "before"), exit_with(3), append(log, "after")],
        task_id="update",
    )
    result = run(tmp_path, config, task="update")
    assert result.returncode == 1
    assert lines(log) == ["before"]
    assert result.stderr == (
        f"palhm: task 'update': {Path(PY).name!r} exited with status 3 (accepted: ==0)\n"
    )


def test_a_program_that_cannot_start_fails_the_task(tmp_path):
    log = tmp_path / "log"
    config = routine(
        tmp_path,
        [{"type": "exec-inline", "argv": [str(tmp_path / "no-such-program")]}, append(log, "x")],
    )
    result = run(tmp_path, config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "no-such-program" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not log.exists()


@pytest.mark.parametrize(
    "ec, code, ok",
    [
        (None, 0, True),
        (None, 1, False),
        ("==0", 0, True),
        ("<2", 1, True),
        ("<2", 2, False),
        ("<=2", 2, True),
        ("<=2", 3, False),
        (">1", 1, False),
        (">1", 7, True),
        (">=0", 255, True),
        ("0-1", 1, True),
        ("0-1", 2, False),
        (" 2 - 4 ", 3, True),
        ("1", 1, True),
        ("1", 0, False),
    ],
)
def test_exit_code_ranges(tmp_path, ec, code, ok):
    log = tmp_path / "log"
    step = exit_with(code, **({"ec": ec} if ec is not None else {}))
    config = routine(tmp_path, [step, append(log, "next")])
    result = run(tmp_path, config)
    assert result.returncode == (0 if ok else 1), result.stderr
    assert lines(log) == (["next"] if ok else [])
    if not ok:
        accepted = (ec or "==0").strip()
        assert result.stderr.endswith(f"exited with status {code} (accepted: {accepted})\n")


def test_killed_by_a_signal_is_never_an_accepted_exit_code(tmp_path):
    config = routine(
        tmp_path, [py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", ec=">=0")]
    )
    result = run(tmp_path, config)
    assert result.returncode == 1
    assert result.stderr.endswith("killed by SIGKILL (accepted: >=0)\n")


SPEAK = "import sys; print('OUT'); print('ERR', file=sys.stderr)"
#: From -v on, PALHM prefixes each stderr line it relays with the command's name.
NAMED_ERR = f"{Path(PY).name}: ERR"


@pytest.mark.parametrize(
    "args, vl, step, out, err",
    [
        ([], None, {}, "OUT", "ERR"),  # defaults: vl 3, vl-stdout 3, vl-stderr 1
        (["-q"], None, {}, "", ""),  # -q: nothing when all is well
        ([], 1, {}, "", "ERR"),  # vl 1: stderr only
        ([], 0, {}, "", ""),
        ([], None, {"vl-stdout": 4}, "", "ERR"),
        (["-v"], None, {"vl-stdout": 4}, "OUT", NAMED_ERR),
        ([], None, {"vl-stderr": 4, "vl-stdout": 0}, "OUT", ""),
        (["-v"], None, {"vl-stderr": 4}, "OUT", NAMED_ERR),
        (["-q"], None, {"vl-stderr": 0, "vl-stdout": 0}, "OUT", "ERR"),
        (["-v", "-v"], 2, {"vl-stdout": 4, "vl-stderr": 5}, "OUT", ""),
    ],
)
def test_vl_stdout_and_vl_stderr_against_the_verbosity(tmp_path, args, vl, step, out, err):
    top = {} if vl is None else {"vl": vl}
    config = routine(tmp_path, [py(SPEAK, **step)], **top)
    result = run(tmp_path, config, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (out + "\n" if out else "")
    got_err = [line for line in result.stderr.splitlines() if not line.startswith("palhm")]
    assert got_err == ([err] if err else [])


def test_vl_also_applies_to_execs_by_id_and_exec_append(tmp_path):
    config = routine(
        tmp_path,
        [
            {"type": "exec", "exec-id": "speak"},
            {"type": "exec-append", "exec-id": "speak", "argv": ["x"]},
        ],
        execs=[{"id": "speak", "argv": [PY, "-c", SPEAK], "vl-stdout": 2, "vl-stderr": 4}],
    )
    quiet = run(tmp_path, config, "-q")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    loud = run(tmp_path, config)
    assert (loud.stdout, loud.stderr) == ("OUT\nOUT\n", "")


ENV_DUMP = (
    "import json, os; print(json.dumps({k: os.environ.get(k) "
    "for k in ('INHERITED', 'BASE', 'ADDED', 'PATH')}))"
)


def test_env_is_added_to_the_inherited_environment(tmp_path):
    import json

    config = routine(
        tmp_path,
        [
            py(ENV_DUMP),
            {"type": "exec", "exec-id": "dump"},
            {"type": "exec-append", "exec-id": "dump", "env": {"ADDED": "more", "BASE": "over"}},
            py(ENV_DUMP, env={"ADDED": "inline", "INHERITED": "replaced"}),
        ],
        execs=[{"id": "dump", "argv": [PY, "-c", ENV_DUMP], "env": {"BASE": "base"}}],
    )
    result = run(tmp_path, config, env={"INHERITED": "from-cron"})
    assert result.returncode == 0, result.stderr
    dumps = [json.loads(line) for line in result.stdout.splitlines()]
    path = os.environ["PATH"]
    assert dumps == [
        {"INHERITED": "from-cron", "BASE": None, "ADDED": None, "PATH": path},
        {"INHERITED": "from-cron", "BASE": "base", "ADDED": None, "PATH": path},
        {"INHERITED": "from-cron", "BASE": "over", "ADDED": "more", "PATH": path},
        {"INHERITED": "replaced", "BASE": None, "ADDED": "inline", "PATH": path},
    ]


def test_exec_append_appends_arguments_and_no_shell_is_involved(tmp_path):
    config = routine(
        tmp_path,
        [{"type": "exec-append", "exec-id": "args", "argv": ["$HOME", "a b", "*", ";", "|"]}],
        execs=[{"id": "args", "argv": [PY, "-c", "import sys; print(sys.argv[1:])", "first"]}],
    )
    result = run(tmp_path, config)
    assert result.stdout == "['first', '$HOME', 'a b', '*', ';', '|']\n"


def test_task_pointers_run_other_tasks_defined_in_any_order(tmp_path):
    log = tmp_path / "log"
    config = routine(
        tmp_path,
        [
            append(log, "start"),
            {"type": "task", "task-id": "update"},
            {"type": "task", "task-id": "clean"},
            append(log, "end"),
        ],
        more_tasks=[
            {
                "id": "update",
                "type": "routine",
                "routine": [append(log, "update"), {"type": "task", "task-id": "clean"}],
            },
            {"id": "clean", "type": "routine", "routine": [append(log, "clean")]},
        ],
    )
    result = run(tmp_path, config)
    assert result.returncode == 0, result.stderr
    assert lines(log) == ["start", "update", "clean", "clean", "end"]
    log.unlink()
    assert run(tmp_path, config, task="update").returncode == 0
    assert lines(log) == ["update", "clean"]


def test_a_failing_pointed_task_stops_the_routine_that_points_to_it(tmp_path):
    log = tmp_path / "log"
    config = routine(
        tmp_path,
        [{"type": "task", "task-id": "inner"}, append(log, "outer-after")],
        more_tasks=[
            {
                "id": "inner",
                "type": "routine",
                "routine": [exit_with(4), append(log, "inner-after")],
            }
        ],
    )
    result = run(tmp_path, config)
    assert result.returncode == 1
    assert not log.exists()
    assert result.stderr == (
        f"palhm: task 'inner': {Path(PY).name!r} exited with status 4 (accepted: ==0)\n"
    )


def test_run_without_a_task_runs_default_and_an_unknown_task_is_a_usage_error(tmp_path):
    log = tmp_path / "log"
    config = routine(tmp_path, [append(log, "default ran")])
    assert run(tmp_path, config).returncode == 0
    assert lines(log) == ["default ran"]
    missing = run(tmp_path, config, task="nosuch")
    assert missing.returncode == 2
    assert missing.stderr == f"palhm: {config}: no task 'nosuch' in the config; tasks: default\n"


# -- sigmask ---------------------------------------------------------------------------

KILL_PARENT = "import os, signal; os.kill(os.getppid(), signal.SIGTERM)"
SHOW_BLOCKED = (
    "import signal; print(sorted(s.name for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))"
)


def sigmask(action: str, *sigs) -> dict:
    return {
        "type": "builtin",
        "builtin-id": "sigmask",
        "param": [{"action": action, "sig": list(sigs)}],
    }


def test_without_sigmask_a_sigterm_stops_the_routine(tmp_path):
    """The control: PALHM's parent (here a test, in life systemd during a
    reboot) sends SIGTERM, and PALHM stops before the next step."""
    marker = tmp_path / "after"
    config = routine(tmp_path, [py(KILL_PARENT), append(marker, "ran")])
    result = run(tmp_path, config)
    assert result.returncode == 128 + 15
    assert not marker.exists()
    assert result.stderr == "palhm: stopped by SIGTERM\n"


@pytest.mark.parametrize("spelling", ["TERM", "SIGTERM", "sigterm", 15, "15"])
def test_sigmask_block_keeps_a_sigterm_from_stopping_the_routine(tmp_path, spelling):
    marker = tmp_path / "after"
    config = routine(tmp_path, [sigmask("block", spelling), py(KILL_PARENT), append(marker, "ran")])
    result = run(tmp_path, config)
    assert (result.returncode, result.stderr) == (0, "")
    assert lines(marker) == ["ran"]


def test_sigmask_unblock_delivers_the_pending_signal(tmp_path):
    log = tmp_path / "log"
    config = routine(
        tmp_path,
        [
            sigmask("block", "TERM", "INT"),
            py(KILL_PARENT),
            append(log, "blocked"),
            sigmask("unblock", "SIGTERM"),
            append(log, "unblocked"),
        ],
    )
    result = run(tmp_path, config)
    assert result.returncode == 128 + 15
    assert lines(log) == ["blocked"]


def test_commands_started_after_sigmask_inherit_the_mask(tmp_path):
    config = routine(
        tmp_path,
        [
            py(SHOW_BLOCKED),
            sigmask("block", "TERM", "2", "SIGHUP"),
            py(SHOW_BLOCKED),
            sigmask("unblock", "HUP"),
            py(SHOW_BLOCKED),
        ],
    )
    result = run(tmp_path, config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[]",
        "['SIGHUP', 'SIGINT', 'SIGTERM']",
        "['SIGINT', 'SIGTERM']",
    ]


def test_dry_run_runs_no_routine_command(tmp_path):
    marker = tmp_path / "rebooted"
    config = routine(
        tmp_path,
        [
            py(f"open({str(marker)!r}, 'w')"),
            {
                "type": "builtin",
                "builtin-id": "sigmask",
                "param": [{"action": "block", "sig": ["TERM"]}],
            },
        ],
    )
    result = run_palhm("run", "--dry-run", config=config, env={"PALHM_LOCK_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert "dry run, not running" in result.stderr


def test_steps_may_override_the_verbosity_of_a_definition_as_the_original_allowed(tmp_path):
    config = routine(
        tmp_path,
        [
            {
                "type": "builtin",
                "builtin-id": "sigmask",
                "param": [{"action": "Block", "sig": ["USR1"]}],
            },
            {"type": "exec", "exec-id": "speak", "vl-stdout": 9, "vl-stderr": 9},
            {"type": "exec-append", "exec-id": "speak", "argv": ["x"], "vl-stdout": 0},
        ],
        execs=[{"id": "speak", "argv": [PY, "-c", SPEAK]}],
    )
    result = run(tmp_path, config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "OUT\n"
    assert [line for line in result.stderr.splitlines() if not line.startswith("palhm")] == ["ERR"]
