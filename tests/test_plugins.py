"""The plugin framework through the installed ``palhm``: discovery by entry
points, ``palhm plugins``, a third-party plugin (tests/plugins/palhm_example)
used through the CLI, refusal of clashing plugins, survival of broken ones,
the autoload switch, and boto3 never imported when it is not needed.

Plugins that clash or break are not installed into the test environment (they
would break every other test): each test writes one as an installed
distribution (``NAME-VERSION.dist-info`` with ``METADATA`` and
``entry_points.txt`` beside the module) into a temporary directory and puts
that directory on ``PYTHONPATH`` of the one ``palhm`` it runs, which is where
importlib.metadata finds distributions, exactly as in site-packages.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from conftest import run_palhm, write_config

PALHM_VERSION = metadata.version("palhm")


def installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def fake_dist(site: Path, dist: str, version: str, entry_points: dict, modules: dict) -> Path:
    """Install ``modules`` (name -> source) as distribution ``dist`` into
    ``site``; returns ``site`` for PYTHONPATH."""
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[palhm]\n{lines}")
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    return site


needs_example = pytest.mark.skipif(
    not installed("palhm-example"), reason="tests/plugins/palhm_example is not installed"
)


def routine_config(tmp_path: Path, argv=("/bin/true",)) -> Path:
    return write_config(
        tmp_path,
        {
            "tasks": [
                {
                    "id": "default",
                    "type": "routine",
                    "routine": [{"type": "exec-inline", "argv": list(argv)}],
                }
            ]
        },
    )


def run_env(tmp_path: Path, **extra) -> dict:
    return {"PALHM_LOCK_DIR": str(tmp_path), **extra}


# -- palhm plugins ------------------------------------------------------------------


def _listed(env=None) -> dict:
    result = run_palhm("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["plugins"]}


def test_plugins_json_lists_the_project_backends_with_distribution_and_version():
    listed = _listed()
    expected = {"null": ("palhm-null", "null"), "localfs": ("palhm-localfs", "localfs")}
    if installed("palhm-s3"):
        expected["s3"] = ("palhm-s3", "aws-s3")
    for name, (dist, backend) in expected.items():
        assert listed[name]["distribution"] == dist
        assert listed[name]["version"] == metadata.version(dist)
        assert listed[name]["provides"]["backend"] == [backend]
        assert listed[name]["builtin"] is False
    assert not any(p["builtin"] for p in listed.values())


def test_plugins_text_lists_one_row_per_plugin():
    result = run_palhm("plugins")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["PLUGIN", "DISTRIBUTION", "VERSION", "PROVIDES"]
    by_name = {row[0]: row for row in rows[1:]}
    assert by_name["null"] == [
        "null",
        "palhm-null",
        metadata.version("palhm-null"),
        "backend:",
        "null",
    ]
    assert by_name["localfs"][:3] == ["localfs", "palhm-localfs", metadata.version("palhm-localfs")]
    assert "palhm_core.sigmask" not in by_name


def test_plugins_all_shows_the_builtins_as_plugins_of_palhm():
    listed = _listed()
    everything = json.loads(run_palhm("plugins", "--json", "--all").stdout)["plugins"]
    builtins = {p["name"]: p for p in everything if p["builtin"]}
    assert {p["distribution"] for p in builtins.values()} == {"palhm"}
    provided: dict[str, list[str]] = {}
    for p in builtins.values():
        for kind, names in p["provides"].items():
            provided.setdefault(kind, []).extend(names)
    assert provided == {
        "task type": ["backup", "routine"],
        "prefix generator": ["iso8601", "default"],
        "builtin": ["sigmask"],
        "notifier": ["mail", "webhook", "stdout"],
        "retention policy": ["calendar"],
    }
    assert set(listed) <= {p["name"] for p in everything}


@pytest.mark.skipif(
    not installed("palhm-example"), reason="tests/plugins/palhm_example not installed"
)
def test_the_example_plugin_is_discovered_by_its_entry_point():
    example = _listed()["example"]
    assert example["distribution"] == "palhm-example"
    assert example["version"] == metadata.version("palhm-example")
    assert example["provides"] == {
        "backend": ["example-dir"],
        "task type": ["touch"],
        "prefix generator": ["epoch-us"],
    }


def test_autoload_switch_and_plugin_selection(tmp_path):
    off = {"PALHM_DISABLE_PLUGIN_AUTOLOAD": "1"}
    assert _listed(off) == {}
    assert set(_listed({**off, "PALHM_PLUGINS": "null"})) == {"null"}
    assert set(_listed({**off, "PALHM_PLUGINS": " null , localfs "})) == {"null", "localfs"}
    assert "null" in _listed({"PALHM_DISABLE_PLUGIN_AUTOLOAD": "0"})
    # a broken plugin on the path is not even imported when autoload is off
    site = fake_dist(
        tmp_path / "site",
        "palhm-broken",
        "1.0",
        {"broken": "palhm_broken"},
        {"palhm_broken": "raise RuntimeError('imported')\n"},
    )
    result = run_palhm("plugins", env={**off, "PYTHONPATH": str(site)})
    assert (result.returncode, result.stderr) == (0, "")
    # a config needing localfs is refused, saying why
    config = write_config(
        tmp_path,
        {
            "tasks": [
                {"id": "b", "type": "backup", "backend": "localfs", "backend-param": {"root": "x"}}
            ]
        },
    )
    refused = run_palhm("config", "check", config=config, env={**off, "PALHM_PLUGINS": "null"})
    assert refused.returncode == 2
    assert refused.stderr == (
        f"palhm: {config}: tasks[0].backend: unknown backend 'localfs' (pip install "
        "palhm-localfs); installed: null (plugin autoloading is off: "
        "PALHM_DISABLE_PLUGIN_AUTOLOAD)\n"
    )


def test_plugins_naming_nothing_installed_is_a_warning():
    result = run_palhm(
        "plugins", env={"PALHM_DISABLE_PLUGIN_AUTOLOAD": "1", "PALHM_PLUGINS": "null,nosuch"}
    )
    assert result.returncode == 0
    assert result.stderr == (
        "palhm: warning: PALHM_PLUGINS names 'nosuch', but no installed distribution provides it\n"
    )


# -- the third-party example plugin through the CLI --------------------------------------


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.skipif(
    not installed("palhm-example"), reason="tests/plugins/palhm_example not installed"
)
def test_a_config_using_the_example_backend_task_type_and_prefix_generator(tmp_path):
    copies = tmp_path / "copies"
    marker = tmp_path / "touched"
    events = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path,
        {
            "tasks": [
                {"id": "mark", "type": "touch", "path": str(marker)},
                {
                    "id": "save",
                    "type": "backup",
                    "backend": "example-dir",
                    "backend-param": {
                        "dir": str(copies),
                        "nb-copy-limit": 2,
                        "prefix": {"type": "epoch-us", "label": "ex-"},
                    },
                    "objects": [
                        {
                            "path": "sub/hello.txt",
                            "pipeline": [{"type": "exec-inline", "argv": ["/bin/echo", "hello"]}],
                        }
                    ],
                },
                {
                    "id": "default",
                    "type": "routine",
                    "routine": [
                        {"type": "task", "task-id": "mark"},
                        {"type": "task", "task-id": "save"},
                    ],
                },
            ]
        },
    )
    env = run_env(tmp_path, PALHM_EXAMPLE_EVENTS=str(events))
    for _ in range(3):
        result = run_palhm("-q", "run", config=config, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    assert marker.exists()
    made = sorted(p.name for p in copies.iterdir())
    assert len(made) == 2
    assert all(re.fullmatch(r"ex-\d{20}", name) for name in made)
    for name in made:
        assert (copies / name / "sub" / "hello.txt").read_text() == "hello\n"
        assert (copies / name / "palhm-manifest.json").exists()

    seen = _events(events)
    committed = [e["prefix"] for e in seen if e["event"] == "copy-committed"]
    assert len(committed) == 3 and committed == sorted(committed)
    assert committed[1:] == made
    rotated = [e for e in seen if e["event"] == "copy-rotated"]
    assert rotated == [
        {"event": "copy-rotated", "task": "save", "backend": "example-dir", "prefix": committed[0]}
    ]
    # one run, in order: started/finished nest, the commit inside the backup task
    last = seen[-8:]
    assert [(e["event"], e["task"]) for e in last] == [
        ("task-started", "default"),
        ("task-started", "mark"),
        ("task-finished", "mark"),
        ("task-started", "save"),
        ("copy-committed", "save"),
        ("copy-rotated", "save"),
        ("task-finished", "save"),
        ("task-finished", "default"),
    ]
    assert last[6]["prefix"] == committed[2]


@pytest.mark.skipif(
    not installed("palhm-example"), reason="tests/plugins/palhm_example not installed"
)
def test_the_example_plugin_hears_of_a_failed_task(tmp_path):
    copies = tmp_path / "copies"
    events = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path,
        {
            "tasks": [
                {
                    "id": "default",
                    "type": "backup",
                    "backend": "example-dir",
                    "backend-param": {"dir": str(copies), "prefix": {"type": "epoch-us"}},
                    "objects": [
                        {
                            "path": "ok",
                            "pipeline": [{"type": "exec-inline", "argv": ["/bin/true"]}],
                        },
                        {
                            "path": "bad",
                            "pipeline": [{"type": "exec-inline", "argv": ["/bin/false"]}],
                        },
                    ],
                }
            ]
        },
    )
    result = run_palhm(
        "-q", "run", config=config, env=run_env(tmp_path, PALHM_EXAMPLE_EVENTS=str(events))
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    seen = _events(events)
    assert [e["event"] for e in seen] == ["task-started", "task-failed"]
    assert "'bad'" in seen[1]["error"] and "false" in seen[1]["error"]
    assert list(copies.iterdir()) == []  # rolled back


@pytest.mark.skipif(
    not installed("palhm-example"), reason="tests/plugins/palhm_example not installed"
)
def test_the_example_plugin_parameters_are_in_the_schema_and_checked(tmp_path):
    config = write_config(
        tmp_path,
        {
            "tasks": [
                {"id": "t", "type": "touch"},
                {
                    "id": "b",
                    "type": "backup",
                    "backend": "example-dir",
                    "backend-param": {"dir": "x", "prefix": {"type": "epoch-us", "label": "a/b"}},
                },
            ]
        },
    )
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 2
    assert result.stderr == (
        f"palhm: {config}: tasks[0].path: required\n"
        f"palhm: {config}: tasks[1].backend-param.prefix.label: a prefix must not contain '/'\n"
    )
    (tmp_path / "palhm.jsonc").write_text(
        json.dumps(
            {
                "tasks": [
                    {
                        "id": "b",
                        "type": "backup",
                        "backend": "example-dir",
                        "backend-param": {"prefix": {"type": "epoch-us", "label": "a/b"}},
                    }
                ]
            }
        )
    )
    result = run_palhm("config", "check", config=config)
    assert result.stderr == f"palhm: {config}: tasks[0].backend-param.dir: required\n"


# -- plugins that clash or break --------------------------------------------------------

CLASH = """
from palhm_core import hookimpl
from palhm_null import NullBackend

class Impostor(NullBackend):
    name = "null"
    description = "Claims a name palhm-null has."
    schema = {"properties": {}}

@hookimpl
def palhm_backends():
    return [Impostor]
"""


def test_two_plugins_claiming_one_backend_are_refused_naming_both(tmp_path):
    site = fake_dist(
        tmp_path / "site", "palhm-clash", "0.2.0", {"clash": "palhm_clash"}, {"palhm_clash": CLASH}
    )
    env = run_env(tmp_path, PYTHONPATH=str(site))
    expected = (
        "palhm: backend 'null' is provided by both palhm-clash (plugin 'clash') and "
        "palhm-null (plugin 'null'): uninstall one\n"
    )
    for args in (["plugins"], ["run"], ["config", "check"]):
        result = run_palhm(*args, config=routine_config(tmp_path), env=env)
        assert result.returncode == 2, args
        assert result.stderr == expected, args
    # without the impostor on the path all is well
    assert run_palhm("plugins").returncode == 0


NOISY_FORK = """
from palhm_core import hookimpl

@hookimpl
def palhm_task_started(task):
    print("started", task.id)
"""


def test_two_distributions_with_one_plugin_name_are_refused(tmp_path):
    site = fake_dist(
        tmp_path / "site",
        "palhm-null-fork",
        "9.0",
        {"null": "palhm_null_fork"},
        {"palhm_null_fork": NOISY_FORK},
    )
    result = run_palhm("plugins", env={"PYTHONPATH": str(site)})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("palhm: plugin name 'null' is claimed by both ")
    assert lines[0].endswith(
        (
            "palhm-null-fork and palhm-null: uninstall one",
            "palhm-null and palhm-null-fork: uninstall one",
        )
    )


def _one_warning(stderr: str, needle: str) -> str:
    lines = [line for line in stderr.splitlines() if needle in line]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_a_plugin_that_fails_to_import_is_one_line_and_palhm_still_works(tmp_path):
    site = fake_dist(
        tmp_path / "site",
        "palhm-broken",
        "1.5",
        {"broken": "palhm_broken"},
        {"palhm_broken": "import palhm_no_such_dependency\n"},
    )
    env = run_env(tmp_path, PYTHONPATH=str(site))
    expected = (
        f"palhm: warning: plugin 'broken' (palhm-broken 1.5) failed to load with palhm "
        f"{PALHM_VERSION}: ModuleNotFoundError: No module named 'palhm_no_such_dependency'"
    )
    listed = run_palhm("plugins", "--json", env=env)
    assert listed.returncode == 0
    assert _one_warning(listed.stderr, "broken") == expected
    doc = json.loads(listed.stdout)
    assert doc["failed"] == [expected[len("palhm: warning: ") :]]
    assert "null" in {p["name"] for p in doc["plugins"]}
    marker = tmp_path / "ran"
    run = run_palhm(
        "run", config=routine_config(tmp_path, ["/usr/bin/touch", str(marker)]), env=env
    )
    assert run.returncode == 0, run.stderr
    assert _one_warning(run.stderr, "broken") == expected
    assert marker.exists()


def test_a_multi_line_import_error_stays_on_one_line(tmp_path):
    site = fake_dist(
        tmp_path / "site",
        "palhm-chatty",
        "0.1",
        {"chatty": "palhm_chatty"},
        {"palhm_chatty": "raise RuntimeError('first\\n  second\\nthird')\n"},
    )
    result = run_palhm("plugins", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0
    assert _one_warning(result.stderr, "chatty").endswith("RuntimeError: first second third")


def test_a_plugin_with_a_misspelt_hook_is_reported_and_dropped(tmp_path):
    site = fake_dist(
        tmp_path / "site",
        "palhm-typo",
        "0.1",
        {"typo": "palhm_typo"},
        {
            "palhm_typo": """
            from palhm_core import hookimpl

            @hookimpl
            def palhm_backend():
                return []
        """
        },
    )
    result = run_palhm("plugins", "--json", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0
    line = _one_warning(result.stderr, "typo")
    assert line.startswith(
        "palhm: warning: plugin 'typo' (palhm-typo 0.1) is not a valid PALHM plugin with palhm "
    )
    assert "palhm_backend" in line
    assert "typo" not in {p["name"] for p in json.loads(result.stdout)["plugins"]}


def test_a_plugin_registering_a_nameless_class_is_dropped_whole(tmp_path):
    site = fake_dist(
        tmp_path / "site",
        "palhm-nameless",
        "0.1",
        {"nameless": "palhm_nameless"},
        {
            "palhm_nameless": """
            from palhm_core import Backend, hookimpl
            from palhm_core.task import Task

            class Fine(Task):
                name = "fine"
                schema = {"properties": {}}

            class NoName(Backend):
                schema = {"properties": {}}

            @hookimpl
            def palhm_task_types():
                return [Fine]

            @hookimpl
            def palhm_backends():
                return [NoName]
        """
        },
    )
    result = run_palhm("plugins", "--json", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0
    warning = _one_warning(result.stderr, "nameless")
    assert warning.endswith(
        "backend class NoName: name None is not a name a config can write "
        "(lower case letters and digits, words joined by '-', '_' or '.', at most 64 characters); "
        "plugin disabled"
    )
    plugins = json.loads(result.stdout)["plugins"]
    assert "nameless" not in {p["name"] for p in plugins}
    assert not any("fine" in p["provides"].get("task type", []) for p in plugins)


def test_an_event_hook_that_raises_does_not_stop_the_run(tmp_path):
    site = fake_dist(
        tmp_path / "site",
        "palhm-noisy",
        "0.1",
        {"noisy": "palhm_noisy"},
        {
            "palhm_noisy": """
            from palhm_core import hookimpl

            @hookimpl
            def palhm_task_started(task):
                raise ValueError("no monitoring today")
        """
        },
    )
    marker = tmp_path / "ran"
    result = run_palhm(
        "run",
        config=routine_config(tmp_path, ["/usr/bin/touch", str(marker)]),
        env=run_env(tmp_path, PYTHONPATH=str(site)),
    )
    assert result.returncode == 0, result.stderr
    assert marker.exists()
    assert _one_warning(result.stderr, "noisy") == (
        "palhm: warning: plugin 'noisy' failed in palhm_task_started: "
        "ValueError: no monitoring today"
    )


# -- boto3 is imported only when an S3 backend opens ------------------------------------

PROBE = r"""
import json, os, sys

attempts = []

class Probe:
    # records every attempt to import boto3 or botocore, installed or not
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("boto3", "botocore"):
            attempts.append(name)
        return None

sys.meta_path.insert(0, Probe())
from palhm_core.cli import main

try:
    rc = main(sys.argv[1:])
except SystemExit as e:
    rc = e.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore"))
with open(os.environ["PROBE_OUT"], "w") as f:
    json.dump({"rc": rc, "attempts": attempts, "modules": heavy}, f)
"""


def _probe(tmp_path: Path, *args: str, env=None) -> dict:
    import os

    out = tmp_path / "probe.json"
    full_env = {**os.environ, **(env or {}), "PROBE_OUT": str(out), **run_env(tmp_path)}
    full_env.pop("PALHM_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize(
    "args", [["--help"], ["help"], ["plugins"], ["plugins", "--json"], ["run"], ["config", "check"]]
)
def test_boto3_is_never_imported_for_help_plugins_or_a_routine(args, tmp_path):
    args = list(args)
    if args[0] in ("run", "config"):
        args = ["-f", str(routine_config(tmp_path)), *args]
    found = _probe(tmp_path, *args)
    assert found["rc"] in (0, None), found
    assert found["attempts"] == [] and found["modules"] == []


def test_the_boto3_probe_does_see_an_import(tmp_path):
    """The probe works whether boto3 is installed or not: a plugin that
    imports it at import time is caught."""
    site = fake_dist(
        tmp_path / "site",
        "palhm-heavy",
        "0.1",
        {"heavy": "palhm_heavy"},
        {"palhm_heavy": "import boto3\n"},
    )
    found = _probe(tmp_path, "plugins", env={"PYTHONPATH": str(site)})
    assert "boto3" in found["attempts"]
