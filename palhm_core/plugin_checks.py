"""What a plugin registers is checked once, when plugins load, before any of
it is used: a mistake in a plugin is one line naming it, never a traceback
nor a config file that stops working because of a plugin it does not use.

A registered class must be a class (not an instance) of its kind's base,
with a ``name`` a config can write (lower case letters and digits, words
joined by ``-``, ``_`` or ``.``), a one-line ``description`` and a
``schema`` that is valid JSON Schema (checked against the Draft 2020-12
metaschema, as config files are validated with that draft), gives every
property a ``description`` (or only a ``$ref``), refers only to the
definitions the core shares (:data:`SHARED_DEFS`), holds nothing beside ``properties`` and
``required`` (the rest would be ignored) and defines none of the keys
the core adds beside it. A class with an abstract method left unimplemented
is refused naming the methods. A plugin's settings schema is held to the same
schema rules.

Each class and each settings schema is checked once per process, and a
schema that passed the metaschema is not checked again while it is unchanged
(:mod:`palhm_core.cache`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from typing import Any

#: What a config writes to select a class: ``aws-s3``, ``iso8601``, ``example-dir``.
NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)*\Z")
NAME_MAX = 64
#: The definitions of the config schema a plugin's schema may ``$ref``:
#: a pipeline, a routine, an exec definition (and ``#/$defs/step.TYPE``).
SHARED_DEFS = ("#/$defs/pipeline", "#/$defs/routine", "#/$defs/exec-definition")

#: kind -> (module, class) every class of that kind subclasses.
BASES = {
    "backend": ("palhm_core.backend", "Backend"),
    "task type": ("palhm_core.task", "Task"),
    "retention policy": ("palhm_core.retention", "RetentionPolicy"),
    "notifier": ("palhm_core.notify", "Notifier"),
}
#: Kinds whose instances the core calls (``generator(now)``, ``builtin()``).
CALLED_KINDS = ("prefix generator", "builtin")
#: Kinds selected by the ``type`` key of the object holding their parameters.
TYPED_KINDS = ("prefix generator", "retention policy")

TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")

_checked: dict[tuple[str, type], str | None] = {}


def check_class(kind: str, cls: Any) -> str | None:
    """Why ``cls``, returned by a registry hook for ``kind``, cannot be
    used, or None. The answer starts with what was returned
    (``backend 'x': ...``)."""
    if not isinstance(cls, type):
        return f"returned {what(cls)} where a {kind} class is expected"
    name = getattr(cls, "name", None)
    label = f"{kind} {name!r}" if isinstance(name, str) else f"{kind} class {cls.__qualname__}"
    key = (kind, cls)
    if key not in _checked:
        _checked[key] = _class_problem(kind, cls, name)
    problem = _checked[key]
    return f"{label}: {problem}" if problem else None


def check_settings_schema(schema: Any) -> str | None:
    """Why a plugin's settings schema cannot be used, or None."""
    return _schema_problem(schema, frozenset()) or _ignored("settings", schema)


def reserved_keys(kind: str) -> frozenset[str]:
    """The keys the core adds beside a ``kind``'s own parameters."""
    from palhm_core.config.schema import COMMON_BACKEND_KEYS, CORE_TASK_KEYS

    if kind == "backend":
        return frozenset(COMMON_BACKEND_KEYS)
    if kind == "task type":
        return frozenset(CORE_TASK_KEYS)
    if kind == "notifier":
        from palhm_core.notify import COMMON_KEYS

        return frozenset({"type", *COMMON_KEYS})
    if kind in TYPED_KINDS:
        return frozenset({"type"})
    return frozenset()


def _class_problem(kind: str, cls: type, name: Any) -> str | None:
    if kind in BASES:
        module, attr = BASES[kind]
        base = getattr(importlib.import_module(module), attr)
        if not issubclass(cls, base):
            return f"is not a subclass of {module}.{attr}"
    elif kind in CALLED_KINDS and not any("__call__" in vars(c) for c in cls.__mro__[:-1]):
        return "has no __call__ method: the core calls its instances"
    if not isinstance(name, str) or not NAME.match(name) or len(name) > NAME_MAX:
        return (
            f"name {name!r} is not a name a config can write (lower case letters and digits, "
            f"words joined by '-', '_' or '.', at most {NAME_MAX} characters)"
        )
    description = getattr(cls, "description", None)
    if not isinstance(description, str) or not description.strip():
        return "has no description (one line, shown by palhm plugins)"
    if len(description.splitlines()) > 1:
        return "description is not one line"
    schema = getattr(cls, "schema", None)
    problem = _schema_problem(schema, reserved_keys(kind)) or _ignored(kind, schema)
    if problem:
        return f"schema: {problem}"
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        return f"does not implement the abstract method(s) {missing}"
    return None


def _ignored(kind: str, schema: dict) -> str | None:
    """What of a class's or a settings schema the config schema would not
    keep: only its ``properties`` and ``required`` are composed into it (a
    builtin's ``param`` schema is kept whole)."""
    if kind == "builtin":
        return None
    noop = {"properties", "required", "$comment"} | (
        {"type"} if schema.get("type") == "object" else set()
    )
    ignored = sorted(set(schema) - noop)
    if not ignored:
        return None
    whose = "a settings" if kind == "settings" else "a class's"
    return (
        f"{', '.join(map(repr, ignored))} would be ignored: PALHM keeps only 'properties' "
        f"and 'required' of {whose} schema"
    )


def _schema_problem(schema: Any, reserved: frozenset[str]) -> str | None:
    if not isinstance(schema, dict):
        return f"is {what(schema)}, not a JSON Schema object"
    try:
        error = _metaschema_error(schema) or _outside_ref(schema, ())
        undescribed = None if error else _undescribed(schema, "")
    except RecursionError:
        return "is nested too deeply"
    if error:
        return error
    properties = schema.get("properties", {})
    taken = sorted(reserved.intersection(properties))
    if taken:
        return (
            f"defines {', '.join(map(repr, taken))}, which the core adds itself "
            f"(reserved: {', '.join(sorted(reserved))})"
        )
    if undescribed:
        return f"property {undescribed!r} has no description"
    return None


def _metaschema_error(schema: dict) -> str | None:
    from palhm_core import cache

    check = cache.key("metaschema", schema)
    if cache.passed(check):
        return None
    from jsonschema.exceptions import best_match

    from palhm_core.config.place import format_path

    error = best_match(_metaschema_validator().iter_errors(schema))
    if error is None:
        cache.remember(check)
        return None
    where = format_path(tuple(error.absolute_path))
    message = " ".join(error.message.split())
    if error.absolute_path and error.absolute_path[-1] == "type" and error.validator == "anyOf":
        message = f"{error.instance!r} is not a JSON Schema type ({', '.join(TYPES)})"
    return f"{where}: {message}" if where else message


def _shared_def(ref: object) -> bool:
    return ref in SHARED_DEFS or (isinstance(ref, str) and ref.startswith("#/$defs/step."))


def _outside_ref(node: Any, path: tuple) -> str | None:
    """The first ``$ref`` or ``$dynamicRef`` naming anything but a definition
    the core shares: another document, which jsonschema would fetch (from the
    network) at every config load, or a place of the config schema that may
    not exist (a traceback at every config load)."""
    from palhm_core.config.place import format_path

    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and not _shared_def(value):
                return (
                    f"{format_path((*path, key))}: {value!r} is not a definition the core "
                    f"shares ({', '.join(SHARED_DEFS)} or #/$defs/step.TYPE; "
                    "PALHM fetches no schema)"
                )
            found = _outside_ref(value, (*path, key))
            if found:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _outside_ref(value, (*path, i))
            if found:
                return found
    return None


@functools.cache
def _metaschema_validator():
    """A validator of the Draft 2020-12 metaschema, made self-contained.

    The metaschema is an ``allOf`` of vocabulary documents that refer back
    to it with ``"$dynamicRef": "#meta"``, which jsonschema resolves anew at
    every level (six times slower than a plain ``$ref``: most of what the
    checks cost at start-up). Here the vocabularies are inlined into one
    document, their ``$defs`` joined, and each ``#meta`` made ``"$ref": "#"``:
    validating from the root, the dynamic reference resolves to the root
    anyway, so the same schemas are refused with the same errors.
    """
    from jsonschema import Draft202012Validator
    from jsonschema_specifications import REGISTRY

    meta = Draft202012Validator.META_SCHEMA
    base = meta["$id"].rsplit("/", 1)[0] + "/"
    flat = {k: v for k, v in meta.items() if k not in _DOCUMENT_KEYS}
    flat["allOf"], flat["$defs"] = [], {}
    for part in meta["allOf"]:
        vocabulary = {
            k: _static(v)
            for k, v in REGISTRY.contents(base + part["$ref"]).items()
            if k not in _DOCUMENT_KEYS
        }
        flat["$defs"].update(vocabulary.pop("$defs", {}))
        flat["allOf"].append(vocabulary)
    return Draft202012Validator(flat)


#: Keys about a metaschema document itself, not about the schemas it describes.
_DOCUMENT_KEYS = ("$schema", "$id", "$vocabulary", "$dynamicAnchor", "$comment", "allOf")


def _static(node: Any) -> Any:
    """``node`` with every ``"$dynamicRef": "#meta"`` made ``"$ref": "#"``."""
    if isinstance(node, dict):
        if node.get("$dynamicRef") == "#meta":
            return {"$ref": "#"}
        return {k: _static(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_static(v) for v in node]
    return node


def _undescribed(schema: dict, path: str) -> str | None:
    """The first property without a description, as ``objects[].path``;
    keys that are only a ``$ref`` take the description of what they name."""
    properties = schema.get("properties", {})
    for key, sub in properties.items():
        if not isinstance(sub, dict):
            continue
        here = f"{path}.{key}" if path else key
        described = isinstance(sub.get("description"), str) and sub["description"].strip()
        if not described and set(sub) != {"$ref"}:
            return here
        found = _undescribed(sub, here)
        if found:
            return found
    items = schema.get("items")
    if isinstance(items, dict):
        return _undescribed(items, f"{path}[]")
    return None


def unmarked_hooks(module: Any) -> list[str]:
    """The functions of a plugin module named like hooks (``palhm_...``)."""
    return sorted(n for n, v in vars(module).items() if n.startswith("palhm_") and callable(v))


def what(value: Any) -> str:
    """``an instance of Foo``, ``None``, ``a str``: what a plugin gave."""
    if value is None:
        return "None"
    if isinstance(value, type):
        return f"the class {value.__qualname__}"
    if isinstance(value, (str, int, float, bool, list, tuple, dict)):
        return f"a {type(value).__name__}"
    return f"an instance of {type(value).__qualname__}"
