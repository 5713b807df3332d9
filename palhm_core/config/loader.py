"""Loading a config: files and includes, schema validation, merging, and
building every exec and task, so that every mistake is found before anything
runs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from palhm_core.config.files import ConfigFile, read_tree
from palhm_core.config.place import Place, format_path
from palhm_core.config.schema import build_schema, problems
from palhm_core.errors import ConfigError
from palhm_core.execs import Exec, build_step_exec
from palhm_core.plugins import Plugins
from palhm_core.task import Task

if TYPE_CHECKING:
    from palhm_core.notify import Subscription
    from palhm_core.notify.bootreport import BootReport

DEFAULT_VL = 3
DEFAULT_NB_WORKERS = 0


class ConfigErrors(ConfigError):
    """Several config errors, one line each."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        ConfigError.__init__(self, "\n".join(lines))


class Unbuildable(ConfigError):
    """Something refers to an exec whose definition is already reported as
    wrong: no error of its own (the first one says it)."""

    def __init__(self):
        ConfigError.__init__(self, "")


@dataclass
class LoadContext:
    """What a task type's constructor may use while the config loads.

    :param plugins: the registries (``plugins.lookup(kind, name, place)``).
    :param execs: exec definitions by id.
    :param errors: the config's mistakes found so far, one line each; add to
        it with :meth:`collect` to report several mistakes of one task.
    """

    plugins: Plugins
    execs: dict[str, Exec]
    errors: list[str] = field(default_factory=list)
    #: Ids of exec definitions that are wrong (and already reported).
    broken_execs: set[str] = field(default_factory=set)

    def step_exec(self, step: dict[str, Any], place: Place) -> Exec:
        """The Exec of an ``exec``/``exec-append``/``exec-inline`` step."""
        if step.get("exec-id") in self.broken_execs:
            raise Unbuildable()
        return build_step_exec(step, place, self.execs)

    def collect(self, func, *args):
        """``func(*args)``; if it raises a config error, its lines join
        :attr:`errors` and the result is None, so that loading goes on and
        finds the next mistake too."""
        return _collect(self.errors, func, *args)


@dataclass
class Config:
    files: list[ConfigFile]
    merged: dict[str, Any]
    vl: int = DEFAULT_VL
    nb_workers: int = DEFAULT_NB_WORKERS
    execs: dict[str, Exec] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    #: The top-level ``notify`` list, for the run's task.
    notify: list[Subscription] = field(default_factory=list)
    #: Each task's own ``notify`` list, by task id.
    task_notify: dict[str, list[Subscription]] = field(default_factory=dict)
    #: The ``boot-report`` key, built; None without one.
    boot_report: BootReport | None = None

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

    Every mistake is reported in one go (a :class:`ConfigErrors`, one line
    each), except that a file that cannot be read or parsed stops loading at
    once. A part the schema refuses (an exec, a task, a top-level key) is not
    built, and what refers to it is not reported again; every other part is
    built and checked: duplicate ids, missing plugins, exec definitions,
    tasks (backend parameters, groups, objects), notifiers, the boot report,
    task pointers and roots shared by two tasks.
    """
    files = read_tree(path)
    errors: list[str] = []
    #: (file, parts) of every value the schema refuses
    refused: set[tuple[str, tuple]] = set()
    schema = build_schema(plugins)
    for f in files:
        for parts, line, unusable in problems(schema, f.doc, f.path):
            errors.append(line)
            if unusable:
                refused.add((f.path, parts))
    merged, origins = _merge(files, errors, refused)
    conf = Config(files, merged)
    conf.vl = merged.get("vl", DEFAULT_VL)
    conf.nb_workers = merged.get("nb-workers", DEFAULT_NB_WORKERS)
    for name, place in origins["modules"]:
        _collect(errors, plugins.require_module, name, place)
    _configure_plugins(plugins, merged.get("plugins", {}), origins["plugins"], files, errors)
    ctx = LoadContext(plugins, conf.execs, errors)
    _build_execs(conf, origins["execs"], ctx)
    _build_notify(conf, origins, plugins, errors)
    broken_tasks, partial = _build_tasks(conf, origins["tasks"], ctx, refused)
    errors.extend(_shared_roots(conf.tasks))
    errors.extend(_link(conf.tasks, broken_tasks, partial))
    _raise_if(errors)
    for task in conf.tasks.values():
        task.link(conf.tasks)
    return conf


def _build_execs(conf: Config, origins: list, ctx: LoadContext) -> None:
    """The exec definitions the schema accepted; the ids of the others are
    noted, so that steps naming them are not reported again."""
    for exec_conf, place in origins:
        ex = _collect(ctx.errors, Exec.from_config, exec_conf, place) if place.ok else None
        if ex is not None:
            conf.execs[exec_conf["id"]] = ex
        elif isinstance(exec_conf, dict) and isinstance(exec_conf.get("id"), str):
            ctx.broken_execs.add(exec_conf["id"])


def _build_notify(conf: Config, origins: dict, plugins: Plugins, errors: list[str]) -> None:
    """The top-level ``notify`` list and the boot report."""
    from palhm_core.notify import subscribe
    from palhm_core.notify.bootreport import BootReport

    for params, place in origins["notify"]:
        sub = _collect(errors, subscribe, params, place, plugins) if place.ok else None
        if sub is not None:
            conf.notify.append(sub)
    if "boot-report" in origins:
        report, place = origins["boot-report"]
        conf.boot_report = _collect(errors, BootReport, report, place, plugins)


def _build_tasks(conf: Config, origins: list, ctx: LoadContext, refused):
    """Every task the schema accepted, and its own ``notify`` list; returns
    the ids of the tasks that could not be built, and the tasks the schema
    refused that could be built anyway (only for the mistakes it did not
    name: their pointers are checked, they never run)."""
    from palhm_core.notify import subscribe

    errors = ctx.errors
    broken: set[str] = set()
    partial: list[Task] = []
    for task_conf, place in origins:
        task = None
        if place.ok:
            cls = _collect(
                errors, ctx.plugins.lookup, "task type", task_conf["type"], place / "type"
            )
            before = len(errors)
            task = cls and _collect(errors, cls, task_conf, place, ctx)
            if len(errors) > before:  # the task reported mistakes and went on
                task = None
        else:
            lines, built = _refused_task_errors(task_conf, place, ctx, refused)
            errors.extend(lines)
            if built is not None:
                partial.append(built)
        if task is None:
            if isinstance(task_conf, dict) and isinstance(task_conf.get("id"), str):
                broken.add(task_conf["id"])
            continue
        conf.tasks[task_conf["id"]] = task
        subs = [
            _collect(errors, subscribe, params, place / "notify" / i, ctx.plugins)
            for i, params in enumerate(task_conf.get("notify", ()))
        ]
        if subs:
            conf.task_notify[task.id] = [sub for sub in subs if sub is not None]
    return broken, partial


def _refused_task_errors(task_conf, place: Place, ctx: LoadContext, refused):
    """The mistakes of a task the schema refused that the schema did not
    report, and the task if it could be built for its pointers to be
    checked: the task is built as far as it goes, and what it says about the
    places the schema already named (or anything under them) is left out."""
    if not isinstance(task_conf, dict) or not isinstance(task_conf.get("type"), str):
        return [], None
    named = [f"{file}: {format_path(parts)}" for file, parts in refused if parts]
    found: list[str] = []
    quiet = replace(ctx, errors=found)
    task = None
    try:
        cls = ctx.plugins.lookup("task type", task_conf["type"], place / "type")
        task = cls(task_conf, place, quiet)
    except ConfigErrors as e:
        found.extend(e.lines)
    except ConfigError as e:
        found.append(str(e))
    except Exception:  # a value the schema refused, where the task expected another
        pass
    lines = [
        line
        for line in found
        if line
        and not any(
            line.startswith(p) and line[len(p) : len(p) + 1] in (":", ".", "[") for p in named
        )
    ]
    return lines, task


def _configure_plugins(plugins, settings: dict, places: dict, files, errors: list[str]) -> None:
    """Give every plugin that takes settings its ``plugins.NAME`` object
    (None without one), unless the schema refused it."""
    for name in plugins.configurable():
        place = places.get(name) or Place(files[0].path) / "plugins" / name
        if getattr(place, "ok", True):
            _collect(errors, plugins.configure, name, settings.get(name), place)


def _collect(errors: list[str], func, *args):
    """``func(*args)``, or None with its ConfigError's lines added to ``errors``."""
    try:
        return func(*args)
    except Unbuildable:
        pass
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
        backend = task.storage()
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


class _Origin(Place):
    """A place, and whether the schema accepted the value there (``ok``)."""

    __slots__ = ("ok",)

    def __init__(self, place: Place, refused: set[tuple[str, tuple]]):
        super().__init__(place.file, place.parts)
        self.ok = not any(
            file == place.file and parts[: len(place.parts)] == place.parts
            for file, parts in refused
        )


def _merge(files: list[ConfigFile], errors: list[str], refused: set[tuple[str, tuple]]):
    """Merge the documents in order: lists of execs and tasks join (an id
    defined twice is an error naming both places), modules join, a plugin's
    settings replace its settings of an earlier file, and scalars of later
    files override earlier ones. A scalar the schema refused is
    left out; execs and tasks are kept with ``ok`` False on their place."""
    merged: dict[str, Any] = {"execs": [], "tasks": []}
    origins: dict[str, Any] = {"execs": [], "tasks": [], "modules": [], "plugins": {}, "notify": []}
    seen: dict[tuple[str, str], Place] = {}
    for f in files:
        root = Place(f.path)
        for key, value in f.doc.items():
            if key in ("execs", "tasks") and isinstance(value, list):
                for i, item in enumerate(value):
                    place = _Origin(root / key / i, refused)
                    if _first_of_id(key, item, place, seen, errors):
                        merged[key].append(item)
                        origins[key].append((item, place))
            elif key == "plugins" and isinstance(value, dict):
                for name, settings in value.items():  # a later file's replace an earlier's
                    merged.setdefault("plugins", {})[name] = settings
                    origins["plugins"][name] = _Origin(root / key / name, refused)
            elif key == "notify" and isinstance(value, list):  # each entry on its own
                merged[key] = value
                origins[key] = [(v, _Origin(root / key / i, refused)) for i, v in enumerate(value)]
            elif not _Origin(root / key, refused).ok:
                continue
            elif key == "modules":
                merged.setdefault("modules", [])
                for i, name in enumerate(value):
                    merged["modules"].append(name)
                    origins["modules"].append((name, root / key / i))
            elif key == "boot-report" and "boot-report" in origins:
                merged[key] = _merge_boot_reports(merged[key], value, root / key, errors)
                origins[key] = (merged[key], root / key)
            elif key != "include":
                merged[key] = value
                if key == "boot-report":
                    origins[key] = (value, root / key)
    return merged, origins


def _first_of_id(key: str, item, place: Place, seen: dict, errors: list[str]) -> bool:
    """Whether ``item`` of ``key`` (execs or tasks) is the first with its id;
    if not, say where the first one is."""
    item_id = item.get("id") if isinstance(item, dict) else None
    if not isinstance(item_id, str):
        return True
    first = seen.setdefault((key, item_id), place)
    if first is not place:
        problem = f"duplicate {key[:-1]} id {item_id!r}, first defined at {first}"
        errors.append(str((place / "id").error(problem)))
    return first is place


def _merge_boot_reports(earlier: dict, later: dict, place: Place, errors: list[str]) -> dict:
    """Two files' ``boot-report``, as the original PALHM merged them: the
    recipients join, the later file's other keys win, and only one of them
    may choose the ``mua``."""
    if "mua" in earlier and "mua" in later:
        errors.append(str((place / "mua").error("the mua is already chosen by an earlier file")))
    return {**earlier, **later, "mail-to": [*earlier["mail-to"], *later["mail-to"]]}


def _link(tasks: dict[str, Task], broken: set[str], partial: list[Task]) -> list[str]:
    """The mistakes of task pointers: unknown ids and cycles (pointers to
    tasks already reported as wrong are left alone); ``partial`` are tasks
    the schema refused, whose pointers are checked for unknown ids too."""
    known = ", ".join([*tasks, *sorted(broken)]) or "none"
    errors = [
        str(place.error(f"unknown task {target!r}; tasks: {known}"))
        for task in [*tasks.values(), *partial]
        for target, place in task.pointers()
        if isinstance(target, str) and target not in tasks and target not in broken
    ]
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(task_id: str, path: list[str]) -> None:
        state[task_id] = 1
        for target, place in tasks[task_id].pointers():
            if target not in tasks:
                continue
            if state.get(target) == 1:
                cycle = " -> ".join([*path[path.index(target) :], target])
                errors.append(str(place.error(f"task pointer cycle: {cycle}")))
            elif state.get(target) != 2:
                visit(target, [*path, target])
        state[task_id] = 2

    for task_id in tasks:
        if task_id not in state:
            visit(task_id, [task_id])
    return errors
