"""Rotation by copy count and total size, with the seed's decimal semantics."""

from __future__ import annotations

import pytest
from conftest import backup_task, copies, inline, run_palhm, write_config

from palhm_core.backend import CopyInfo
from palhm_core.config.place import Place
from palhm_core.config.values import parse_limit
from palhm_core.errors import ConfigError
from palhm_core.rotation import decide

HERE = Place("palhm.conf", ("tasks", 0, "backend-param", "nb-copy-limit"))


@pytest.mark.parametrize(
    "value, expected",
    [
        (3, 3),
        ("3", 3),
        (" 3 ", 3),
        (0, 0),
        (2.9, 2),
        ("2.9", 2),
        ("1e3", 1000),
        (1e3, 1000),
        ("Infinity", None),
        ("inf", None),
        ("-inf", None),
        ("-Infinity", None),
        ("+Infinity", None),
        (float("inf"), None),
        (float("-inf"), None),
        (None, None),
        ("9007199254740993", 9007199254740993),  # 2^53 + 1, exact
        (9007199254740993, 9007199254740993),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("1e400", None),  # beyond anything a backend holds: no limit
    ],
)
def test_decimal_limits(value, expected):
    assert parse_limit(value, HERE) == expected


@pytest.mark.parametrize(
    "value", [-1, "-1", "-0.5", "abc", "", "1O", True, [], {}, "nan", float("nan")]
)
def test_bad_decimal_limits_name_the_place(value):
    with pytest.raises(ConfigError) as err:
        parse_limit(value, HERE)
    assert str(err.value).startswith("palhm.conf: tasks[0].backend-param.nb-copy-limit: ")


def _copies(*sizes, incomplete=(), foreign=(), damaged=(), future=()):
    out = [CopyInfo(f"2026-01-0{i + 1}", True, s, state="complete") for i, s in enumerate(sizes)]
    out += [CopyInfo(p, False, 0, state="incomplete") for p in incomplete]
    out += [CopyInfo(p, True, 10**12, state="foreign") for p in foreign]
    out += [CopyInfo(p, True, 10**12, state="damaged") for p in damaged]
    out += [CopyInfo(p, True, 10, state="complete", future=True) for p in future]
    return out


@pytest.mark.parametrize(
    "sizes, count, size, keep, doomed",
    [
        ((10, 10, 10), 2, None, "2026-01-03", ["2026-01-01"]),
        ((10, 10, 10), 1, None, "2026-01-03", ["2026-01-01", "2026-01-02"]),
        ((10, 10, 10), 3, None, "2026-01-03", []),
        ((10, 10, 10), 0, None, "2026-01-03", ["2026-01-01", "2026-01-02"]),  # never the new one
        ((10, 10, 10), None, 25, "2026-01-03", ["2026-01-01"]),
        ((10, 10, 10), None, 20, "2026-01-03", ["2026-01-01"]),
        ((10, 10, 10), None, 19, "2026-01-03", ["2026-01-01", "2026-01-02"]),
        ((10, 10, 50), None, 5, "2026-01-03", ["2026-01-01", "2026-01-02"]),
        ((10, 10, 10), 5, 15, "2026-01-03", ["2026-01-01", "2026-01-02"]),
        ((10, 10, 10), None, None, "2026-01-03", []),
        # The copy just made sorts first (the clock went back): nothing that
        # sorts after it is deleted, even over the limit.
        ((10, 10, 10), 2, None, "2026-01-01", []),
        ((10, 10, 10), 1, None, "2026-01-02", ["2026-01-01"]),
    ],
)
def test_selection(sizes, count, size, keep, doomed):
    chosen = decide(
        _copies(
            *sizes,
            incomplete=["2025-12-31", "lost+found"],
            foreign=["2025-12-30"],
            damaged=["2025-12-29"],
            future=["2031-01-01"],
        ),
        keep=keep,
        nb_copy_limit=count,
        root_size_limit=size,
    )
    assert [c.prefix for c in chosen.deleted] == doomed


def _run(tmp_path, root, **params):
    objects = [{"path": "data", "pipeline": [inline("head", "-c", "1000", "/dev/zero")]}]
    conf = write_config(
        tmp_path, {"tasks": [backup_task(objects=objects, root=str(root), **params)]}
    )
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("limit", [2, "2", "2.7", 2.5])
def test_count_rotation_keeps_the_newest(tmp_path, limit):
    root = tmp_path / "root"
    made = []
    for _ in range(4):
        _run(tmp_path, root, **{"nb-copy-limit": limit})
        made.append(copies(root)[-1])
    assert copies(root) == made[-2:]


@pytest.mark.parametrize("limit", ["Infinity", "-inf", "inf", "99999999999999999999999999"])
def test_no_limit_keeps_everything(tmp_path, limit):
    root = tmp_path / "root"
    for _ in range(3):
        _run(tmp_path, root, **{"nb-copy-limit": limit, "root-size-limit": limit})
    assert len(copies(root)) == 3


def test_size_rotation_and_unrelated_entries_survive(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "not-a-copy").mkdir()
    (root / "not-a-copy" / "file").write_text("mine")
    (root / "2000-01-01T00:00:00+00:00").mkdir()  # looks like a copy but has no manifest
    (root / "notes.txt").write_text("mine too")
    for _ in range(4):
        _run(tmp_path, root, **{"root-size-limit": "2500"})
    assert len(copies(root)) == 2
    assert (root / "not-a-copy" / "file").read_text() == "mine"
    assert (root / "2000-01-01T00:00:00+00:00").is_dir()
    assert (root / "notes.txt").read_text() == "mine too"


def test_the_copy_just_made_survives_a_zero_limit(tmp_path):
    root = tmp_path / "root"
    for _ in range(2):
        _run(tmp_path, root, **{"nb-copy-limit": 0, "root-size-limit": 0})
    assert len(copies(root)) == 1
