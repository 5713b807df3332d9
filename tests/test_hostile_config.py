"""A hostile or broken config fails at once with one line and exit 2: YAML
alias bombs, includes of devices, FIFOs, directories and huge files, include
chains too deep, integers past what the schema allows, and file modes with
setuid, setgid or sticky bits."""

from __future__ import annotations

import json
import os

import pytest
from conftest import backup_task, inline, run_palhm, write_config

from palhm_core.config.files import MAX_FILE_BYTES, MAX_INCLUDE_DEPTH, MAX_YAML_VALUES

#: A guard against hanging, not a measure of speed: each case must fail long
#: before this (the unbounded cases ran past 60 s or hung for ever).
GUARD = 30


def check(config, **kw):
    """``palhm -f CONFIG config check``: (exit status, the one line)."""
    result = run_palhm("config", "check", config=config, timeout=GUARD, **kw)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return result.returncode, lines[0].removeprefix("palhm: ")


def alias_bomb(levels=9) -> str:
    """The classic "billion laughs": each level nine aliases of the one before."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_fails_fast(tmp_path):
    text = alias_bomb()
    assert len(text) < 449  # smaller than the one that ran past 60 s and 1.3 GB
    config = write_config(tmp_path, text, name="bomb.yaml")
    status, line = check(config)  # within GUARD, or the check fails
    assert status == 2
    assert line.startswith(f"{config}: line ")
    assert f"aliases expand to more than {MAX_YAML_VALUES:,} values" in line


def test_an_included_alias_bomb_fails_the_same(tmp_path):
    write_config(tmp_path, alias_bomb(), name="bomb.yaml")
    config = write_config(tmp_path, {"include": ["bomb.yaml"]})
    status, line = check(config)
    assert status == 2 and "bomb.yaml: line" in line and "aliases expand" in line


def test_a_recursive_alias_is_refused(tmp_path):
    config = write_config(tmp_path, "a: &a [1, *a]\n", name="loop.yaml")
    status, line = check(config)
    assert status == 2 and "refers to the value that holds it" in line


def test_ordinary_aliases_still_work(tmp_path):
    text = (
        "execs:\n  - &e {id: e, argv: [echo, hi]}\n"
        "tasks:\n  - {id: r, type: routine, routine: [{type: exec, exec-id: e}]}\n"
        "  - {id: s, type: routine, routine: &steps [{type: exec, exec-id: e}]}\n"
        "  - {id: t, type: routine, routine: *steps}\n"
    )
    config = write_config(tmp_path, text, name="ok.yaml")
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "directory", "/dev/stdin"])
def test_only_regular_files_are_included(tmp_path, kind):
    if kind == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
        what = "a FIFO"
    elif kind == "directory":
        target = tmp_path / "dir"
        target.mkdir()
        what = "a directory"
    elif kind == "/dev/zero":
        target = kind
        what = "a character device"
    else:
        target = kind
        what = "a FIFO"  # stdin a pipe, with nothing ever written
    config = write_config(tmp_path, {"include": [str(target)]})
    status, line = check(config, input="")
    assert status == 2
    assert line == f"{config}: include[0]: cannot read {target}: not a regular file ({what})"


def test_the_top_config_file_must_be_regular_too(tmp_path):
    status, line = check("/dev/zero")
    assert status == 2
    assert line == "/dev/zero: cannot read config file: not a regular file (a character device)"


def test_a_config_file_past_the_size_cap_is_refused(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.write(b"{" + b" " * MAX_FILE_BYTES + b"}")
    config = write_config(tmp_path, {"include": ["big.json"]})
    status, line = check(config)
    assert status == 2 and line == f"{big}: larger than 16 MiB: not a config file"


@pytest.mark.parametrize("depth", [MAX_INCLUDE_DEPTH + 1, 3000])
def test_include_depth_is_limited(tmp_path, depth):
    for i in range(depth):
        doc = {"include": [f"n{i + 1}.json"]} if i < depth - 1 else {}
        (tmp_path / f"n{i}.json").write_text(json.dumps(doc))
    status, line = check(tmp_path / "n0.json")
    assert status == 2
    last = MAX_INCLUDE_DEPTH - 1
    assert line == (
        f"{tmp_path}/n{last}.json: include: includes nest deeper than "
        f"{MAX_INCLUDE_DEPTH} files (from {tmp_path}/n0.json)"
    )


def test_include_depth_up_to_the_limit_works(tmp_path):
    for i in range(MAX_INCLUDE_DEPTH):
        doc = {"include": [f"n{i + 1}.json"]} if i < MAX_INCLUDE_DEPTH - 1 else {}
        (tmp_path / f"n{i}.json").write_text(json.dumps(doc))
    result = run_palhm("config", "check", config=tmp_path / "n0.json")
    assert result.returncode == 0, result.stderr


def objects_with_alloc(size):
    return [{"path": "x", "alloc-size": size, "pipeline": [inline("echo", "x")]}]


def test_alloc_size_past_2_63_is_a_config_error(tmp_path):
    task = backup_task("b", objects=objects_with_alloc(2**63), root=str(tmp_path / "root"))
    config = write_config(tmp_path, {"tasks": [task]})
    status, line = check(config)
    assert status == 2
    assert line == (
        f"{config}: tasks[0].objects[0].alloc-size: must be at most {2**63 - 1}, got {2**63}"
    )


def test_the_largest_alloc_size_fails_as_a_run_not_a_crash(tmp_path):
    task = backup_task("b", objects=objects_with_alloc(2**63 - 1), root=str(tmp_path / "root"))
    config = write_config(tmp_path, {"tasks": [task]})
    assert run_palhm("config", "check", config=config).returncode == 0
    result = run_palhm("run", "b", config=config, env={"PALHM_LOCK_DIR": str(tmp_path / "locks")})
    assert "Traceback" not in result.stderr and "OverflowError" not in result.stderr
    assert result.returncode in (0, 1), result.stderr


@pytest.mark.parametrize(
    "key, value",
    [("vl", 2**64), ("nb-workers", 10**30), ("vl", -(2**64))],
)
def test_core_integers_are_bounded(tmp_path, key, value):
    config = write_config(tmp_path, {key: value})
    status, line = check(config)
    assert status == 2 and line.startswith(f"{config}: {key}: must be at")


def test_exec_verbosity_is_bounded(tmp_path):
    step = inline("true", **{"vl-stderr": 2**70})
    config = write_config(tmp_path, {"tasks": [{"id": "r", "type": "routine", "routine": [step]}]})
    status, line = check(config)
    assert status == 2 and "vl-stderr: must be at most 100" in line


def test_every_integer_in_the_schema_is_bounded():
    """Every ``integer`` key of the core's and the installed plugins' schemas
    states both bounds."""
    from palhm_core.config.schema import build_schema
    from palhm_core.plugins import Plugins

    unbounded = []

    def walk(node, where):
        if isinstance(node, dict):
            types = node.get("type")
            types = types if isinstance(types, list) else [types]
            # With "number": a decimal limit; with "string": a name or a number
            # (sigmask's signals), each parsed and checked by the core.
            bounded = "minimum" in node and "maximum" in node
            parsed = "number" in types or "string" in types
            if "integer" in types and not parsed and not bounded:
                unbounded.append(where)
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(build_schema(Plugins()), "#")
    assert unbounded == []


@pytest.mark.parametrize("key, mode", [("fmode", "6777"), ("fmode", "4640"), ("dmode", "1777")])
def test_modes_with_setuid_setgid_or_sticky_bits_are_refused(tmp_path, key, mode):
    task = backup_task(
        "b",
        objects=[{"path": "x", "pipeline": [inline("echo")]}],
        root=str(tmp_path / "r"),
        **{key: mode},
    )
    config = write_config(tmp_path, {"tasks": [task]})
    status, line = check(config)
    assert status == 2
    assert line.startswith(f'{config}: tasks[0].backend-param.{key}: "{mode}" sets the setuid')


def test_a_world_writable_mode_is_a_warning(tmp_path):
    task = backup_task(
        "b",
        objects=[{"path": "x", "pipeline": [inline("echo")]}],
        root=str(tmp_path / "r"),
        fmode="666",
    )
    config = write_config(tmp_path, {"tasks": [task]})
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 0
    assert "palhm: warning:" in result.stderr and "fmode: mode 666 lets every user write" in (
        result.stderr
    )
