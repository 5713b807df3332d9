"""Includes and merging, and the ``palhm config`` command: show, check,
schema, init."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from conftest import run_palhm, write_config


def _merged(config: Path, cwd=None) -> dict:
    result = run_palhm("config", "show", "--show-secrets", config=config, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_relative_includes_resolve_from_the_including_files_directory(tmp_path):
    """sub/a.json includes "b.yaml": that is sub/b.yaml, not the b.yaml
    beside the top file nor one in the working directory."""
    write_config(tmp_path, {"include": ["sub/a.json"]}, "top/palhm.conf")
    write_config(tmp_path, {"include": ["b.yaml"], "vl": 1}, "top/sub/a.json")
    write_config(tmp_path, {"vl": 2, "nb-workers": 2}, "top/sub/b.yaml")
    write_config(tmp_path, {"vl": 9}, "top/b.yaml")  # a decoy
    write_config(tmp_path, {"vl": 8}, "b.yaml")  # another, in the working directory
    merged = _merged(tmp_path / "top" / "palhm.conf", cwd=tmp_path)
    assert (merged["vl"], merged["nb-workers"]) == (2, 2)


def test_relative_top_file_and_dot_dot_includes(tmp_path):
    write_config(tmp_path, {"include": ["../shared/core.yaml"]}, "etc/palhm.conf")
    write_config(tmp_path, {"execs": [{"id": "t", "argv": ["/bin/true"]}]}, "shared/core.yaml")
    merged = _merged(Path("etc/palhm.conf"), cwd=tmp_path)
    assert [e["id"] for e in merged["execs"]] == ["t"]


def test_later_files_override_scalars_in_include_order(tmp_path):
    """Merge order: a file, then each of its includes depth first; each is
    merged over what came before, so an include overrides its includer."""
    write_config(
        tmp_path, {"include": ["a.json", "c.json"], "vl": 0, "nb-workers": 1}, "palhm.conf"
    )
    write_config(tmp_path, {"include": ["b.json"], "vl": 2, "nb-workers": 3}, "a.json")
    write_config(tmp_path, {"vl": 5}, "b.json")
    write_config(tmp_path, {"nb-workers": -1}, "c.json")
    merged = _merged(tmp_path / "palhm.conf")
    assert merged["vl"] == 5  # b, the last file setting vl
    assert merged["nb-workers"] == -1  # c, the last file of all


def test_an_include_overrides_the_file_that_includes_it(tmp_path):
    write_config(tmp_path, {"include": ["x.json"], "vl": 4}, "palhm.conf")
    write_config(tmp_path, {"vl": 1}, "x.json")
    assert _merged(tmp_path / "palhm.conf")["vl"] == 1


def test_execs_tasks_and_modules_merge_in_order(tmp_path):
    write_config(
        tmp_path,
        {
            "include": ["conf.d/core.json", "conf.d/tasks.yaml"],
            "modules": ["null"],
            "execs": [{"id": "top", "argv": ["/bin/true"]}],
            "tasks": [
                {
                    "id": "default",
                    "type": "routine",
                    "routine": [{"type": "task", "task-id": "inc"}],
                }
            ],
        },
        "palhm.conf",
    )
    write_config(
        tmp_path,
        {"modules": ["localfs"], "execs": [{"id": "core", "argv": ["/bin/false"]}]},
        "conf.d/core.json",
    )
    write_config(
        tmp_path,
        {
            "tasks": [
                {
                    "id": "inc",
                    "type": "routine",
                    "routine": [
                        {"type": "exec", "exec-id": "top"},
                        {"type": "exec", "exec-id": "core"},
                    ],
                }
            ]
        },
        "conf.d/tasks.yaml",
    )
    merged = _merged(tmp_path / "palhm.conf")
    assert [e["id"] for e in merged["execs"]] == ["top", "core"]
    assert [t["id"] for t in merged["tasks"]] == ["default", "inc"]
    assert merged["modules"] == ["null", "localfs"]
    assert "include" not in merged
    check = run_palhm("config", "check", config=tmp_path / "palhm.conf")
    assert check.returncode == 0, check.stderr
    assert "(3 files, 2 execs, 2 tasks)" in check.stdout


def test_config_show_is_the_merged_document(tmp_path):
    doc = {
        "vl": 2,
        "nb-workers": 4,
        "execs": [{"id": "e", "argv": ["/bin/echo", "ü"], "env": {"A": "1"}, "ec": "<2"}],
        "tasks": [{"id": "r", "type": "routine", "routine": [{"type": "exec", "exec-id": "e"}]}],
    }
    write_config(tmp_path, doc, "palhm.jsonc")
    assert _merged(tmp_path / "palhm.jsonc") == doc


def test_config_check_validates_without_running_anything(tmp_path):
    marker = tmp_path / "ran"
    config = write_config(
        tmp_path,
        {
            "tasks": [
                {
                    "id": "default",
                    "type": "routine",
                    "routine": [{"type": "exec-inline", "argv": ["/usr/bin/touch", str(marker)]}],
                }
            ]
        },
    )
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{config}: ok (1 file, 0 execs, 1 task)\n"
    assert not marker.exists()


def test_palhm_config_env_names_the_config(tmp_path):
    config = write_config(tmp_path, {"vl": 1})
    result = run_palhm("config", env={"PALHM_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["vl"] == 1


def test_duplicate_ids_across_includes_are_all_reported(tmp_path):
    write_config(
        tmp_path,
        {
            "include": ["more.json"],
            "execs": [{"id": "a", "argv": ["x"]}, {"id": "b", "argv": ["x"]}],
            "tasks": [{"id": "t", "type": "routine", "routine": []}],
        },
        "palhm.conf",
    )
    write_config(
        tmp_path,
        {
            "execs": [{"id": "b", "argv": ["y"]}, {"id": "a", "argv": ["y"]}],
            "tasks": [{"id": "t", "type": "routine", "routine": []}],
        },
        "more.json",
    )
    result = run_palhm("config", "check", config=tmp_path / "palhm.conf")
    top, more = tmp_path / "palhm.conf", tmp_path / "more.json"
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"palhm: {more}: execs[0].id: duplicate exec id 'b', first defined at {top}: execs[1]",
        f"palhm: {more}: execs[1].id: duplicate exec id 'a', first defined at {top}: execs[0]",
        f"palhm: {more}: tasks[0].id: duplicate task id 't', first defined at {top}: tasks[0]",
    ]


def test_include_through_a_symlink_loop_is_circular_not_a_crash(tmp_path):
    write_config(tmp_path, {"include": ["link.conf"]}, "palhm.conf")
    (tmp_path / "link.conf").symlink_to("palhm.conf")
    result = run_palhm("config", "check", config=tmp_path / "palhm.conf")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"palhm: {tmp_path}/palhm.conf: include[0]: circular include: "
        f"{tmp_path}/palhm.conf -> {tmp_path}/link.conf"
    ]


def test_a_diamond_include_is_a_repeated_include(tmp_path):
    write_config(tmp_path, {"include": ["a.json", "b.json"]}, "palhm.conf")
    write_config(tmp_path, {"include": ["common.json"]}, "a.json")
    write_config(tmp_path, {"include": ["common.json"]}, "b.json")
    write_config(tmp_path, {}, "common.json")
    result = run_palhm("config", "check", config=tmp_path / "palhm.conf")
    assert result.returncode == 2
    assert result.stderr == (
        f"palhm: {tmp_path}/b.json: include[0]: {tmp_path}/common.json is included twice "
        f"(already by {tmp_path}/a.json)\n"
    )


# -- palhm config schema -----------------------------------------------------------


def _schema(env=None) -> dict:
    result = run_palhm("config", "schema", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _undescribed(node, path="#") -> list[str]:
    """Every property declaration without a description. ``if`` schemas are
    conditions (``type`` is ``backup``), not declarations, and are skipped."""
    missing = []
    if isinstance(node, dict):
        for key, sub in node.items():
            if key == "if":
                continue
            if key == "properties":
                for name, prop in sub.items():
                    if not (isinstance(prop, dict) and prop.get("description")):
                        missing.append(f"{path}/properties/{name}")
            missing += _undescribed(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            missing += _undescribed(sub, f"{path}/{i}")
    return missing


def test_schema_is_draft_2020_12_and_every_property_is_described():
    from jsonschema import Draft202012Validator

    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert _undescribed(schema) == []
    # the walk does look: a schema where it would fail
    assert _undescribed({"properties": {"x": {"type": "string"}}}) == ["#/properties/x"]
    # what the installed plugins register is in it
    defs = schema["$defs"]
    assert {"task.backup", "task.routine", "backend.localfs", "backend.null"} <= set(defs)
    assert {"prefix.iso8601", "builtin.sigmask"} <= set(defs)


def test_schema_follows_the_plugins_loaded():
    pinned = _schema({"PALHM_DISABLE_PLUGIN_AUTOLOAD": "1", "PALHM_PLUGINS": "null"})
    assert "backend.null" in pinned["$defs"]
    assert "backend.localfs" not in pinned["$defs"]


GOOD = Path(__file__).resolve().parent / "configs" / "good"


def test_editors_validating_with_the_schema_accept_the_good_corpus():
    import yaml
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(_schema())
    files = [p for p in GOOD.rglob("*") if p.is_file() and "s3" not in p.parts]
    assert len(files) >= 10
    for path in files:
        if path.suffix in (".yaml", ".yml"):
            doc = yaml.safe_load(path.read_text()) or {}
        else:
            import json5

            doc = json5.loads(path.read_text())
        errors = [e.message for e in validator.iter_errors(doc)]
        assert errors == [], path


# -- palhm config init -------------------------------------------------------------


def test_config_init_writes_the_default_files_and_never_overwrites(tmp_path):
    target = tmp_path / "etc" / "palhm"
    result = run_palhm("config", "init", target)
    assert result.returncode == 0, result.stderr
    data = resources.files("palhm_core") / "data"
    for name in ("palhm.conf", "conf.d/core.json"):
        assert (target / name).read_bytes() == (data / name).read_bytes()
        assert f"wrote {target / name}" in result.stderr
    check = run_palhm("config", "check", config=target / "palhm.conf")
    assert check.returncode == 0, check.stderr

    (target / "palhm.conf").write_text('{ "vl": 1 } // mine\n')
    (target / "conf.d" / "core.json").unlink()
    again = run_palhm("config", "init", target)
    assert again.returncode == 0, again.stderr
    assert (target / "palhm.conf").read_text() == '{ "vl": 1 } // mine\n'
    assert f"{target / 'palhm.conf'} exists, left as it is" in again.stderr
    assert (target / "conf.d" / "core.json").read_bytes() == (
        data / "conf.d/core.json"
    ).read_bytes()


def test_config_init_quiet_and_unwritable(tmp_path):
    result = run_palhm("-q", "config", "init", tmp_path / "q")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    (tmp_path / "file").write_text("")
    bad = run_palhm("config", "init", tmp_path / "file" / "sub")
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert bad.stderr.startswith(f"palhm: cannot write {tmp_path}/file/sub/palhm.conf: ")


@pytest.mark.parametrize("action", ["show", "check", "schema"])
def test_config_actions_other_than_init_take_no_dir(action, tmp_path):
    result = run_palhm("config", action, tmp_path, config=write_config(tmp_path, {}))
    assert result.returncode == 2
    assert result.stderr == f"palhm: config {action} takes no DIR\n"
