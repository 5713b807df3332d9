"""Config mistakes: every bad config of the corpus exits 2 with exactly the
recorded lines, each naming the file, the place and the problem, and never a
traceback; every good config passes ``palhm config check``."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import run_palhm

HERE = Path(__file__).resolve().parent
BAD = HERE / "configs" / "bad"
GOOD = HERE / "configs" / "good"
REPO = HERE.parent

#: The same plugins wherever the tests run (palhm-s3 or the example plugin
#: may be installed or not): the expected lines list what is installed.
PINNED = {"PALHM_DISABLE_PLUGIN_AUTOLOAD": "1", "PALHM_PLUGINS": "localfs,null"}

CASES = yaml.safe_load((BAD / "expected.yaml").read_text())

#: ``FILE: PLACE: PROBLEM``; PLACE is a JSON path (``tasks[0].backend``) or,
#: for errors in the text itself, ``line N, column M``.
LINE = re.compile(
    r"^(?P<file>/\S[^:]*): (?:(?P<place>[A-Za-z][\w.\[\]-]*|line \d+(?:, column \d+)?): )?"
    r"(?P<problem>\S.*)$"
)


def expected_lines(case: str) -> list[str]:
    return [line.replace("{dir}", str(BAD)) for line in CASES[case]["errors"]]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_exact_lines(case):
    config = BAD / CASES[case]["config"]
    result = run_palhm("config", "check", config=config, env=PINNED)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines, "no error line"
    assert all(line.startswith("palhm: ") for line in lines), lines
    assert [line[len("palhm: ") :] for line in lines] == expected_lines(case)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_lines_name_file_place_problem(case):
    """Checked on the recorded lines, so that a careless re-recording of
    expected.yaml cannot make vague messages pass."""
    for line in expected_lines(case):
        m = LINE.match(line)
        assert m, f"not FILE: PLACE: PROBLEM: {line}"
        file = Path(m["file"])
        assert file.is_relative_to(BAD), line
        if case != "missing-config-file":
            assert file.exists(), f"the error names a file that does not exist: {line}"
        # a place, or a problem about the file as a whole
        assert m["place"] or re.match(
            r"(cannot read|the file is empty|the top level|syntax error)", m["problem"]
        ), line
        assert len(m["problem"]) >= len("required"), line


def test_corpus_is_big_and_every_file_is_used():
    assert len(CASES) >= 30
    used = set()
    for spec in CASES.values():
        top = (BAD / spec["config"]).relative_to(BAD)
        used.add(top.parts[0])
    present = {p.name for p in BAD.iterdir()} - {"expected.yaml"}
    assert present - used == set(), "files in the corpus that no case uses"
    suffixes = {Path(spec["config"]).suffix for spec in CASES.values()}
    assert {".json", ".jsonc", ".conf", ".yaml", ".yml"} <= suffixes
    assert sum("/" in spec["config"] for spec in CASES.values()) >= 5, "include trees"


#: The problems the corpus must cover: case name -> a distinctive part of its
#: line. Keeps the corpus honest when it is edited.
COVERAGE = {
    "unknown-backend-s3": "unknown backend 'aws-s3' (pip install palhm-s3); "
    "installed: localfs, null",
    "unknown-task-type": "tasks[0].type: unknown task type 'cron'",
    "unknown-exec-routine": "tasks[0].routine[1].exec-id: unknown exec 'dnf-update'",
    "unknown-exec-pipeline": "pipeline[0].exec-id: unknown exec 'tar'",
    "unknown-task-pointer": "task-id: unknown task 'reboot'",
    "unknown-object-group": "objects[1].group: unknown group 'sql'",
    "duplicate-exec-id": "duplicate exec id 'tar', first defined at "
    "{dir}/duplicate-exec-id/palhm.conf",
    "duplicate-task-id": "more.yaml: tasks[1].id: duplicate task id 'default', first defined at "
    "{dir}/duplicate-task-id/palhm.yaml",
    "circular-include": "include[0]: circular include",
    "self-include": "include[0]: circular include",
    "repeated-include": "a.json is included twice",
    "task-pointer-cycle": "task pointer cycle: a -> b -> c -> a",
    "group-cycle": "group dependency cycle: http -> ldap -> sql -> http",
    "bad-ec": "execs[3].ec: bad exit code range '!=0'",
    "bad-signal": "sig[1]: unknown signal 'TERMINATE'",
    "wrong-types": 'vl: expected integer, got "3"',
    "missing-required": "tasks[3].backend-param.root: required",
    "unknown-keys": "tasks[0].backend-params: unknown key",
    "jsonc-missing-comma": "jsonc-missing-comma.jsonc: line 5, column 2: syntax error",
    "yaml-syntax": "yaml-syntax.yaml: line 4, column 4: syntax error",
    "bad-octal-mode": "dmode: expected an octal mode",
    "bad-nb-copy-limit": "nb-copy-limit: must not be negative",
    "path-dotdot": "'..' in path",
    "path-absolute": "absolute path",
    "path-empty-component": "empty path component",
    "path-manifest": "'palhm-manifest.json' is reserved",
    "path-sums": "'SHA256SUMS' is reserved",
    "modules-aws": "modules[0]: plugin 's3' (for module 'aws') is not installed "
    "(pip install palhm-s3)",
    "not-utf8": "not-utf8.conf: line 3, column 15: not UTF-8",
    "top-level-array": "the top level must be an object",
    "missing-config-file": "does-not-exist.conf: cannot read config file: No such file",
}


@pytest.mark.parametrize("case", sorted(COVERAGE))
def test_corpus_covers(case):
    part = COVERAGE[case].replace("{dir}", str(BAD))
    assert any(part in line for line in expected_lines(case)), expected_lines(case)


@pytest.mark.parametrize(
    "case", ["unknown-backend-s3", "duplicate-exec-id", "bad-ec", "yaml-syntax", "path-dotdot"]
)
def test_run_refuses_the_same_way_before_running_anything(case, tmp_path):
    result = run_palhm(
        "run", config=BAD / CASES[case]["config"], env={**PINNED, "PALHM_LOCK_DIR": str(tmp_path)}
    )
    assert result.returncode == 2
    assert [line[len("palhm: ") :] for line in result.stderr.splitlines()] == expected_lines(case)


def test_verbose_adds_the_traceback():
    result = run_palhm("-v", "config", "check", config=BAD / "bad-ec.jsonc", env=PINNED)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert expected_lines("bad-ec")[0] in result.stderr


def test_unknown_backend_lists_what_is_installed_with_autoload(tmp_path):
    """With every installed plugin loaded, the list names them all."""
    listed = json.loads(run_palhm("plugins", "--json").stdout)
    backends = sorted(n for p in listed["plugins"] for n in p["provides"].get("backend", []))
    config = BAD / "unknown-backend.json"
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"palhm: {config}: tasks[0].backend: unknown backend 'ftp'; "
        f"installed: {', '.join(backends)}"
    )


# -- the good corpus ------------------------------------------------------------


def _s3_loaded() -> bool:
    listed = json.loads(run_palhm("plugins", "--json").stdout)
    return any("aws-s3" in p["provides"].get("backend", []) for p in listed["plugins"])


GOOD_CONFIGS = sorted(
    [p.relative_to(GOOD).as_posix() for p in GOOD.iterdir() if p.is_file()]
    + ["include-tree/palhm.conf"]
    + [p.relative_to(GOOD).as_posix() for p in (GOOD / "s3").iterdir()]
)


@pytest.mark.parametrize("name", GOOD_CONFIGS)
def test_good_config_passes_check(name):
    if name.startswith("s3/") and not _s3_loaded():
        pytest.skip("palhm-s3 is not installed")
    config = GOOD / name
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"{config}: ok (")
    shown = run_palhm("config", config=config)
    assert shown.returncode == 0, shown.stderr
    merged = json.loads(shown.stdout)
    assert isinstance(merged["tasks"], list) and isinstance(merged["execs"], list)


def test_good_config_quiet_check_prints_nothing():
    result = run_palhm("-q", "config", "check", config=GOOD / "include-tree" / "palhm.conf")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_good_jsonc_values_are_read_exactly():
    shown = run_palhm("config", "show", "--show-secrets", config=GOOD / "jsonc-syntax.jsonc")
    shown = json.loads(shown.stdout)
    assert shown["execs"][0]["argv"] == [
        "/bin/echo",
        'say "hi"',
        "http://example.invalid/a//b",
        "/* not a comment */",
    ]
    assert shown["execs"][0]["env"] == {"QUOTE": '"', "BACKSLASH": "\\", "UNICODE": "café ☕"}


@pytest.mark.parametrize(
    "path", ["conf/palhm.conf", "conf/quickstart.jsonc", "palhm_core/data/palhm.conf"]
)
def test_shipped_configs_pass_check(path):
    if not (REPO / path).exists():
        pytest.skip(f"{path} is not in this checkout")
    result = run_palhm("config", "check", config=REPO / path, cwd=REPO / os.path.dirname(path))
    assert result.returncode == 0, result.stderr
