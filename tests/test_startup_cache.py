"""PALHM's start-up cache (palhm_core/cache.py, palhm_core/plugin_summary.py),
through the installed ``palhm``: a config checked once is not checked by
jsonschema again while it is unchanged, and plugins a config does not name
are not imported; but any change is worked out afresh, and a cache that
another user could have written is not believed.

Each test has a cache directory of its own (``XDG_CACHE_HOME``), so what one
test remembers never decides another's outcome.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import PALHM, backup_task, inline, write_config
from test_plugins import fake_dist


def palhm(tmp_path: Path, *args, env=None) -> subprocess.CompletedProcess:
    """``palhm ARGS`` with the test's cache, under ``-X importtime``: the
    modules it imported are in :func:`imported`."""
    full = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), **(env or {})}
    full.pop("PALHM_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-X", "importtime", PALHM, *map(str, args)],
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
    )


def imported(result: subprocess.CompletedProcess) -> set[str]:
    """Top-level names of the modules a ``palhm`` run imported."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def messages(result: subprocess.CompletedProcess) -> list[str]:
    """stderr without the ``-X importtime`` lines."""
    return [line for line in result.stderr.splitlines() if not line.startswith("import time:")]


def local_config(tmp_path: Path, **params) -> Path:
    task = backup_task(
        objects=[{"path": "x", "pipeline": [inline("true")]}],
        root=str(tmp_path / "root"),
        **params,
    )
    return write_config(tmp_path, {"tasks": [task]})


def test_a_config_checked_once_is_not_checked_by_jsonschema_again(tmp_path):
    conf = local_config(tmp_path)
    first = palhm(tmp_path, "-f", conf, "config", "check")
    assert first.returncode == 0, messages(first)
    assert "jsonschema" in imported(first)
    again = palhm(tmp_path, "-f", conf, "config", "check")
    assert again.returncode == 0, messages(again)
    assert "jsonschema" not in imported(again)
    run = palhm(tmp_path, "-q", "-f", conf, "run", "backup")
    assert run.returncode == 0, messages(run)
    assert "jsonschema" not in imported(run)
    assert len(os.listdir(tmp_path / "root")) == 1


def test_a_changed_config_is_checked_again(tmp_path):
    conf = local_config(tmp_path, **{"nb-copy-limit": 2})
    assert palhm(tmp_path, "-f", conf, "config", "check").returncode == 0
    text = conf.read_text().replace('"nb-copy-limit": 2', '"nb-copy-limit": "two"')
    conf.write_text(text)
    result = palhm(tmp_path, "-f", conf, "config", "check")
    assert result.returncode == 2
    assert any("nb-copy-limit" in line for line in messages(result)), messages(result)


def test_a_changed_include_is_checked_again(tmp_path):
    (tmp_path / "conf.d").mkdir()
    inc = write_config(tmp_path / "conf.d", {"vl": 3}, "extra.json")
    conf = write_config(tmp_path, {"include": ["conf.d/extra.json"]})
    assert palhm(tmp_path, "-f", conf, "config", "check").returncode == 0
    inc.write_text('{"vl": "loud"}')
    result = palhm(tmp_path, "-f", conf, "config", "check")
    assert result.returncode == 2
    assert any(str(inc) in line and "vl" in line for line in messages(result)), messages(result)


def forged_cache(tmp_path: Path, conf: Path, dir_mode: int, file_mode: int) -> None:
    """A cache whose ``checks`` say that ``conf`` (which is wrong) passed."""
    from palhm_core import cache
    from palhm_core.config.files import read_tree
    from palhm_core.config.schema import build_schema
    from palhm_core.plugins import Plugins

    schema = build_schema(Plugins())
    keys = {cache.key("config", schema, f.doc): 1 for f in read_tree(str(conf))}
    directory = tmp_path / "cache" / "palhm"
    directory.mkdir(parents=True)
    (directory / "checks").write_text(__import__("json").dumps(keys))
    (directory / "checks").chmod(file_mode)
    directory.chmod(dir_mode)


def wrong_config(tmp_path: Path) -> Path:
    """A config only the schema refuses (the backend would ignore the key)."""
    return local_config(tmp_path, **{"no-such-key": 1})


def test_a_cache_of_the_users_own_is_believed(tmp_path):
    """The forgery works where the cache is trusted: what the next tests
    refuse is a real risk, not an impossible one."""
    conf = wrong_config(tmp_path)
    forged_cache(tmp_path, conf, 0o700, 0o600)
    result = palhm(tmp_path, "-f", conf, "config", "check")
    assert result.returncode == 0, messages(result)


@pytest.mark.parametrize(
    "dir_mode, file_mode", [(0o777, 0o600), (0o770, 0o600), (0o700, 0o666), (0o700, 0o620)]
)
def test_a_cache_others_could_write_is_not_believed(tmp_path, dir_mode, file_mode):
    conf = wrong_config(tmp_path)
    forged_cache(tmp_path, conf, dir_mode, file_mode)
    result = palhm(tmp_path, "-f", conf, "config", "check")
    assert result.returncode == 2
    assert any("no-such-key" in line for line in messages(result)), messages(result)


def test_a_cache_of_another_user_is_not_believed(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root, to give the cache to another user")
    conf = wrong_config(tmp_path)
    forged_cache(tmp_path, conf, 0o700, 0o600)
    os.chown(tmp_path / "cache" / "palhm" / "checks", 65534, 65534)
    result = palhm(tmp_path, "-f", conf, "config", "check")
    assert result.returncode == 2


def test_a_symlinked_cache_directory_is_not_used(tmp_path):
    conf = wrong_config(tmp_path)
    forged_cache(tmp_path, conf, 0o700, 0o600)
    real = tmp_path / "elsewhere"
    (tmp_path / "cache" / "palhm").rename(real)
    (tmp_path / "cache" / "palhm").symlink_to(real)
    result = palhm(tmp_path, "-f", conf, "config", "check")
    assert result.returncode == 2


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"x": ' * 5000])
def test_a_damaged_cache_is_ignored(tmp_path, content):
    conf = local_config(tmp_path)
    directory = tmp_path / "cache" / "palhm"
    directory.mkdir(parents=True, mode=0o700)
    for name in ("checks", "plugins"):
        (directory / name).write_text(content)
    result = palhm(tmp_path, "-q", "-f", conf, "run", "backup")
    assert result.returncode == 0, messages(result)
    assert messages(result) == []


def test_a_fifo_in_the_cache_is_not_waited_for(tmp_path):
    conf = local_config(tmp_path)
    directory = tmp_path / "cache" / "palhm"
    directory.mkdir(parents=True, mode=0o700)
    for name in ("checks", "plugins"):
        os.mkfifo(directory / name, 0o600)
    result = palhm(tmp_path, "-q", "-f", conf, "run", "backup")  # bounded by its timeout
    assert result.returncode == 0, messages(result)


def test_an_unwritable_cache_costs_nothing_but_time(tmp_path):
    conf = local_config(tmp_path)
    (tmp_path / "cache").write_text("a file where the directory would be")
    for _ in range(2):
        result = palhm(tmp_path, "-q", "-f", conf, "run", "backup")
        assert result.returncode == 0, messages(result)
        assert messages(result) == []
        assert "jsonschema" in imported(result)


PLUGIN = """
    import os

    from palhm_core.api import hookimpl
    from palhm_null import NullBackend

    with open(os.environ["MINE_IMPORTS"], "a") as f:
        f.write("imported\\n")

    class Mine(NullBackend):
        name = "mine"
        description = "A backend of the test."
        schema = {"properties": {PROPS}}

    @hookimpl
    def palhm_backends():
        return [Mine]
"""


def mine_plugin(site: Path, props: str) -> Path:
    """A plugin that notes each import of it in ``MINE_IMPORTS``."""
    return fake_dist(
        site,
        "palhm-mine",
        "1.0",
        {"mine": "palhm_mine"},
        {"palhm_mine": PLUGIN.replace("PROPS", props)},
    )


def mine_env(tmp_path: Path, site: Path) -> dict:
    return {"PYTHONPATH": str(site), "MINE_IMPORTS": str(tmp_path / "imports")}


def imports(tmp_path: Path) -> int:
    """How many times the plugin of :func:`mine_plugin` was imported so far."""
    try:
        return len((tmp_path / "imports").read_text().splitlines())
    except FileNotFoundError:
        return 0


def test_plugins_a_config_does_not_name_are_not_imported(tmp_path):
    site = mine_plugin(tmp_path / "site", '"a": {"type": "string", "description": "A."}')
    env = mine_env(tmp_path, site)
    conf = local_config(tmp_path)
    first = palhm(tmp_path, "-q", "-f", conf, "run", "backup", env=env)
    assert first.returncode == 0, messages(first)
    assert imports(tmp_path) == 1
    again = palhm(tmp_path, "-q", "-f", conf, "run", "backup", env=env)
    assert again.returncode == 0, messages(again)
    assert imports(tmp_path) == 1
    assert not {"palhm_s3", "palhm_rclone"} & imported(again)
    listed = palhm(tmp_path, "plugins", env=env)
    assert "backend: mine" in listed.stdout
    assert imports(tmp_path) == 1
    check = palhm(tmp_path, "-f", mine_config(tmp_path, {"a": "x"}), "config", "check", env=env)
    assert check.returncode == 0, messages(check)
    assert imports(tmp_path) == 2


def mine_config(tmp_path: Path, params: dict) -> Path:
    task = {"id": "m", "type": "backup", "backend": "mine", "backend-param": params}
    return write_config(tmp_path / "named", {"tasks": [{**task, "objects": []}]})


def test_an_edited_plugin_is_imported_and_checked_again(tmp_path):
    site = mine_plugin(tmp_path / "site", '"a": {"type": "string", "description": "A."}')
    env = mine_env(tmp_path, site)
    conf = local_config(tmp_path)
    for _ in range(2):  # summed up, then known from the cache
        assert palhm(tmp_path, "-f", conf, "config", "check", env=env).returncode == 0
    assert imports(tmp_path) == 1
    source = site / "palhm_mine.py"
    source.write_text(source.read_text().replace('"a": {', '"b": {'))
    check = palhm(tmp_path, "-f", mine_config(tmp_path, {"b": "x"}), "config", "check", env=env)
    assert check.returncode == 0, messages(check)
    old = palhm(tmp_path, "-f", mine_config(tmp_path, {"a": "x"}), "config", "check", env=env)
    assert old.returncode == 2, messages(old)
    source.write_text(source.read_text().replace('name = "mine"', 'name = "Mine!"'))
    broken = palhm(tmp_path, "-f", conf, "config", "check", env=env)
    assert broken.returncode == 0, messages(broken)
    assert any("plugin 'mine'" in line and "disabled" in line for line in messages(broken))


def test_an_upgraded_dependency_makes_plugins_imported_again(tmp_path):
    site = mine_plugin(tmp_path / "site", '"a": {"type": "string", "description": "A."}')
    env = mine_env(tmp_path, site)
    conf = local_config(tmp_path)
    for _ in range(3):
        assert palhm(tmp_path, "-f", conf, "config", "check", env=env).returncode == 0
    assert imports(tmp_path) == 1
    fake_dist(site, "some-library", "2.0", {}, {})  # anything installed or upgraded
    assert palhm(tmp_path, "-f", conf, "config", "check", env=env).returncode == 0
    assert imports(tmp_path) == 2


def test_a_plugin_with_event_hooks_is_always_imported(tmp_path):
    site = mine_plugin(tmp_path / "site", '"a": {"type": "string", "description": "A."}')
    with open(site / "palhm_mine.py", "a") as f:
        f.write(
            textwrap.dedent(
                """
                @hookimpl
                def palhm_task_started(task, dry_run):
                    print("heard of", task.id)
                """
            )
        )
    env = mine_env(tmp_path, site)
    conf = local_config(tmp_path)
    for n in (1, 2):
        result = palhm(tmp_path, "-f", conf, "run", "backup", env=env)
        assert result.returncode == 0, messages(result)
        assert imports(tmp_path) == n
        assert "heard of backup" in result.stdout
