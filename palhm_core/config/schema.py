"""The one JSON Schema every config file is validated against.

The core's own keys are described here; each registered task type, backend,
prefix generator and builtin contributes the schema of its parameters, so the
schema always matches the plugins installed. Every file of an include tree is
validated on its own, and every error is reported as ``FILE: path: problem``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from palhm_core.config.place import format_path
from palhm_core.config.values import DECIMAL_TYPES
from palhm_core.notify import COMMON_KEYS as NOTIFY_KEYS
from palhm_core.notify.bootreport import SCHEMA as BOOT_REPORT_SCHEMA
from palhm_core.redact import is_secret_name
from palhm_core.retention import DEFAULT_POLICY
from palhm_core.task import TIMEOUT_SCHEMA

SCHEMA_ID = "https://palhm.invalid/schema/config.json"
#: The prefix generator of a ``prefix`` object without ``type``.
DEFAULT_PREFIX = "iso8601"

EXEC_KEYS = {
    "argv": {
        "type": "array",
        "items": {"type": "string"},
        "minItems": 1,
        "description": "The argument vector; argv[0] is the program, run without a shell.",
    },
    "env": {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "Variables added to the environment PALHM inherited.",
    },
    "ec": {
        "type": "string",
        "description": 'Accepted exit codes: "==0" (default), "<2", "<=2", ">1", ">=0" (any), '
        '"0-1" (inclusive range) or a plain number.',
    },
    "vl-stderr": {
        "type": "integer",
        "minimum": -100,
        "maximum": 100,
        "description": "The process's stderr is passed on to PALHM's stderr, line by line, when "
        "the verbosity is at least this; else only its last lines are kept, to follow an error "
        "line. Default 1.",
    },
    "vl-stdout": {
        "type": "integer",
        "minimum": -100,
        "maximum": 100,
        "description": "The same for stdout, where stdout is not part of a pipeline. Default 3.",
    },
    "timeout": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 31_536_000,
        "description": "Seconds the command may run (at most a year); in a pipeline, counted "
        "from the pipeline's start, and for the last command until its output ends. Past "
        "them its process groups get SIGTERM, then SIGKILL 2 s later, and it fails. "
        "Default: no limit.",
    },
}

STEP_SCHEMAS = {
    "exec": {
        "description": "Run an exec definition by id.",
        "properties": {
            "exec-id": {"type": "string", "description": "The id of an exec definition."},
            "vl-stderr": EXEC_KEYS["vl-stderr"],
            "vl-stdout": EXEC_KEYS["vl-stdout"],
            "timeout": EXEC_KEYS["timeout"],
        },
        "required": ["exec-id"],
    },
    "exec-append": {
        "description": "Run an exec definition with arguments appended and variables added.",
        "properties": {
            "exec-id": {"type": "string", "description": "The id of an exec definition."},
            "argv": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Arguments appended to the definition's argv.",
            },
            "env": EXEC_KEYS["env"],
            "vl-stderr": EXEC_KEYS["vl-stderr"],
            "vl-stdout": EXEC_KEYS["vl-stdout"],
            "timeout": EXEC_KEYS["timeout"],
        },
        "required": ["exec-id"],
    },
    "exec-inline": {
        "description": "Run a complete exec definition written in place.",
        "properties": EXEC_KEYS,
        "required": ["argv"],
    },
    "task": {
        "description": "Run another task (routine tasks only).",
        "properties": {"task-id": {"type": "string", "description": "The id of the task to run."}},
        "required": ["task-id"],
    },
    "builtin": {
        "description": "Call a builtin function (routine tasks only).",
        "properties": {
            "builtin-id": {"type": "string", "description": "The builtin's name (sigmask)."},
            "param": {"description": "The builtin's parameter."},
        },
        "required": ["builtin-id"],
    },
}

COMMON_BACKEND_KEYS = {
    "nb-copy-limit": {
        "type": DECIMAL_TYPES,
        "description": "Keep at most this many complete copies; the oldest go first. A number "
        'or a decimal string; "Infinity" (default) for no limit.',
    },
    "root-size-limit": {
        "type": DECIMAL_TYPES,
        "description": "Keep the complete copies' total size at most this many bytes, deleting "
        'the oldest first (never the copy just made). "Infinity" (default) for no limit.',
    },
    "prefix": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "The prefix generator. Default iso8601."}
        },
        "description": "How copies are named: the prefix generator and its parameters.",
    },
    "keep": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "The retention policy. Default calendar."}
        },
        "description": "Which copies rotation keeps: the retention policy and its rules. "
        "Without it every copy is kept, up to nb-copy-limit and root-size-limit.",
    },
}
#: The keys the core gives every task beside its type's own (see build_schema).
CORE_TASK_KEYS = ("id", "type", "timeout", "notify")


def _object(props: dict, required=(), description: str | None = None, extra=()) -> dict:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": dict(props),
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    for key in extra:
        schema["properties"][key] = {}
    return schema


def _select(key: str, choices: dict[str, dict]) -> list[dict]:
    """``if key == name then schema`` for each choice."""
    return [
        {
            "if": {"properties": {key: {"const": name}}, "required": [key]},
            "then": {"$ref": ref},
        }
        for name, ref in choices.items()
    ]


def _steps(types: list[str]) -> dict:
    return {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": types, "description": "The kind of step."}},
            "allOf": _select("type", {t: f"#/$defs/step.{t}" for t in types}),
        },
    }


def build_schema(plugins) -> dict[str, Any]:
    """The config schema for the plugins loaded."""
    regs = plugins.registries
    defs: dict[str, Any] = {}
    _step_defs(defs)
    _typed_defs(defs, "prefix", regs["prefix generator"], "The prefix generator.")
    defs["prefix"] = _choice(COMMON_BACKEND_KEYS["prefix"], "prefix", regs["prefix generator"])
    _typed_defs(defs, "keep", regs["retention policy"], "The retention policy.")
    defs["keep"] = _choice(COMMON_BACKEND_KEYS["keep"], "keep", regs["retention policy"])
    _backend_defs(defs, regs["backend"])
    _builtin_defs(defs, regs["builtin"])
    _typed_defs(defs, "notifier", regs["notifier"], "The notifier.", NOTIFY_KEYS)
    defs["notify"] = _notify_def(regs["notifier"])
    _task_defs(defs, regs["task type"], regs["backend"])
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "PALHM configuration",
        "type": "object",
        "additionalProperties": False,
        "properties": _top_keys(plugins, defs),
        "$defs": defs,
    }
    schema = copy.deepcopy(schema)  # plugins' own dicts stay as they are
    _describe_refs(schema, schema["$defs"])
    return schema


def _step_defs(defs: dict[str, Any]) -> None:
    """The steps of pipelines and routines, and exec definitions."""
    for name, step in STEP_SCHEMAS.items():
        defs[f"step.{name}"] = _object(
            {"type": {"const": name, "description": "The kind of step."}, **step["properties"]},
            step["required"],
            step["description"],
        )
    defs["exec-definition"] = _object(
        {"id": {"type": "string", "description": "The name steps refer to."}, **EXEC_KEYS},
        ["id", "argv"],
        "A command and how to run it.",
    )
    defs["pipeline"] = _steps(["exec", "exec-append", "exec-inline"]) | {
        "minItems": 1,
        "description": "Commands joined by pipes; the last one's output is the object.",
    }
    defs["routine"] = _steps(list(STEP_SCHEMAS)) | {"description": "Steps run in order."}


def _typed_defs(defs: dict[str, Any], kind: str, registry, what: str, core_keys=None) -> None:
    """``KIND.NAME`` for each class of a registry whose objects name it in
    ``type``: the class's parameters, and the keys the core adds."""
    for name, reg in registry.items():
        defs[f"{kind}.{name}"] = _object(
            {
                "type": {"const": name, "description": what},
                **(core_keys or {}),
                **reg.schema.get("properties", {}),
            },
            reg.schema.get("required", ()),
            reg.description,
        )


def _choice(base: dict, kind: str, registry) -> dict[str, Any]:
    """An object whose ``type`` picks ``KIND.NAME``; without ``type``, the
    core's default (``iso8601``, ``calendar``) when installed."""
    schema = dict(base)
    schema["allOf"] = _select("type", {n: f"#/$defs/{kind}.{n}" for n in registry})
    default = {"prefix": DEFAULT_PREFIX, "keep": DEFAULT_POLICY}[kind]
    if default in registry:
        schema["allOf"].append(
            {
                "if": {"not": {"required": ["type"]}},
                "then": {"$ref": f"#/$defs/{kind}.{default}"},
            }
        )
    return schema


def _backend_defs(defs: dict[str, Any], backends) -> None:
    """``backend.NAME``: a backend's parameters and the keys the core adds."""
    for name, reg in backends.items():
        props = {
            **COMMON_BACKEND_KEYS,
            "prefix": {"$ref": "#/$defs/prefix"},
            "keep": {"$ref": "#/$defs/keep"},
        }
        props.update(reg.schema.get("properties", {}))
        defs[f"backend.{name}"] = _object(
            props,
            reg.schema.get("required", ()),
            f"Parameters of the {name} backend: {reg.description}".rstrip(": "),
        )


def _builtin_defs(defs: dict[str, Any], builtins) -> None:
    """``builtin.NAME`` (the ``param`` of a builtin step) and the rule that
    picks it by ``builtin-id``."""
    for name, reg in builtins.items():
        defs[f"builtin.{name}"] = {"description": reg.description, **reg.schema}
    defs["step.builtin"]["allOf"] = [
        {
            "if": {"properties": {"builtin-id": {"const": name}}, "required": ["builtin-id"]},
            "then": {"properties": {"param": {"$ref": f"#/$defs/builtin.{name}"}}},
        }
        for name in builtins
    ]


def _notify_def(notifiers) -> dict[str, Any]:
    return {
        "type": "array",
        "description": "Notifiers: each sends the events it is on (start, success, failure).",
        "items": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": list(notifiers), "description": "The notifier."}},
            "allOf": _select("type", {n: f"#/$defs/notifier.{n}" for n in notifiers}),
        },
    }


def _task_defs(defs: dict[str, Any], task_types, backends) -> None:
    """``task.NAME``: a task type's keys and the ones the core gives every
    task; a task type with ``backend-param`` gets each backend's parameters."""
    for name, reg in task_types.items():
        props = {
            "id": {"type": "string", "description": "The task's name, as `palhm run` takes it."},
            "type": {"const": name, "description": "The task type."},
            "timeout": TIMEOUT_SCHEMA,
            "notify": {
                "$ref": "#/$defs/notify",
                "description": "Notifiers told of this task's start, success or failure, "
                "each time it runs.",
            },
            **reg.schema.get("properties", {}),
        }
        defs[f"task.{name}"] = _object(
            props, ["id", "type", *reg.schema.get("required", ())], reg.description
        )
        if "backend-param" in props:  # a task storing copies: parameters per backend
            defs[f"task.{name}"]["allOf"] = _backend_params(backends)


def _backend_params(backends) -> list[dict[str, Any]]:
    """For each backend, its ``backend-param`` schema; a backend with
    required parameters needs the object itself."""
    needs = {b for b, breg in backends.items() if breg.schema.get("required")}
    return [
        {
            "if": {"properties": {"backend": {"const": b}}, "required": ["backend"]},
            "then": {
                "properties": {"backend-param": {"$ref": f"#/$defs/backend.{b}"}},
                **({"required": ["backend-param"]} if b in needs else {}),
            },
        }
        for b in backends
    ]


def _task_item(task_types) -> dict[str, Any]:
    """A task: its ``type`` picks ``task.NAME``."""
    return {
        "type": "object",
        "required": ["id", "type"],
        "properties": {
            "id": {"type": "string", "description": "The task's name."},
            "type": {"type": "string", "description": "The task type: backup, routine, ..."},
        },
        "allOf": _select("type", {n: f"#/$defs/task.{n}" for n in task_types}),
    }


def _top_keys(plugins, defs: dict[str, Any]) -> dict[str, Any]:
    """The keys of a config file."""
    return {
        "include": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Config files merged into this one, in order; relative paths "
            "resolve from this file's directory.",
        },
        "modules": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Plugins that must be installed (aws is an alias for s3).",
        },
        "nb-workers": {
            "type": "integer",
            "minimum": -1024,
            "maximum": 1024,
            "description": "Backup objects built at once: 0 = the CPUs this process may use, "
            "negative = Python's default, positive = that many (at most 1024). Default 0.",
        },
        "vl": {
            "type": "integer",
            "minimum": -100,
            "maximum": 100,
            "description": "Verbosity: 0 critical, 1 error, 2 warning, 3 info (default), "
            "4 and more debug.",
        },
        "execs": {
            "type": "array",
            "items": {"$ref": "#/$defs/exec-definition"},
            "description": "Exec definitions that steps refer to by id.",
        },
        "tasks": {
            "type": "array",
            "items": _task_item(plugins.registries["task type"]),
            "description": "The tasks.",
        },
        "plugins": _plugin_settings(plugins, defs),
        "notify": {
            "$ref": "#/$defs/notify",
            "description": "Notifiers told of the run: the start, success or failure of "
            "the task palhm run names.",
        },
        "boot-report": BOOT_REPORT_SCHEMA,
    }


def _plugin_settings(plugins, defs: dict[str, Any]) -> dict[str, Any]:
    """The ``plugins`` object: each plugin's settings, by plugin name, valid
    against the schema it declares (``palhm_settings_schema``)."""
    for name, settings in plugins.settings_schemas.items():
        defs[f"plugin.{name}"] = _object(
            settings.get("properties", {}),
            settings.get("required", ()),
            settings.get("description", f"Settings of the plugin {name}."),
        )
    return _object(
        {name: {"$ref": f"#/$defs/plugin.{name}"} for name in plugins.settings_schemas},
        description="Settings of plugins, by plugin name (as palhm plugins lists them); each "
        "plugin declares the settings it takes.",
    )


def _describe_refs(node: Any, defs: dict[str, Any]) -> None:
    """Give every property that is only a ``$ref`` the description of what it
    refers to, so that editors show it where the key is written."""
    if isinstance(node, dict):
        for key, sub in node.items():
            if key == "properties" and isinstance(sub, dict):
                for prop in sub.values():
                    ref = prop.get("$ref", "") if isinstance(prop, dict) else ""
                    if ref.startswith("#/$defs/") and "description" not in prop:
                        target = defs.get(ref[len("#/$defs/") :], {})
                        if "description" in target:
                            prop["description"] = target["description"]
            _describe_refs(sub, defs)
    elif isinstance(node, list):
        for sub in node:
            _describe_refs(sub, defs)


def validate(schema: dict, doc: Any, file: str) -> list[str]:
    """Every problem of ``doc`` as ``FILE: path: problem`` lines, in the
    order the places appear in the file."""
    return [line for _, line, _ in problems(schema, doc, file)]


def problems(schema: dict, doc: Any, file: str) -> list[tuple[tuple, str, bool]]:
    """Every problem of ``doc`` as (JSON path parts, ``FILE: path: problem``,
    whether the value there is unusable), in the order the places appear in
    the file. An unknown key leaves the object that holds it usable. A
    document that passed with this schema before has none
    (:mod:`palhm_core.cache`)."""
    from palhm_core import cache

    check = cache.key("config", schema, doc)
    if cache.passed(check):
        return []
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    lines: dict[str, tuple[tuple, bool]] = {}
    for err in validator.iter_errors(doc):
        unusable = err.validator != "additionalProperties"
        for parts, line in _describe(err, file):
            lines.setdefault(line, (parts, unusable))
    found = [(parts, line, unusable) for line, (parts, unusable) in lines.items()]
    if not found:
        cache.remember(check)
    return sorted(found, key=lambda f: _position(doc, f[0]))


def _position(doc: Any, parts: tuple) -> tuple[int, ...]:
    """Where ``parts`` is in ``doc``, as a sort key: the index of each key
    among its object's keys, or of each item in its array."""
    key = []
    node = doc
    for part in parts:
        if isinstance(node, dict):
            names = list(node)
            key.append(names.index(part) if part in node else len(names))
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int):
            key.append(part)
            node = node[part] if 0 <= part < len(node) else None
        else:
            key.append(0)
            node = None
    return tuple(key)


def _describe(err, file: str) -> list[tuple[tuple, str]]:
    if err.validator in ("allOf", "anyOf", "oneOf") and err.context:
        return [found for sub in err.context for found in _describe(sub, file)]
    parts = tuple(err.absolute_path)

    def at(where: tuple, problem: str) -> tuple[tuple, str]:
        return where, f"{file}: {format_path(where) or '(top level)'}: {problem}"

    # The value of an env variable or a secret key is never echoed: its type is.
    secret = any(p == "env" or (isinstance(p, str) and is_secret_name(p)) for p in parts)

    def show(value: Any) -> str:
        return _kind(value) if secret else _show(value)

    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        return [at((*parts, k), "required") for k in missing]
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        hint = ", ".join(sorted(allowed)) or "none"
        return [at((*parts, k), f"unknown key (expected one of: {hint})") for k in extra]
    value = err.validator_value
    if err.validator == "type":
        expected = " or ".join(value) if isinstance(value, list) else value
        problem = f"expected {expected}, got {show(err.instance)}"
    elif err.validator in ("const", "enum"):
        choices = [value] if err.validator == "const" else value
        problem = f"{show(err.instance)} is not one of: {', '.join(map(str, choices))}"
    elif err.validator == "pattern":
        problem = f"{show(err.instance)} is not allowed: {err.schema.get('description', value)}"
    elif err.validator == "minItems":
        problem = "must not be empty" if value == 1 else f"needs at least {value} items"
    elif err.validator == "minimum":
        problem = f"must be at least {value}, got {show(err.instance)}"
    elif err.validator == "maximum":
        problem = f"must be at most {value}, got {show(err.instance)}"
    elif secret:
        problem = f"the value does not pass the {err.validator!r} check"
    else:
        problem = err.message.replace("\n", " ")
    return [at(parts, problem)]


def _kind(value: Any) -> str:
    """What a value is, without showing it: ``a number``, ``a string``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _show(value: Any) -> str:
    """A value as the config file would write it, shortened."""
    import datetime

    if isinstance(value, (datetime.date, datetime.datetime)):  # YAML reads 2026-01-01 so
        return f"the date {value.isoformat()} (quote it)"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    # JSON leaves some line breaks as they are (U+0085, U+2028): one line.
    text = "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in text)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, dict):
        return f"object {text}"
    if isinstance(value, list):
        return f"array {text}"
    return text
