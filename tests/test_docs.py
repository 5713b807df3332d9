"""The documentation stays true to the code.

- doc/config.md documents every key of the config schema of the core and of
  every plugin under plugins/ (each must be installed), section by section;
- doc/plugins.md documents every hookspec and every method of the Backend
  and Sink contract, and its example plugin builds, installs, is discovered
  and makes, verifies, reads back and rotates copies;
- the generated parts of both pages are what tools/gen_docs.py makes now;
- every conf/ sample and the default config pass ``palhm config check`` and
  every task of them can be planned;
- README.md names every command and exit status of the CLI, and the
  relative links of README.md and doc/ lead to files that exist.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import FAST_PREFIX, installed_once, run_palhm, write_config

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "doc"
CONFIG_MD = DOC / "config.md"
PLUGINS_MD = DOC / "plugins.md"
README = REPO / "README.md"


def _load_gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", REPO / "tools" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_docs = _load_gen_docs()


@pytest.fixture(scope="module")
def schema():
    try:
        return gen_docs.repo_schema()
    except SystemExit as e:  # a plugin of the repository is not installed
        pytest.fail(str(e))


# -- doc/config.md ------------------------------------------------------------------


def _keys(node, out: set[str]) -> None:
    """Every property name under ``node`` that is not behind a ``$ref``:
    nested objects, array items and the branches of allOf/if-then (not the
    ``if`` conditions themselves)."""
    if isinstance(node, list):
        for item in node:
            _keys(item, out)
        return
    if not isinstance(node, dict):
        return
    for name, sub in node.get("properties", {}).items():
        out.add(name)
        _keys(sub, out)
    for key in ("items", "additionalProperties", "then", "else", "allOf", "anyOf", "oneOf"):
        if key in node:
            _keys(node[key], out)


def _section(text: str, name: str) -> str | None:
    """The part of config.md for the schema definition ``name``."""
    anchor = "def-" + re.sub(r"[^a-z0-9-]+", "-", name.lower())
    start = text.find(f'<a id="{anchor}"></a>')
    if start < 0:
        return None
    stop = text.find("<a id=", start + 1)
    return text[start : stop if stop > 0 else len(text)]


def test_config_md_documents_every_schema_key(schema):
    text = CONFIG_MD.read_text()
    parts = {"top": {k: v for k, v in schema.items() if k != "$defs"}, **schema["$defs"]}
    missing = []
    for name, node in parts.items():
        section = _section(text, name)
        if section is None:
            missing.append(f"$defs/{name}: no section" if name != "top" else "top level")
            continue
        keys: set[str] = set()
        _keys(node, keys)
        for key in sorted(keys):
            # a table row names the key alone or at the end of its path:
            # `root`, `objects[].path`, `param[].sig`
            if not re.search(r"`(?:[^`\s]*[.\]])?" + re.escape(key) + "`", section):
                missing.append(f"{name}: {key}")
    assert not missing, "doc/config.md lacks (run: nox -s docs): " + "; ".join(missing)


def test_config_md_has_a_section_for_each_installed_kind(schema):
    """Backends, task types, prefix generators and builtins of the repository
    each have their section."""
    from palhm_core.plugins import Plugins

    text = CONFIG_MD.read_text()
    plugins = Plugins()
    wanted = set(gen_docs.repo_plugins()) | {
        name for name, info in plugins.infos.items() if info.builtin
    }
    prefixes = {
        "backend": "backend",
        "task type": "task",
        "prefix generator": "prefix",
        "builtin": "builtin",
        "notifier": "notifier",
        "retention policy": "keep",
    }
    absent = [
        f"{kind} {name}"
        for kind, registry in plugins.registries.items()
        for name, reg in registry.items()
        if reg.plugin.name in wanted and _section(text, f"{prefixes[kind]}.{name}") is None
    ]
    assert not absent, f"doc/config.md has no section for: {', '.join(absent)}"


def test_generated_regions_are_up_to_date():
    stale = []
    for path, regions in gen_docs.generated().items():
        text = Path(path).read_text()
        for name, body in regions.items():
            if gen_docs.region(text, name).strip("\n") != body.strip("\n"):
                stale.append(f"{os.path.relpath(path, REPO)} ({name})")
    assert not stale, "out of date, run `nox -s docs`: " + ", ".join(stale)


# -- doc/plugins.md -------------------------------------------------------------------


def test_plugins_md_documents_every_hookspec():
    from palhm_core import hookspecs

    specs = {
        name for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "palhm_spec")
    }
    assert specs, "no hookspec found: has the marker's project name changed?"
    region = gen_docs.region(PLUGINS_MD.read_text(), "hookspecs")
    documented = set(re.findall(r"^### `(palhm_\w+)`$", region, re.M))
    assert not specs - documented, f"hookspecs missing from doc/plugins.md: {specs - documented}"
    assert not documented - specs, f"doc/plugins.md documents gone hooks: {documented - specs}"
    for name in specs:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert re.search(rf"^def {name}\(", region, re.M), f"no signature of {name}"
        for param in filter(None, params.split(", ")):
            assert re.search(rf"^def {name}\(.*\b{param}\b", region, re.M), (name, param)


def test_plugins_md_documents_the_backend_contract():
    from palhm_core.backend import Backend, Sink

    region = gen_docs.region(PLUGINS_MD.read_text(), "backend-api")
    for cls in (Backend, Sink):
        for name, member in vars(cls).items():
            if callable(member) and (not name.startswith("_") or name == "__init__"):
                assert f"#### `{cls.__name__}.{name}`" in region, f"{cls.__name__}.{name}"


# -- the example plugin ------------------------------------------------------------------


@pytest.fixture(scope="session")
def dirstore_env(tmp_path_factory):
    """doc/example-plugin built and installed into a directory of its own
    (once per session), which the palhm processes get on PYTHONPATH:
    discovery through its entry point, as after ``pip install``."""
    site = installed_once(tmp_path_factory, "dirstore", DOC / "example-plugin", setuptools=77)
    return {"PYTHONPATH": str(site)}


def _dirstore_config(tmp_path, root, argv, limit=2):
    return write_config(
        tmp_path,
        {
            "tasks": [
                {
                    "id": "backup",
                    "type": "backup",
                    "backend": "dirstore",
                    "backend-param": {
                        "dir": str(root),
                        "nb-copy-limit": limit,
                        "prefix": FAST_PREFIX,
                    },
                    "objects": [
                        {
                            "path": "data/out.bin",
                            "pipeline": [{"type": "exec-inline", "argv": argv}],
                        }
                    ],
                }
            ]
        },
    )


def test_example_plugin_is_discovered(dirstore_env):
    result = run_palhm("plugins", "--json", env=dirstore_env)
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["dirstore"]["distribution"] == "palhm-dirstore"
    assert plugins["dirstore"]["provides"] == {"backend": ["dirstore"]}


def test_example_plugin_makes_verifies_reads_and_rotates(tmp_path, dirstore_env):
    root = tmp_path / "store"
    root.mkdir()
    payload = os.urandom(300_000)
    source = tmp_path / "payload"
    source.write_bytes(payload)
    conf = _dirstore_config(tmp_path, root, ["cat", str(source)])
    for _ in range(3):
        result = run_palhm("-q", "run", "backup", config=conf, env=dirstore_env)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    kept = sorted(p.name for p in root.iterdir())
    assert len(kept) == 2 and not any(name.startswith(".") for name in kept)
    verify = run_palhm("backups", "verify", "backup", "--all", config=conf, env=dirstore_env)
    assert verify.returncode == 0, verify.stderr
    args = ("backups", "cat", "backup", "latest", "data/out.bin")
    cat = run_palhm(*args, config=conf, env=dirstore_env, text=False)
    assert cat.returncode == 0, cat.stderr
    assert cat.stdout == payload
    sums = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=root / kept[-1], capture_output=True
    )
    assert sums.returncode == 0, sums.stdout


def test_example_plugin_failed_run_leaves_nothing(tmp_path, dirstore_env):
    root = tmp_path / "store"
    root.mkdir()
    conf = _dirstore_config(tmp_path, root, ["sh", "-c", "echo partial; exit 3"])
    result = run_palhm("-q", "run", "backup", config=conf, env=dirstore_env)
    assert result.returncode == 1
    assert "exited with status 3" in result.stderr
    assert list(root.iterdir()) == []


def test_example_plugin_refuses_a_relative_dir(tmp_path, dirstore_env):
    conf = _dirstore_config(tmp_path, "relative/store", ["true"])
    result = run_palhm("config", "check", config=conf, env=dirstore_env)
    assert result.returncode == 2
    assert "tasks[0].backend-param.dir: must be an absolute path" in result.stderr


# -- conf/ -------------------------------------------------------------------------------

SAMPLES = sorted(
    [*REPO.glob("conf/*.jsonc"), *REPO.glob("conf/*.yaml"), REPO / "conf" / "palhm.conf"]
)


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_conf_sample_is_valid_and_plannable(path):
    check = run_palhm("config", "check", config=path)
    assert check.returncode == 0, check.stderr
    assert check.stderr == ""
    shown = run_palhm("config", "show", config=path)
    assert shown.returncode == 0, shown.stderr
    for task in json.loads(shown.stdout)["tasks"]:
        plan = run_palhm("plan", task["id"], config=path)
        assert plan.returncode == 0, plan.stderr


def test_default_config_is_the_shipped_one():
    """conf/palhm.conf is what `palhm config init` installs."""
    import palhm_core

    data = Path(palhm_core.__file__).parent / "data"
    assert (REPO / "conf" / "palhm.conf").read_bytes() == (data / "palhm.conf").read_bytes()
    core = REPO / "conf" / "conf.d" / "core.json"
    assert core.read_bytes() == (data / "conf.d" / "core.json").read_bytes()


# -- README.md and links ---------------------------------------------------------------------


def test_readme_setup_commands_are_the_first_two_sh_blocks():
    first, second = gen_docs.readme_commands(README.read_text())
    assert "palhm -f conf/quickstart.jsonc run" in first
    assert "nox" in second


def test_readme_names_every_command_and_exit_status():
    from palhm_core.cli import build_parser

    text = README.read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for command in sub.choices:
        assert f"palhm {command}" in text or f"`{command}`" in text, command
    statuses = re.findall(r"\b(\d+(?:\+N)?) ", parser.epilog)
    assert statuses, parser.epilog
    for status in statuses:
        assert re.search(rf"^\| `?{re.escape(status)}`? \|", text, re.M), f"exit status {status}"


LINKED = [README, *sorted(DOC.glob("*.md")), *sorted(REPO.glob("plugins/*/README.md"))]


@pytest.mark.parametrize("page", LINKED, ids=[str(p.relative_to(REPO)) for p in LINKED])
def test_relative_links_lead_somewhere(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.name}: broken links: {broken}"
