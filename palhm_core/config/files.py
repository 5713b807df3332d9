"""Reading config files and following their includes.

``.yaml``/``.yml`` files are YAML (safe loading); every other file is JSON with
comments and trailing commas (JSON5, of which plain JSON is a subset). Relative
``include`` paths resolve from the directory of the including file. The result
is the list of documents in merge order: a file, then each of its includes in
order (recursively), so that an include's scalars override its includer's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from palhm_core.config.place import Place
from palhm_core.errors import ConfigError


@dataclass
class ConfigFile:
    path: str
    doc: dict[str, Any]


def read_tree(path: str) -> list[ConfigFile]:
    """The file at ``path`` and everything it includes, in merge order."""
    out: list[ConfigFile] = []
    _read(os.path.abspath(path), out, (), {})
    return out


def _read(path: str, out: list[ConfigFile], chain: tuple[str, ...], seen: dict[str, str]) -> None:
    doc = parse_file(path)
    out.append(ConfigFile(path, doc))
    includes = doc.get("include", [])
    place = Place(path) / "include"
    if not isinstance(includes, list):
        raise place.error("expected a list of file paths")
    for i, inc in enumerate(includes):
        if not isinstance(inc, str) or not inc:
            raise (place / i).error("expected a file path")
        target = os.path.normpath(os.path.join(os.path.dirname(path), inc))
        if target in (path, *chain):
            raise (place / i).error(f"circular include of {target}")
        if target in seen:
            raise (place / i).error(f"{target} is already included by {seen[target]}")
        seen[target] = path
        _read(target, out, (*chain, path), seen)


def parse_file(path: str) -> dict[str, Any]:
    """One config file as a dict, or a ConfigError with line and column."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file: {e.strerror}", path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", path) from None
    if path.endswith((".yaml", ".yml")):
        doc = _parse_yaml(text, path)
    else:
        doc = _parse_json5(text, path)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"the top level must be an object, not {type(doc).__name__}", path)
    return doc


_JSON5_POS = re.compile(r"^<string>:(\d+)\s+(.*?)(?: at column (\d+))?$", re.S)


def _parse_json5(text: str, path: str) -> Any:
    import json5

    try:
        return json5.loads(text, allow_duplicate_keys=False)
    except ValueError as e:
        msg = str(e)
        m = _JSON5_POS.match(msg)
        if m:
            line, problem, col = m.groups()
            where = f"line {line}" + (f", column {col}" if col else "")
            problem = problem.replace("\n", "\\n")
            raise ConfigError(f"{where}: syntax error: {problem}", path) from None
        raise ConfigError(f"syntax error: {msg}", path) from None
    except RecursionError:
        raise ConfigError("syntax error: nested too deeply", path) from None


def _parse_yaml(text: str, path: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = e.problem or e.context or "invalid YAML"
        raise ConfigError(f"{where}syntax error: {problem}", path) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"syntax error: {e}", path) from None
    except RecursionError:
        raise ConfigError("syntax error: nested too deeply", path) from None
