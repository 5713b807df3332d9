"""The shipped systemd units pass ``systemd-analyze verify`` without a
warning, and the crontab sample names real commands."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PALHM

CONF = Path(__file__).resolve().parent.parent / "conf"
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze not found: install the Debian/Ubuntu package systemd "
    "to check the shipped units",
)


def installed_units(tmp_path: Path, drop_in: bool) -> Path:
    """The units as an administrator installs them, ExecStart= pointing at
    the palhm under test (verify checks that the program exists)."""
    units = tmp_path / "units"
    units.mkdir()
    service = (CONF / "systemd" / "palhm@.service").read_text()
    assert "ExecStart=/usr/local/bin/palhm " in service
    (units / "palhm@.service").write_text(service.replace("/usr/local/bin/palhm", PALHM))
    shutil.copy(CONF / "systemd" / "palhm@.timer", units)
    if drop_in:
        (units / "palhm@.service.d").mkdir()
        shutil.copy(CONF / "systemd" / "palhm-system.conf", units / "palhm@.service.d")
    return units


def verify(units: Path, *names: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ANALYZE, "verify", "--man=no", *names],
        cwd=units,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_analyze
@pytest.mark.parametrize("drop_in", [False, True], ids=["hardened", "system-drop-in"])
def test_units_verify_cleanly(tmp_path, drop_in):
    units = installed_units(tmp_path, drop_in)
    result = verify(units, "palhm@.service", "palhm@.timer")
    # verify exits 0 on unknown keys and bad values ("..., ignoring"): any
    # word about our files is a failure.
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "palhm" in line]
    assert result.returncode == 0 and ours == [], result.stdout + result.stderr


@needs_analyze
def test_verify_would_catch_a_mistake(tmp_path):
    units = installed_units(tmp_path, drop_in=False)
    service = units / "palhm@.service"
    service.write_text(service.read_text().replace("Nice=15", "Nice=fifteen"))
    result = verify(units, "palhm@.service")
    assert "fifteen" in result.stdout + result.stderr


def test_units_are_what_the_docs_say():
    service = (CONF / "systemd" / "palhm@.service").read_text()
    timer = (CONF / "systemd" / "palhm@.timer").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", service + timer, re.MULTILINE))
    assert settings["ExecStart"] == "/usr/local/bin/palhm run %i"
    assert settings["ProtectSystem"] == "strict"
    assert settings["PrivateTmp"] == "yes"
    assert settings["IOSchedulingClass"] == "idle"
    assert settings["KillMode"] == "mixed"
    assert "TimeoutStartSec" in settings and "TimeoutStopSec" in settings
    assert settings["Persistent"] == "true"
    assert settings["OnCalendar"] and settings["RandomizedDelaySec"]
    assert "ReadWritePaths" in settings and "RuntimeDirectory" in settings


def seconds(span: str) -> float:
    """A systemd time span such as ``30s``, ``2min`` or ``12h``, in seconds."""
    units = {"s": 1, "min": 60, "h": 3600, "d": 86400}
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*(min|s|h|d)", span):
        total += int(number) * units[unit]
    assert total, span
    return total


def test_unit_timeouts_match_palhm_and_the_docs():
    """systemd stops a run that hangs, and leaves a stopped PALHM the time to
    end its commands and roll back before SIGKILL; both values are the ones
    the docs give."""
    from palhm_core.signals import STOP_BOUND

    service = (CONF / "systemd" / "palhm@.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", service, re.MULTILINE))
    start, stop = settings["TimeoutStartSec"], settings["TimeoutStopSec"]
    # The backstop behind task timeouts: hours, shorter than the daily timer.
    assert 3600 <= seconds(start) < 86400
    # PALHM exits within STOP_BOUND of SIGTERM, rollback included; the unit
    # waits for it, with a margin, before its SIGKILL.
    assert 2 * STOP_BOUND <= seconds(stop) <= 60
    docs = [
        (CONF / "systemd" / "README.md").read_text(),
        (CONF.parent / "README.md").read_text(),
    ]
    for text in docs:
        assert f"TimeoutStartSec={start}" in text
        assert f"TimeoutStopSec={stop}" in text
        assert f"within {STOP_BOUND:g} seconds" in text


def test_crontab_sample_lines_run_palhm():
    jobs = [
        line
        for line in (CONF / "crontab").read_text().splitlines()
        if line and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert jobs
    for job in jobs:
        fields = job.split()
        assert len(fields) > 6 and fields[5] == "root" and "palhm" in fields[6:]
