"""What PALHM does with plugins that are wrong, and with plugin settings and
run events, through the installed ``palhm``.

The plugins are one real distribution, tests/plugins/broken/palhm_broken: a
module and entry point per mistake (``broken-*``), a prefix generator whose
names sort backwards (``descending``) and a plugin with settings that
records the events it hears (``observer``). It is NOT installed into the test
environment, where every other test would see its warnings: the first test
that needs it builds it with pip into a directory of the test session
(``pip install --no-deps --target``; one build per session, shared by the
xdist workers under a file lock) and each test puts that directory on the
``PYTHONPATH`` of the ``palhm`` it runs: importlib.metadata finds the
distribution there exactly as in site-packages. A test that wants one broken
plugin alone sets ``PALHM_DISABLE_PLUGIN_AUTOLOAD=1`` and names it (and
localfs and null) in ``PALHM_PLUGINS``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import backup_task, copies, inline, installed_once, run_palhm, write_config

SOURCE = Path(__file__).parent / "plugins" / "broken" / "palhm_broken"
LABEL = "palhm: warning: plugin '{0}' (palhm-broken 0.1.0, module {1}): "

#: entry point -> the warning after its label: one line each, a class or a
#: hook of the plugin wrong in one way.
WARNINGS = {
    "broken-instance": "returned an instance of Instance where a backend class is expected; "
    "plugin disabled",
    "broken-not-list": "palhm_backends returned the class NotList, not a list of classes; "
    "plugin disabled",
    "broken-properties-list": "backend 'broken-properties-list': schema: properties: "
    "['root', 'bucket'] is not of type 'object'; plugin disabled",
    "broken-type-name": "backend 'broken-type-name': schema: properties.root.type: 'strin' is "
    "not a JSON Schema type (string, integer, number, boolean, object, array, null); "
    "plugin disabled",
    "broken-no-description": "backend 'broken-no-description': schema: property 'depth' has "
    "no description; plugin disabled",
    "broken-no-hookimpl": "implements no hook (palhm_backends not marked with @hookimpl)",
    "broken-reserved": "backend 'broken-reserved': schema: defines 'nb-copy-limit', 'prefix', "
    "which the core adds itself (reserved: keep, nb-copy-limit, prefix, root-size-limit); "
    "plugin disabled",
    "broken-abstract": "backend 'broken-abstract': does not implement the abstract method(s) "
    "list_copies; plugin disabled",
    "broken-raises": "palhm_backends raised RuntimeError: the configuration of broken-raises "
    "is missing; plugin disabled",
    "broken-name": "backend 'Broken Name': name 'Broken Name' is not a name a config can write "
    "(lower case letters and digits, words joined by '-', '_' or '.', at most 64 "
    "characters); plugin disabled",
    "broken-settings": "settings schema: properties.url.type: 'strng' is not a JSON Schema "
    "type (string, integer, number, boolean, object, array, null); plugin disabled",
    "broken-metaclass": "checking its backend classes raised RuntimeError: no name before "
    "palhm_configure; plugin disabled",
    "broken-twice": "gives two backend classes named 'twice'; plugin disabled",
    "broken-deep": "backend 'broken-deep': schema: is nested too deeply; plugin disabled",
    "broken-remote-ref": "backend 'broken-remote-ref': schema: properties.port.$ref: "
    "'http://127.0.0.1:9/port.json' is not a definition the core shares (#/$defs/pipeline, "
    "#/$defs/routine, #/$defs/exec-definition or #/$defs/step.TYPE; PALHM fetches no schema); "
    "plugin disabled",
    "broken-local-ref": "backend 'broken-local-ref': schema: properties.port.$ref: "
    "'#/$defs/nosuch' is not a definition the core shares (#/$defs/pipeline, "
    "#/$defs/routine, #/$defs/exec-definition or #/$defs/step.TYPE; PALHM fetches no schema); "
    "plugin disabled",
    "broken-dropped": "backend 'broken-dropped': schema: 'oneOf' would be ignored: PALHM "
    "keeps only 'properties' and 'required' of a class's schema; plugin disabled",
    "broken-settings-dropped": "settings schema: 'dependentRequired' would be ignored: PALHM "
    "keeps only 'properties' and 'required' of a settings schema; plugin disabled",
}


#: Said when a config loads: the plugin fails only when it is configured.
CONFIGURE_WARNING = "palhm_configure raised KeyError: 'url'; plugin disabled"


def warning(entry_point: str) -> str:
    module = "palhm_" + entry_point.replace("-", "_")
    problem = CONFIGURE_WARNING if entry_point == "broken-configure" else WARNINGS[entry_point]
    return LABEL.format(entry_point, module) + problem


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory) -> Path:
    """The directory palhm-broken is installed into, built once per session."""
    try:
        return installed_once(tmp_path_factory, "palhm-broken", SOURCE, setuptools=61)
    except RuntimeError as e:
        pytest.skip(
            "pip cannot build tests/plugins/broken/palhm_broken (its build backend, "
            f"setuptools, comes from the package index): {str(e)[-500:]}"
        )


def alone(site: Path, *entry_points: str, **extra) -> dict:
    """The environment of a palhm that loads only ``entry_points``, localfs
    and null (the backend of dry runs)."""
    return {
        "PYTHONPATH": str(site),
        "PALHM_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PALHM_PLUGINS": ",".join([*entry_points, "localfs", "null"]),
        **extra,
    }


def localfs_config(tmp_path: Path, **doc) -> Path:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    task = backup_task(
        "default", root=str(root), objects=[{"path": "a", "pipeline": [inline("echo", "a")]}]
    )
    return write_config(tmp_path, {"tasks": [task], **doc})


# -- registration checks ------------------------------------------------------------


@pytest.mark.parametrize("entry_point", sorted(WARNINGS))
def test_each_broken_plugin_is_one_warning_line(broken_site, entry_point):
    result = run_palhm("plugins", "--json", env=alone(broken_site, entry_point))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [warning(entry_point)]
    listed = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert "localfs" in listed
    if entry_point == "broken-no-hookimpl":  # loaded, providing nothing
        assert listed[entry_point]["provides"] == {}
    else:
        assert entry_point not in listed
        failed = json.loads(result.stdout)["failed"]
        assert [line for line in failed if entry_point in line] == [
            warning(entry_point).removeprefix("palhm: warning: ")
        ]


def test_a_config_not_using_broken_plugins_makes_its_backup(broken_site, tmp_path):
    """Every broken plugin installed at once: one warning each, and a backup
    to localfs is made as without them."""
    config = localfs_config(tmp_path)
    env = {"PYTHONPATH": str(broken_site), "PALHM_LOCK_DIR": str(tmp_path)}
    result = run_palhm("run", config=config, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "(palhm-broken " in line]
    assert sorted(warnings) == sorted(warning(ep) for ep in [*WARNINGS, "broken-configure"])
    made = copies(tmp_path / "root")
    assert len(made) == 1
    assert (tmp_path / "root" / made[0] / "a").read_text() == "a\n"


def test_a_config_naming_a_disabled_backend_says_why(broken_site, tmp_path):
    config = write_config(tmp_path, {"tasks": [backup_task("t", backend="broken-type-name")]})
    result = run_palhm("config", "check", config=config, env=alone(broken_site, "broken-type-name"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        warning("broken-type-name"),
        f"palhm: {config}: tasks[0].backend: backend 'broken-type-name' is not available: "
        + warning("broken-type-name").removeprefix("palhm: warning: "),
    ]


def test_a_plugin_failing_without_settings_is_disabled_for_the_configs_not_using_it(
    broken_site, tmp_path
):
    env = alone(broken_site, "broken-configure", PALHM_LOCK_DIR=str(tmp_path))
    result = run_palhm("run", config=localfs_config(tmp_path), env=env)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "warning" in line] == [
        warning("broken-configure")
    ]
    assert len(copies(tmp_path / "root")) == 1
    config = write_config(tmp_path, {"tasks": [backup_task("t", backend="broken-configure")]})
    result = run_palhm("config", "check", config=config, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        warning("broken-configure"),
        f"palhm: {config}: tasks[0].backend: backend 'broken-configure' is not available: "
        + warning("broken-configure").removeprefix("palhm: warning: "),
    ]


def test_a_config_naming_a_backend_of_a_plugin_whose_hook_raised(broken_site, tmp_path):
    config = write_config(tmp_path, {"tasks": [backup_task("t", backend="mystery")]})
    result = run_palhm("config", "check", config=config, env=alone(broken_site, "broken-raises"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        warning("broken-raises"),
        f"palhm: {config}: tasks[0].backend: unknown backend 'mystery'; installed: localfs, null; "
        "plugins not loaded: broken-raises (see the warnings) (plugin autoloading is off: "
        "PALHM_DISABLE_PLUGIN_AUTOLOAD)",
    ]


# -- settings and run events --------------------------------------------------------


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_copy_writer_left_abstract_fails_its_run_in_one_line(broken_site, tmp_path):
    """The writer is made only when a copy begins, so loading cannot see it:
    the run names the plugin and the missing method, without a traceback,
    and the other task of the config still makes its copy."""
    broken = backup_task(
        "t", backend="broken-writer", objects=[{"path": "a", "pipeline": [inline("echo", "a")]}]
    )
    broken["backend-param"] = {}
    config = write_config(
        tmp_path, {"tasks": [broken, backup_task("good", root=str(tmp_path / "root"))]}
    )
    (tmp_path / "root").mkdir()
    env = alone(broken_site, "broken-writer", PALHM_LOCK_DIR=str(tmp_path))
    assert run_palhm("config", "check", config=config, env=env).returncode == 0
    result = run_palhm("run", "t", config=config, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "palhm: t: backend 'broken-writer' failed (a bug in its plugin, module "
        "palhm_broken_writer): TypeError: "
    )
    assert "commit" in line  # the method left abstract
    assert run_palhm("run", "good", config=config, env=env).returncode == 0
    assert len(copies(tmp_path / "root")) == 1


def test_a_plugin_gets_its_settings_and_hears_the_run_end_once(broken_site, tmp_path):
    log = tmp_path / "events.jsonl"
    settings = {"observer": {"log": str(log), "api-token": "tok-3141592"}}
    config = localfs_config(tmp_path, plugins=settings)
    env = alone(broken_site, "observer", PALHM_LOCK_DIR=str(tmp_path))
    result = run_palhm("run", config=config, env=env)
    assert result.returncode == 0, result.stderr
    seen = events(log)
    prefix = copies(tmp_path / "root")[0]
    assert [e["event"] for e in seen] == ["task_started", "copy_committed", "run_finished"]
    assert seen[1] == {
        "event": "copy_committed",
        "task": "default",
        "prefix": prefix,
        "dry_run": False,
    }
    assert seen[2]["exit_status"] == 0
    assert seen[2]["dry_run"] is False
    assert seen[2]["report"]["exit-status"] == 0

    listed = json.loads(run_palhm("plugins", "--json", env=env).stdout)["plugins"]
    observer = next(p for p in listed if p["name"] == "observer")
    assert observer["provides"] == {"settings": ["plugins.observer"]}

    shown = run_palhm("config", "show", config=config, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "tok-3141592" not in shown.stdout
    assert json.loads(shown.stdout)["plugins"]["observer"]["api-token"] == "<hidden>"


def test_a_dry_run_says_so_to_every_event(broken_site, tmp_path):
    log = tmp_path / "events.jsonl"
    config = localfs_config(tmp_path, plugins={"observer": {"log": str(log)}})
    env = alone(broken_site, "observer", PALHM_LOCK_DIR=str(tmp_path))
    result = run_palhm("run", "--dry-run", config=config, env=env)
    assert result.returncode == 0, result.stderr
    seen = events(log)
    assert [e["event"] for e in seen] == ["task_started", "copy_committed", "run_finished"]
    assert all(e["dry_run"] is True for e in seen)
    assert copies(tmp_path / "root") == []


def test_a_failed_run_ends_with_its_exit_status(broken_site, tmp_path):
    log = tmp_path / "events.jsonl"
    task = backup_task(
        "default",
        root=str(tmp_path / "root"),
        objects=[{"path": "a", "pipeline": [inline("false")]}],
    )
    (tmp_path / "root").mkdir()
    config = write_config(tmp_path, {"tasks": [task], "plugins": {"observer": {"log": str(log)}}})
    env = alone(broken_site, "observer", PALHM_LOCK_DIR=str(tmp_path))
    result = run_palhm("run", config=config, env=env)
    assert result.returncode == 1
    finished = [e for e in events(log) if e["event"] == "run_finished"]
    assert len(finished) == 1
    assert finished[0]["exit_status"] == 1
    assert finished[0]["report"]["success"] is False


@pytest.mark.parametrize(
    "settings, problem",
    [
        ({"nosuch": {}}, "plugins.nosuch: unknown key (expected one of: observer)"),
        ({"observer": {"log": 5}}, "plugins.observer.log: expected string, got 5"),
        ({"observer": {}}, "plugins.observer.log: required"),
        ({"observer": {"log": "x", "colour": 1}}, "plugins.observer.colour: unknown key"),
        ({"observer": {"log": "x", "level": 13}}, "plugins.observer.level: 13 is unlucky"),
    ],
)
def test_bad_plugin_settings_are_one_config_error(broken_site, tmp_path, settings, problem):
    config = localfs_config(tmp_path, plugins=settings)
    result = run_palhm("config", "check", config=config, env=alone(broken_site, "observer"))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"palhm: {config}: {problem}")


def test_settings_of_a_plugin_in_an_included_file_are_placed_there(broken_site, tmp_path):
    included = write_config(tmp_path, {"plugins": {"observer": {"log": 5}}}, name="more.json")
    config = localfs_config(tmp_path, include=[str(included)])
    result = run_palhm("config", "check", config=config, env=alone(broken_site, "observer"))
    assert result.returncode == 2
    assert result.stderr == f"palhm: {included}: plugins.observer.log: expected string, got 5\n"


# -- prefix order -------------------------------------------------------------------


def test_names_that_sort_backwards_stop_rotation_before_anything_is_deleted(broken_site, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    task = backup_task(
        "default",
        root=str(root),
        objects=[{"path": "a", "pipeline": [inline("echo", "a")]}],
        **{"nb-copy-limit": 1},
    )
    task["backend-param"]["prefix"] = {"type": "countdown"}
    config = write_config(tmp_path, {"tasks": [task]})
    env = alone(broken_site, "descending", PALHM_LOCK_DIR=str(tmp_path))
    first = run_palhm("run", config=config, env=env)
    assert first.returncode == 0, first.stderr
    [older] = copies(root)
    second = run_palhm("run", config=config, env=env)
    assert second.returncode == 1
    assert "Traceback" not in second.stderr
    made = copies(root)
    assert len(made) == 2 and older in made  # nothing deleted
    [newer] = [p for p in made if p != older]
    assert newer < older
    assert (
        f"rotation failed, copy {newer} is kept: the new copy {newer!r} sorts before copy "
        f"{older!r}, made earlier" in second.stderr
    )


# -- events through pluggy ----------------------------------------------------------


def test_events_go_through_pluggy_one_plugin_at_a_time(caplog):
    """An event reaches every plugin through the plugin manager (its call
    monitoring and hook wrappers see it) even when one plugin raises."""
    from palhm_core.api import hookimpl
    from palhm_core.plugins import Plugins

    heard = []

    class Raising:
        @hookimpl
        def palhm_task_started(self, task):
            raise RuntimeError("out of order")

    class Listening:
        @hookimpl
        def palhm_task_started(self, task, dry_run):
            heard.append(("listening", task, dry_run))

    class Wrapping:
        @hookimpl(wrapper=True)
        def palhm_task_started(self, task):
            heard.append(("wrapper", task))
            return (yield)

    plugins = Plugins(autoload=False)
    for plugin in (Raising(), Listening(), Wrapping()):
        plugins.pm.register(plugin, name=type(plugin).__name__)
    monitored = []
    plugins.pm.add_hookcall_monitoring(
        lambda name, impls, kwargs: monitored.append((name, [i.plugin_name for i in impls])),
        lambda outcome, name, impls, kwargs: None,
    )
    plugins.emit("palhm_task_started", task="t1")
    assert ("listening", "t1", False) in heard
    assert heard.count(("wrapper", "t1")) == 2  # around each plugin's call
    assert sorted(m for m in monitored if m[0] == "palhm_task_started") == [
        ("palhm_task_started", ["Listening", "Wrapping"]),
        ("palhm_task_started", ["Raising", "Wrapping"]),
    ]
    failures = [r.getMessage() for r in caplog.records if "out of order" in r.getMessage()]
    assert failures == ["plugin 'Raising' failed in palhm_task_started: RuntimeError: out of order"]
