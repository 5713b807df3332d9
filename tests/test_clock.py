"""Clock faults, with the clock of the palhm process set by ``faketime``
(LD_PRELOAD; the Debian package ``faketime``): a copy dated after now is
future-dated. It is named in a warning on every run, marked in ``backups
list`` (no negative age), listed in the run report and metrics, never counted,
rotated or ``latest``. So a clock that jumped ahead leaves no stale copy pinned
as the newest, and a clock that went back never deletes newer copies."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import PALHM, backup_task, copies, inline, write_config

pytestmark = pytest.mark.skipif(
    shutil.which("faketime") is None, reason="faketime (Debian package faketime) is not installed"
)

DATA = [{"path": "data", "pipeline": [inline("date", "+%s%N")]}]


def palhm_at(when: str | None, *args, config, check=True) -> subprocess.CompletedProcess:
    """Run palhm with its clock starting at ``when`` (UTC, or ``+2m`` for an
    offset from the real clock), or with the real clock."""
    argv = [PALHM, "-f", str(config), *map(str, args)]
    if when is not None and when.startswith("+"):  # an offset from the real clock
        argv = ["faketime", "-f", when, *argv]
    elif when is not None:
        argv = ["faketime", when, *argv]
    env = dict(os.environ, TZ="UTC")
    env.pop("PALHM_CONFIG", None)
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _config(tmp_path, root, limit):
    task = backup_task("db", objects=DATA, root=str(root), **{"nb-copy-limit": limit})
    return write_config(tmp_path, {"tasks": [task]})


def test_faketime_sets_the_clock_of_palhm(tmp_path):
    root = tmp_path / "root"
    conf = _config(tmp_path, root, 3)
    palhm_at("2031-01-01 00:00:00", "run", "db", config=conf)
    (made,) = copies(root)
    assert made.startswith("2031-01-01T00:00:0")


def test_a_clock_that_jumped_ahead_pins_no_stale_copy(tmp_path):
    root = tmp_path / "root"
    conf = _config(tmp_path, root, 3)
    report = tmp_path / "report.json"
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    palhm_at("2031-01-01 00:00:00", "run", "db", config=conf)
    palhm_at("2031-01-02 00:00:00", "run", "db", config=conf)
    stale = copies(root)
    real = []
    for _ in range(4):
        run = palhm_at(None, "run", "--report", report, "--metrics-dir", metrics, "db", config=conf)
        real.append(max(set(copies(root)) - set(stale)))
        for prefix in stale:
            assert f"copy {prefix} says it finished at 2031-01-0" in run.stderr
    # the real copies rotate by their own limit; the stale ones stay, named
    assert copies(root) == sorted(real[-3:] + stale)
    assert json.loads(report.read_text())["future-copies"] == stale
    prom = (metrics / "palhm_db.prom").read_text()
    assert 'palhm_future_copies{task="db"} 2' in prom
    listed = json.loads(palhm_at(None, "backups", "list", "db", "--json", config=conf).stdout)
    future = [c for c in listed["copies"] if c["future"]]
    assert [c["prefix"] for c in future] == stale
    assert all(c["age-seconds"] is None and "clock" in c["why"] for c in future)
    assert all(c["age-seconds"] >= 0 for c in listed["copies"] if not c["future"])
    table = palhm_at(None, "backups", "list", "db", config=conf).stdout
    assert not re.search(r"\s-\d", table), table  # no negative age
    assert [line.split()[1] for line in table.splitlines() if line.startswith("2031")] == [
        "future",
        "future",
    ]
    # latest is the newest real copy, not the 2031 one
    verify = palhm_at(None, "backups", "verify", "db", config=conf)
    assert verify.stdout.startswith(f"{real[-1]}: 1 objects, OK")
    cat = palhm_at(None, "backups", "cat", "db", "latest", "data", config=conf)
    assert cat.stdout == (root / real[-1] / "data").read_text()


def test_a_clock_that_went_back_deletes_no_newer_copy(tmp_path):
    root = tmp_path / "root"
    conf = _config(tmp_path, root, 3)
    for _ in range(3):
        palhm_at(None, "run", "db", config=conf)
    newer = copies(root)
    conf = _config(tmp_path, root, 1)
    back = palhm_at("2020-06-01 00:00:00", "run", "db", config=conf)
    made = copies(root)[0]
    assert made.startswith("2020-06-01")
    assert copies(root) == [made, *newer], "the clock went back and newer copies went"
    for prefix in newer:
        assert f"copy {prefix} says it finished at" in back.stderr
    # from 2020's point of view the newest copy it may name is its own
    cat = palhm_at("2020-06-01 00:01:00", "backups", "cat", "db", "latest", "data", config=conf)
    assert cat.stdout == (root / made / "data").read_text()
    # the clock is right again: the 2020 copy is the oldest and goes first
    palhm_at(None, "run", "db", config=conf)
    (last,) = copies(root)
    assert last not in (made, *newer)


def test_a_copy_a_little_ahead_is_not_future_dated(tmp_path):
    """Within the tolerance (5 minutes) clocks may differ: no warning."""
    root = tmp_path / "root"
    conf = _config(tmp_path, root, 1)
    palhm_at("+2m", "run", "db", config=conf)
    run = palhm_at(None, "run", "db", config=conf)
    assert "after now" not in run.stderr
    listed = json.loads(palhm_at(None, "backups", "list", "db", "--json", config=conf).stdout)
    assert [c["future"] for c in listed["copies"]] == [False] * len(listed["copies"])
