"""Copy names: the iso8601 generator and prefixes never reused."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timezone

import pytest
from conftest import copies, inline, run_palhm, write_config

from palhm_core.config.place import Place
from palhm_core.prefix import Iso8601

WHEN = datetime(2026, 11, 26, 3, 18, 23, 123456, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, "2026-11-26T03:18:23+00:00"),
        ({"timespec": "date"}, "2026-11-26"),
        ({"timespec": "hours"}, "2026-11-26T03+00:00"),
        ({"timespec": "minutes"}, "2026-11-26T03:18+00:00"),
        ({"timespec": "milliseconds"}, "2026-11-26T03:18:23.123+00:00"),
        ({"timespec": "microseconds"}, "2026-11-26T03:18:23.123456+00:00"),
        ({"basic": True}, "20261126T031823+0000"),
        ({"basic": True, "timespec": "date"}, "20261126"),
    ],
)
def test_iso8601_formats(params, expected):
    assert Iso8601(params, Place("x"))(WHEN) == expected


def test_default_is_the_format_of_date_utc_iso8601_seconds():
    date = subprocess.run(
        ["date", "--utc", "--iso-8601=seconds", "-d", "2026-11-26 03:18:23Z"],
        capture_output=True,
        text=True,
    )
    if date.returncode != 0:
        pytest.skip("this date does not take --iso-8601")
    assert Iso8601({}, Place("x"))(WHEN) == date.stdout.strip()


def test_two_runs_in_one_second_make_two_copies(tmp_path):
    root = tmp_path / "root"
    task = {
        "id": "backup",
        "type": "backup",
        "backend": "localfs",
        "backend-param": {"root": str(root)},  # default: one-second resolution
        "objects": [{"path": "x", "pipeline": [inline("echo", "x")]}],
    }
    conf = write_config(tmp_path, {"tasks": [task]})
    for _ in range(2):
        result = run_palhm("run", "backup", config=conf)
        assert result.returncode == 0, result.stderr
    made = copies(root)
    assert len(made) == 2 and made[0] < made[1]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", p) for p in made)


def test_a_prefix_that_never_changes_is_refused_not_reused(tmp_path):
    root = tmp_path / "root"
    task = {
        "id": "backup",
        "type": "backup",
        "backend": "localfs",
        "backend-param": {"root": str(root), "prefix": {"type": "iso8601", "timespec": "date"}},
        "objects": [{"path": "x", "pipeline": [inline("echo", "x")]}],
    }
    conf = write_config(tmp_path, {"tasks": [task]})
    assert run_palhm("run", "backup", config=conf).returncode == 0
    (first,) = copies(root)
    before = (root / first / "palhm-manifest.json").read_bytes()
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 1
    assert f"copy '{first}' already exists" in result.stderr
    assert (root / first / "palhm-manifest.json").read_bytes() == before
    assert [p.name for p in root.iterdir()] == [first]
