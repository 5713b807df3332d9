"""Retention policies: the calendar policy decides as restic's ``forget
--keep-*`` does, rotation applies it before the hard caps, and a run wires
it in.

The simulations drive a clock through 400 days of hourly runs: after each
run, the rotation PALHM decides (:func:`palhm_core.rotation.decide` with the
calendar policy) must be exactly the one a reference computed here decides,
by another algorithm: group the copies by period, sort the groups, take the
newest copy of the N newest groups.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import FAST_PREFIX, copies, inline, run_palhm, write_config

from palhm_core.backend import CopyInfo
from palhm_core.config.place import Place
from palhm_core.errors import ConfigError
from palhm_core.retention import Dated
from palhm_core.retention.calendar import CalendarPolicy
from palhm_core.rotation import decide

UTC = timezone.utc
PLACE = Place("test.json", ("keep",))


def policy(**params) -> CalendarPolicy:
    return CalendarPolicy(params, PLACE)


# -- the reference ------------------------------------------------------------


@functools.cache
def period(rule: str, t: datetime, tz: ZoneInfo):
    """The period of ``rule`` that ``t`` falls in, in ``tz`` (cached: a
    simulation asks for the same copy's periods after every run)."""
    t = t.astimezone(tz)
    if rule == "hourly":
        return t.strftime("%Y-%m-%d %H")
    if rule == "daily":
        return t.date().isoformat()
    if rule == "weekly":
        year, week, _ = t.isocalendar()
        return f"{year}-W{week:02d}"
    if rule == "monthly":
        return t.strftime("%Y-%m")
    return str(t.year)


def reference(times: dict[str, datetime], params: dict) -> set[str]:
    """The PREFIXes restic's rules keep, computed per rule from the groups
    of copies by period."""
    tz = ZoneInfo(params.get("tz", "UTC"))
    newest_first = sorted(times, key=lambda p: (times[p], p), reverse=True)
    kept = set()
    last = params.get("last", 0)
    kept.update(newest_first if last == -1 else newest_first[:last])
    for rule in ("hourly", "daily", "weekly", "monthly", "yearly"):
        n = params.get(rule, 0)
        if not n:
            continue
        groups: dict[object, list[str]] = {}
        for p in newest_first:
            groups.setdefault(period(rule, times[p], tz), []).append(p)
        heads = [members[0] for members in groups.values()]  # newest of each, newest first
        kept.update(heads if n == -1 else heads[:n])
        if n == -1 or len(groups) < n:
            kept.add(newest_first[-1])  # restic keeps the oldest when periods run short
    if "within" in params:
        hours = {"h": 1, "d": 24, "w": 168}[params["within"][-1]] * int(params["within"][:-1])
        newest = times[newest_first[0]]
        kept.update(p for p in times if times[p] > newest - timedelta(hours=hours))
    return kept


# -- simulation ---------------------------------------------------------------


def complete(prefix: str, started: datetime, size: int = 100) -> CopyInfo:
    finished = started + timedelta(minutes=2)
    return CopyInfo(
        prefix,
        size=size,
        objects=1,
        complete=True,
        state="complete",
        manifest={"started": started.isoformat(), "finished": finished.isoformat()},
    )


def simulate(params: dict, days: int = 400, start=datetime(2025, 3, 1, tzinfo=UTC), **caps):
    """Hourly runs for ``days`` days (each a few minutes after the hour);
    after each run, the decision must equal the reference's. Returns the
    surviving PREFIXes and their times."""
    rng = random.Random(16)
    pol = policy(**params)
    alive: dict[str, datetime] = {}
    listed: dict[str, CopyInfo] = {}
    for hour in range(days * 24):
        started = start + timedelta(hours=hour, minutes=rng.randrange(1, 20), seconds=rng.random())
        prefix = started.strftime("%Y-%m-%dT%H:%M:%S.%f")
        alive[prefix] = started
        listed[prefix] = complete(prefix, started)
        rotation = decide(
            list(listed.values()),
            keep=prefix,
            nb_copy_limit=caps.get("nb_copy_limit"),
            root_size_limit=caps.get("root_size_limit"),
            policy=pol,
            now=started + timedelta(minutes=3),
        )
        gone = {c.prefix for c in rotation.deleted}
        if not caps:
            expected = reference(alive, params) | {prefix}
            assert set(alive) - gone == expected, f"run {hour} at {started}"
        assert prefix not in gone
        assert set(rotation.kept) == set(alive) - gone
        for p in gone:
            del alive[p], listed[p]
    return alive


@functools.cache
def _simulated(params: str) -> dict[str, datetime]:
    return simulate(json.loads(params))


def simulated(params: dict) -> dict[str, datetime]:
    """:func:`simulate` with the default clock, run once per process for
    each policy (two tests read the survivors of the same one); read-only."""
    return _simulated(json.dumps(params, sort_keys=True))


POLICIES = [
    {"daily": 7, "weekly": 4, "monthly": 12},
    {"hourly": 24, "daily": 7, "weekly": 5, "monthly": 12, "yearly": 3},
    {"last": 3, "within": "36h", "monthly": 6},
    {"daily": 10, "weekly": 8, "tz": "Europe/Berlin"},
    {"hourly": 6, "daily": 3, "monthly": -1, "tz": "America/New_York"},
    {"weekly": 100, "within": "2d"},
]


@pytest.mark.parametrize(
    "params", POLICIES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items())
)
def test_400_days_of_hourly_runs_match_the_reference(params):
    survivors = simulated(params)
    assert len(survivors) == len(reference(survivors, params))


def test_400_days_daily_weekly_monthly_survivors_in_closed_form():
    """daily 7, weekly 4, monthly 12 after 400 days of hourly runs from
    2025-03-01: the last copy of each of the last 7 days, of the last 4 ISO
    weeks and of the last 12 months, and nothing else."""
    survivors = simulated({"daily": 7, "weekly": 4, "monthly": 12})
    last_run = max(survivors.values())
    days = {(last_run - timedelta(days=i)).date() for i in range(7)}
    by_day = {}
    for t in survivors.values():
        by_day.setdefault(t.date(), []).append(t)
    # every surviving copy is the last of its day, except today's newest
    for day, times in by_day.items():
        assert len(times) == 1, day
        if day != last_run.date():
            assert times[0].hour == 23
    kept_days = set(by_day)
    assert days <= kept_days
    months = {d.strftime("%Y-%m") for d in kept_days}
    assert len(months) == 12
    # 2026-04-04 is the 400th day: the last 12 months are 2025-05 .. 2026-04
    assert min(months) == "2025-05" and max(months) == "2026-04"
    weeks = {d.isocalendar()[:2] for d in kept_days}
    assert len(kept_days) == len(days | {d for d in kept_days if d not in days})
    assert len(weeks) >= 4


def test_caps_apply_after_the_policy():
    """nb-copy-limit is a hard cap on what the policy keeps: never more copies
    than it allows, the oldest kept ones going first."""
    survivors = simulate({"daily": 30}, days=60, nb_copy_limit=10)
    assert len(survivors) == 10
    times = sorted(survivors.values())
    assert times[-1].date() - times[0].date() == timedelta(days=9)


def test_only_the_tasks_complete_copies_meet_the_policy():
    """Incomplete, foreign, damaged and future-dated copies are neither
    given to the policy nor deleted, whatever it keeps; the size cap counts
    only the copies the policy kept."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    own_copies = [
        complete(f"2026-01-0{i + 1}", start + timedelta(days=i), size=10) for i in range(5)
    ]
    others = [
        CopyInfo("2026-01-02x", complete=False, size=0, state="incomplete"),
        CopyInfo("2026-01-03x", complete=True, size=10**9, state="foreign"),
        CopyInfo("2026-01-04x", complete=True, size=10**9, state="damaged"),
        replace(complete("2031-01-01", datetime(2031, 1, 1, tzinfo=UTC)), future=True),
    ]
    seen = []

    class Spy(CalendarPolicy):
        def keep(self, copies, now):
            seen.extend(c.prefix for c in copies)
            return super().keep(copies, now)

    rotation = decide(
        own_copies + others,
        keep="2026-01-05",
        nb_copy_limit=None,
        root_size_limit=20,
        policy=Spy({"daily": 3}, PLACE),
        now=start + timedelta(days=5),
    )
    assert sorted(seen) == [c.prefix for c in own_copies]
    assert rotation.why_deleted == {
        "2026-01-01": "policy",
        "2026-01-02": "policy",
        "2026-01-03": "root-size-limit",
    }
    assert rotation.kept == {"2026-01-04": ["daily"], "2026-01-05": ["just made", "daily"]}


def test_a_copy_started_by_a_clock_set_back_later_does_not_move_within():
    """A run that started while the clock was far ahead and finished after it
    was set right records a ``started`` after ``finished``: that copy counts
    at its ``finished`` time, and is not the newest by which ``within``
    keeps the others."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    made = [complete(f"2026-01-{i + 1:02d}", start + timedelta(days=i)) for i in range(10)]
    skewed = made[5]
    made[5] = replace(skewed, manifest={**skewed.manifest, "started": "2099-01-01T00:00:00+00:00"})
    rotation = decide(
        made,
        keep="2026-01-10",
        nb_copy_limit=None,
        root_size_limit=None,
        policy=policy(within="3d"),
        now=start + timedelta(days=9, hours=1),
    )
    assert rotation.kept == {
        "2026-01-08": ["within 3d"],
        "2026-01-09": ["within 3d"],
        "2026-01-10": ["just made", "within 3d"],
    }


# -- restic's documented examples -------------------------------------------------


def dated(*texts: str) -> list[Dated]:
    return [
        Dated(f"c{i:02d}", datetime.fromisoformat(t).replace(tzinfo=UTC))
        for i, t in enumerate(texts)
    ]


def test_restic_example_twelve_sundays_keep_daily_4():
    sundays = dated(
        *[(datetime(2019, 9, 1, 11) + timedelta(weeks=i)).isoformat() for i in range(12)]
    )
    kept = policy(daily=4).keep(sundays, datetime(2019, 11, 18, tzinfo=UTC))
    assert kept == {f"c{i:02d}": ["daily"] for i in range(8, 12)}


def test_restic_keeps_the_oldest_copy_while_a_rule_has_periods_left():
    """restic's forum example: four copies of January 2024 and
    ``--keep-monthly 4`` keep the newest and, marked oldest, the oldest."""
    copies_ = dated(
        "2024-01-02T13:42:44", "2024-01-03T01:04:38", "2024-01-04T20:09:54", "2024-01-04T20:20:32"
    )
    kept = policy(monthly=4).keep(copies_, datetime(2024, 1, 5, tzinfo=UTC))
    assert kept == {"c03": ["monthly"], "c00": ["oldest monthly"]}


def test_restic_example_a_century_of_dailies():
    """One copy a day for 100 years up to Sunday 2023-12-31, daily 7, weekly
    5, monthly 12, yearly 75: each rule keeps its count of copies; beside the
    7 dailies, 4 more weeklies, 11 more monthlies and 74 more yearlies, the
    newest copy being daily, weekly, monthly and yearly at once (restic's
    documentation)."""
    end = datetime(2023, 12, 31, 5, tzinfo=UTC)
    copies_ = [Dated(f"{i:06d}", end - timedelta(days=36524 - i)) for i in range(36525)]
    kept = policy(daily=7, weekly=5, monthly=12, yearly=75).keep(copies_, end)
    for rule, n in {"daily": 7, "weekly": 5, "monthly": 12, "yearly": 75}.items():
        assert sum(rule in reasons for reasons in kept.values()) == n, rule
    first = [reasons[0] for reasons in kept.values()]
    assert {rule: first.count(rule) for rule in set(first)} == {
        "daily": 7,
        "weekly": 4,
        "monthly": 11,
        "yearly": 74,
    }
    assert kept[copies_[-1].prefix] == ["daily", "weekly", "monthly", "yearly"]


def test_within_is_relative_to_the_newest_copy_not_now():
    copies_ = dated("2026-01-01T00:00:00", "2026-01-02T12:00:00", "2026-01-03T00:00:00")
    much_later = datetime(2027, 1, 1, tzinfo=UTC)
    assert set(policy(within="36h").keep(copies_, much_later)) == {"c01", "c02"}
    assert set(policy(within="1d12h").keep(copies_, much_later)) == {"c01", "c02"}
    assert set(policy(within="1m").keep(copies_, much_later)) == {"c00", "c01", "c02"}


def test_periods_follow_the_configured_time_zone():
    """23:30 UTC on 1 March is 00:30 on 2 March in Berlin: the two copies
    fall on different days there, and on the same day in UTC."""
    copies_ = dated("2026-03-01T22:30:00", "2026-03-01T23:30:00")
    now = datetime(2026, 3, 2, tzinfo=UTC)
    assert set(policy(daily=5, tz="UTC").keep(copies_, now)) == {"c01", "c00"}  # c00 as oldest
    assert policy(daily=5, tz="UTC").keep(copies_, now)["c00"] == ["oldest daily"]
    assert policy(daily=5, tz="Europe/Berlin").keep(copies_, now)["c00"] == ["daily"]


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({}, "keeps nothing"),
        ({"daily": 0}, "keeps nothing"),
        ({"within": "2 days"}, "bad duration"),
        ({"within": ""}, "bad duration"),
        ({"within": "1" * 5000 + "h"}, "bad duration"),
        ({"within": "1234567h"}, "bad duration"),
        ({"within": "0d"}, "'0d' keeps nothing"),
        ({"daily": 7, "within": "0y0h"}, "'0y0h' keeps nothing"),
        ({"daily": 1, "tz": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_bad_policies_are_config_errors(params, problem):
    with pytest.raises(ConfigError, match=problem):
        policy(**params)


# -- wiring: a real run, a real prune --------------------------------------------


FAKETIME = shutil.which("faketime")


def _run_at(cfg: Path, when: str, tmp_path: Path, *args):
    env = {"FAKETIME_DONT_FAKE_MONOTONIC": "1", "TZ": "UTC"}
    done = subprocess.run(
        [
            FAKETIME,
            "-f",
            f"@{when}",
            os.path.join(os.path.dirname(os.sys.executable), "palhm"),
            "-f",
            str(cfg),
            *args,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    return done


@pytest.mark.skipif(FAKETIME is None, reason="faketime is not installed (Debian package faketime)")
def test_runs_apply_the_policy_and_report_why_copies_stay(tmp_path):
    root = tmp_path / "root"
    task = {
        "id": "b",
        "type": "backup",
        "backend": "localfs",
        "backend-param": {
            "root": str(root),
            "prefix": FAST_PREFIX,
            "keep": {"daily": 2, "last": 1},
        },
        "objects": [{"path": "x", "pipeline": [inline("echo", "hi")]}],
    }
    cfg = write_config(tmp_path, {"tasks": [task]})
    times = [
        "2026-01-01 10:00:00",
        "2026-01-01 12:00:00",
        "2026-01-02 09:00:00",
        "2026-01-03 09:00:00",
    ]
    for when in times:
        done = _run_at(
            cfg,
            when,
            tmp_path,
            "run",
            "b",
            "--lock-dir",
            tmp_path / "locks",
            "--report",
            tmp_path / "r.json",
            "--metrics-dir",
            tmp_path,
        )
        assert done.returncode == 0, done.stderr
    kept = copies(root)
    assert [k[:13] for k in kept] == ["2026-01-02T09", "2026-01-03T09"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert [p[:13] for p in report["rotated"]] == ["2026-01-01T12"]
    assert {p[:13]: r for p, r in report["kept-by"].items()} == {
        "2026-01-02T09": ["daily"],
        "2026-01-03T09": ["just made", "last", "daily"],
    }
    metrics = (tmp_path / "palhm_b.prom").read_text().splitlines()
    kept = sorted(line for line in metrics if line.startswith("palhm_kept_copies{"))
    assert kept == [
        'palhm_kept_copies{task="b",rule="daily"} 2',
        'palhm_kept_copies{task="b",rule="last"} 1',
    ]


# -- palhm backups prune ---------------------------------------------------------


def _task_with(root: Path, **params) -> dict:
    return {
        "id": "b",
        "type": "backup",
        "backend": "localfs",
        "backend-param": {"root": str(root), "prefix": FAST_PREFIX, **params},
        "objects": [{"path": "x", "pipeline": [inline("echo", "hi")]}],
    }


def test_prune_shows_then_applies_a_new_policy(tmp_path):
    root = tmp_path / "root"
    cfg = write_config(tmp_path, {"tasks": [_task_with(root)]})
    for _ in range(4):
        done = run_palhm("run", "b", "--lock-dir", tmp_path / "locks", config=cfg)
        assert done.returncode == 0, done.stderr
    made = copies(root)
    cfg = write_config(tmp_path, {"tasks": [_task_with(root, keep={"last": 2})]})
    dry = run_palhm(
        "backups", "prune", "b", "--dry-run", "--lock-dir", tmp_path / "locks", config=cfg
    )
    assert dry.returncode == 0, dry.stderr
    assert copies(root) == made
    lines = dry.stdout.splitlines()
    assert lines[0] == "keep 2 copies:"
    assert lines[2].startswith(made[2]) and lines[2].endswith("  last")
    assert lines[3].startswith(made[3]) and lines[3].endswith("  newest, last")
    assert "would delete 2 copies:" in lines
    assert [line.split()[0] for line in lines[-2:]] == made[:2]
    assert all(line.endswith("  policy") for line in lines[-2:])
    as_json = run_palhm(
        "backups",
        "prune",
        "b",
        "--dry-run",
        "--json",
        config=cfg,
        env={"PALHM_LOCK_DIR": str(tmp_path / "locks")},
    )
    doc = json.loads(as_json.stdout)
    assert [(c["prefix"], c["keep"], c["reasons"]) for c in doc["copies"]] == [
        (made[0], False, ["policy"]),
        (made[1], False, ["policy"]),
        (made[2], True, ["last"]),
        (made[3], True, ["newest", "last"]),
    ]
    done = run_palhm("backups", "prune", "b", "--lock-dir", tmp_path / "locks", config=cfg)
    assert done.returncode == 0, done.stderr
    assert copies(root) == made[2:]
    assert f"deleted copy {made[0]} (policy)" in done.stderr


def test_prune_applies_the_caps_after_the_policy(tmp_path):
    root = tmp_path / "root"
    cfg = write_config(tmp_path, {"tasks": [_task_with(root)]})
    for _ in range(3):
        assert run_palhm("run", "b", "--lock-dir", tmp_path / "locks", config=cfg).returncode == 0
    made = copies(root)
    cfg = write_config(
        tmp_path, {"tasks": [_task_with(root, keep={"last": 3}, **{"nb-copy-limit": 1})]}
    )
    done = run_palhm("backups", "prune", "b", "--lock-dir", tmp_path / "locks", config=cfg)
    assert done.returncode == 0, done.stderr
    assert copies(root) == made[-1:]
    assert "nb-copy-limit" in done.stdout


def test_prune_without_policy_or_caps_keeps_every_copy(tmp_path):
    root = tmp_path / "root"
    cfg = write_config(tmp_path, {"tasks": [_task_with(root)]})
    for _ in range(2):
        assert run_palhm("run", "b", "--lock-dir", tmp_path / "locks", config=cfg).returncode == 0
    made = copies(root)
    done = run_palhm(
        "backups",
        "prune",
        "b",
        "--dry-run",
        "--json",
        "--lock-dir",
        tmp_path / "locks",
        config=cfg,
    )
    assert done.returncode == 0, done.stderr
    assert [(c["prefix"], c["keep"], c["reasons"]) for c in json.loads(done.stdout)["copies"]] == [
        (made[0], True, []),
        (made[1], True, ["newest"]),
    ]
    done = run_palhm("backups", "prune", "b", "--lock-dir", tmp_path / "locks", config=cfg)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "keep 2 copies:" and lines[1].startswith("PREFIX")
    assert "delete" not in done.stdout
    assert copies(root) == made


def test_prune_exits_75_while_a_run_holds_the_task_lock(tmp_path):
    from palhm_core.lock import RunLocks

    root = tmp_path / "root"
    cfg = write_config(tmp_path, {"tasks": [_task_with(root, keep={"last": 1})]})
    assert run_palhm("run", "b", "--lock-dir", tmp_path / "locks", config=cfg).returncode == 0
    held = RunLocks(str(cfg), ["b"], str(tmp_path / "locks"))
    held.acquire()
    try:
        done = run_palhm("backups", "prune", "b", "--lock-dir", tmp_path / "locks", config=cfg)
    finally:
        held.release()
    assert done.returncode == 75, done.stderr
    assert len(copies(root)) == 1


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        ({"daily": "7"}, "backend-param.keep.daily: expected integer"),
        ({"weekly": -2}, "backend-param.keep.weekly: must be at least -1"),
        ({"hourly": 1, "within": "2x"}, "backend-param.keep.within: bad duration '2x'"),
        ({"type": "fifo"}, "backend-param.keep.type: unknown retention policy 'fifo'"),
        ({"daily": 1, "tz": "Nowhere/City"}, "backend-param.keep.tz: unknown time zone"),
        ({"montly": 3}, "backend-param.keep.montly: unknown key"),
    ],
)
def test_a_bad_keep_is_one_config_error_line(tmp_path, keep, message):
    cfg = write_config(tmp_path, {"tasks": [_task_with(tmp_path / "root", keep=keep)]})
    done = run_palhm("config", "check", config=cfg)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_the_retention_policy_example_of_the_plugin_guide_works():
    """The example of doc/plugins.md passes the core's checks of registered
    classes and keeps what it says."""
    import re

    from palhm_core.plugin_checks import check_class

    guide = (Path(__file__).resolve().parent.parent / "doc" / "plugins.md").read_text()
    section = guide[guide.index("### Retention policies") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module: dict = {}
    exec(compile(code, "doc/plugins.md", "exec"), module)
    (cls,) = module["palhm_retention_policies"]()
    assert check_class("retention policy", cls) is None
    copies_ = dated(
        "2026-01-05T00:00:00", "2026-01-20T00:00:00", "2026-02-03T00:00:00", "2026-02-04T00:00:00"
    )
    kept = cls({"newest": 1}, PLACE).keep(copies_, datetime(2026, 3, 1, tzinfo=UTC))
    assert kept == {"c00": ["first of month"], "c02": ["first of month"], "c03": ["newest"]}
