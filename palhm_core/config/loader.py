"""Loading a config: files and includes, schema validation, merging, and
building every exec and task, so that every mistake is found before anything
runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from palhm_core.config.files import ConfigFile, read_tree
from palhm_core.config.place import Place
from palhm_core.config.schema import build_schema, validate
from palhm_core.errors import ConfigError
from palhm_core.execs import Exec, build_step_exec
from palhm_core.plugins import Plugins
from palhm_core.task import Task

DEFAULT_VL = 3
DEFAULT_NB_WORKERS = 0


class ConfigErrors(ConfigError):
    """Several config errors, one line each."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        ConfigError.__init__(self, "\n".join(lines))


@dataclass
class LoadContext:
    """What a task type's constructor may use while the config loads.

    :param plugins: the registries (``plugins.lookup(kind, name, place)``).
    :param execs: exec definitions by id.
    """

    plugins: Plugins
    execs: dict[str, Exec]

    def step_exec(self, step: dict[str, Any], place: Place) -> Exec:
        """The Exec of an ``exec``/``exec-append``/``exec-inline`` step."""
        return build_step_exec(step, place, self.execs)


@dataclass
class Config:
    files: list[ConfigFile]
    merged: dict[str, Any]
    vl: int = DEFAULT_VL
    nb_workers: int = DEFAULT_NB_WORKERS
    execs: dict[str, Exec] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)

    def task(self, task_id: str) -> Task:
        try:
            return self.tasks[task_id]
        except KeyError:
            known = ", ".join(self.tasks) or "none"
            raise ConfigError(
                f"no task {task_id!r} in the config; tasks: {known}", self.files[0].path
            ) from None


def load(path: str, plugins: Plugins) -> Config:
    """Read, validate, merge and build the config at ``path``.

    Mistakes are reported in stages, each stage reporting all it finds: file
    syntax and includes; the schema, for every file; duplicate ids across
    files and missing plugins; exec definitions; tasks (the first mistake of
    each); task pointers.
    """
    files = read_tree(path)
    schema = build_schema(plugins)
    _raise_if([line for f in files for line in validate(schema, f.doc, f.path)])
    errors: list[str] = []
    merged, origins = _merge(files, errors)
    conf = Config(files, merged)
    conf.vl = merged.get("vl", DEFAULT_VL)
    conf.nb_workers = merged.get("nb-workers", DEFAULT_NB_WORKERS)
    for name, place in origins["modules"]:
        _collect(errors, plugins.require_module, name, place)
    for exec_conf, place in origins["execs"]:
        ex = _collect(errors, Exec.from_config, exec_conf, place)
        if ex is not None:
            conf.execs[exec_conf["id"]] = ex
    _raise_if(errors)
    ctx = LoadContext(plugins, conf.execs)
    for task_conf, place in origins["tasks"]:
        cls = _collect(errors, plugins.lookup, "task type", task_conf["type"], place / "type")
        task = cls and _collect(errors, cls, task_conf, place, ctx)
        if task is not None:
            conf.tasks[task_conf["id"]] = task
    _raise_if(errors)
    _raise_if(_shared_roots(conf.tasks))
    _link(conf.tasks)
    return conf


def _collect(errors: list[str], func, *args):
    """``func(*args)``, or None with its ConfigError's lines added to ``errors``."""
    try:
        return func(*args)
    except ConfigErrors as e:
        errors.extend(e.lines)
    except ConfigError as e:
        errors.append(str(e))
    return None


def _shared_roots(tasks: dict[str, Task]) -> list[str]:
    """Two tasks whose backends keep copies in one place (equal locations, or
    one inside the other) would count, list and rotate each other's copies."""
    errors: list[str] = []
    seen: list[tuple[Task, tuple[str, ...]]] = []
    for task in tasks.values():
        backend = getattr(task, "backend", None)
        where = backend.location() if backend is not None else None
        if where is None:
            continue
        for other, other_where in seen:
            if where[: len(other_where)] == other_where[: len(where)]:
                errors.append(
                    str(
                        (task.place / "backend-param").error(
                            f"keeps copies where task {other.id!r} does "
                            f"({other.backend.describe()} and {backend.describe()} overlap): "
                            "give each task a root of its own"
                        )
                    )
                )
                break
        seen.append((task, where))
    return errors


def _raise_if(errors: list[str]) -> None:
    if errors:
        raise ConfigErrors(list(dict.fromkeys(errors)))


def _merge(files: list[ConfigFile], errors: list[str]):
    """Merge the documents in order: lists of execs and tasks join (an id
    defined twice is an error naming both places), modules join, and scalars
    of later files override earlier ones."""
    merged: dict[str, Any] = {"execs": [], "tasks": []}
    origins: dict[str, list] = {"execs": [], "tasks": [], "modules": []}
    seen: dict[tuple[str, str], Place] = {}
    for f in files:
        root = Place(f.path)
        for key, value in f.doc.items():
            if key in ("execs", "tasks"):
                for i, item in enumerate(value):
                    place = root / key / i
                    first = seen.setdefault((key, item["id"]), place)
                    if first is not place:
                        kind = key[:-1]
                        errors.append(
                            str(
                                (place / "id").error(
                                    f"duplicate {kind} id {item['id']!r}, first defined at {first}"
                                )
                            )
                        )
                        continue
                    merged[key].append(item)
                    origins[key].append((item, place))
            elif key == "modules":
                merged.setdefault("modules", [])
                for i, name in enumerate(value):
                    merged["modules"].append(name)
                    origins["modules"].append((name, root / key / i))
            elif key != "include":
                merged[key] = value
    return merged, origins


def _link(tasks: dict[str, Task]) -> None:
    """Resolve task pointers; refuse unknown ids and cycles."""
    known = ", ".join(tasks) or "none"
    _raise_if(
        [
            str(place.error(f"unknown task {target!r}; tasks: {known}"))
            for task in tasks.values()
            for target, place in task.pointers()
            if target not in tasks
        ]
    )
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(task_id: str, path: list[str]) -> None:
        state[task_id] = 1
        for target, place in tasks[task_id].pointers():
            if state.get(target) == 1:
                cycle = " -> ".join([*path[path.index(target) :], target])
                raise place.error(f"task pointer cycle: {cycle}")
            if state.get(target) != 2:
                visit(target, [*path, target])
        state[task_id] = 2

    for task_id in tasks:
        if task_id not in state:
            visit(task_id, [task_id])
    for task in tasks.values():
        task.link(tasks)
