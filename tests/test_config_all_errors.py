"""``palhm config check`` reports every mistake of a config in one run, each
as one ``FILE: place: problem`` line, across the stages of loading: the
schema, duplicate ids, plugins, exec definitions, backend parameters,
groups, objects, routine steps, task pointers. A fixed config then passes."""

from __future__ import annotations

from conftest import run_palhm, write_config

#: Plugins pinned, so the lines do not depend on what else is installed.
PINNED = {"PALHM_DISABLE_PLUGIN_AUTOLOAD": "1", "PALHM_PLUGINS": "localfs,null"}

INCLUDED = """{
  "execs": [
    {"id": "zip", "argv": ["gzip"], "ec": "<2 or so"},
    {"id": "cat", "argv": ["cat"]}
  ]
}
"""

MAIN = """{
  "include": ["inc.jsonc"],
  "vl": "loud",
  "modules": ["nosuch"],
  "execs": [
    {"id": "cat", "argv": ["cat"]},
    {"id": "tar", "argv": ["tar"], "ec": 5}
  ],
  "tasks": [
    {
      "id": "b", "type": "backup", "backend": "localfs",
      "backend-param": {"root": "ROOT", "dmode": "999", "nb-copy-limit": "-3"},
      "object-groups": [{"id": "g", "depends": ["nope"]}],
      "objects": [
        {"path": "../x", "pipeline": [{"type": "exec", "exec-id": "cat"}]},
        {"path": "y", "pipeline": [{"type": "exec", "exec-id": "zz"},
                                   {"type": "exec", "exec-id": "tar"}]}
      ]
    },
    {"id": "r", "type": "routine", "routine": [
      {"type": "task", "task-id": "ghost"},
      {"type": "task", "task-id": "b"},
      {"type": "builtin", "builtin-id": "sigmask", "param": [{"action": "hide", "sig": ["TERM"]}]},
      {"type": "exec", "exec-id": "missing"}
    ]},
    {"id": "s", "type": "routine", "colour": "red", "routine": [{"type": "task", "task-id": "s"}]}
  ]
}
"""


def test_every_mistake_in_one_run(tmp_path):
    write_config(tmp_path, INCLUDED, "inc.jsonc")
    config = write_config(tmp_path, MAIN.replace("ROOT", str(tmp_path / "root")), "main.jsonc")
    inc = tmp_path / "inc.jsonc"
    result = run_palhm("config", "check", config=config, env=PINNED)
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = [line.removeprefix("palhm: ") for line in result.stderr.splitlines()]
    expected = [
        # the schema, file by file
        f'{config}: vl: expected integer, got "loud"',
        f"{config}: execs[1].ec: expected string, got 5",
        f"{config}: tasks[2].colour: unknown key (expected one of: id, notify, routine, "
        "timeout, type)",
        # merging, plugins, exec definitions
        f"{inc}: execs[1].id: duplicate exec id 'cat', first defined at {config}: execs[0]",
        f"{config}: modules[0]: plugin 'nosuch' is not installed",
        f"{inc}: execs[0].ec: bad exit code range '<2 or so'",
        # one backup task: backend parameters, limits, groups, objects
        f"{config}: tasks[0].backend-param.dmode: expected an octal mode",
        f"{config}: tasks[0].backend-param.nb-copy-limit: must not be negative: '-3'",
        f"{config}: tasks[0].object-groups[0].depends[0]: unknown group 'nope'",
        f"{config}: tasks[0].objects[0].path: '..' in path '../x'",
        f"{config}: tasks[0].objects[1].pipeline[0].exec-id: unknown exec 'zz'",
        # a routine: its builtin and its exec step
        f"{config}: tasks[1].routine[2].param[0].action: ",
        f"{config}: tasks[1].routine[3].exec-id: unknown exec 'missing'",
        # task pointers, also of a task the schema refused
        f"{config}: tasks[1].routine[0].task-id: unknown task 'ghost'; tasks: s, b, r",
        f"{config}: tasks[2].routine[0].task-id: task pointer cycle: s -> s",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)
    # The pipeline step naming the exec the schema refused adds no line of its
    # own, nor do the pointers to tasks that are themselves wrong.
    assert not any("exec-id: unknown exec 'tar'" in line for line in lines), lines
    assert not any("unknown task 'b'" in line for line in lines), lines
    assert len(lines) == len(expected), lines


def test_a_fixed_config_passes(tmp_path):
    write_config(tmp_path, INCLUDED.replace("<2 or so", "<2"), "inc.jsonc")
    fixed = (
        MAIN.replace("ROOT", str(tmp_path / "root"))
        .replace('"vl": "loud"', '"vl": 3')
        .replace('"modules": ["nosuch"],', "")
        .replace('{"id": "cat", "argv": ["cat"]},\n    {"id": "tar"', '{"id": "tar"')
        .replace('"ec": 5', '"ec": "5"')
        .replace('"dmode": "999", "nb-copy-limit": "-3"', '"dmode": "750"')
        .replace('"depends": ["nope"]', '"depends": []')
        .replace('"../x"', '"x"')
        .replace('"zz"', '"zip"')
        .replace('"hide"', '"block"')
        .replace('"missing"', '"cat"')
        .replace('{"type": "task", "task-id": "ghost"},', "")
        .replace('"colour": "red", ', "")
        .replace('"task-id": "s"}', '"task-id": "r"}')
    )
    config = write_config(tmp_path, fixed, "main.jsonc")
    result = run_palhm("config", "check", config=config, env=PINNED)
    assert result.returncode == 0, result.stderr
