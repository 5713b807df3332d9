"""Reading config files and following their includes.

``.yaml``/``.yml`` files are YAML (safe loading); every other file is JSON with
comments and trailing commas (JSON5, of which plain JSON is a subset). Relative
``include`` paths resolve from the directory of the including file. The result
is the list of documents in merge order: a file, then each of its includes in
order (recursively), so that an include's scalars override its includer's.

Limits, so that a hostile or broken file fails at once with one line: a config
file is a regular file (not a device, FIFO or directory, which are refused
without reading them) of at most :data:`MAX_FILE_BYTES`; includes nest at most
:data:`MAX_INCLUDE_DEPTH` files deep; a YAML file's aliases expand to at most
:data:`MAX_YAML_VALUES` values in all.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from palhm_core.config.place import Place
from palhm_core.errors import ConfigError
from palhm_core.redact import is_secret_name

#: The largest config file read (16 MiB).
MAX_FILE_BYTES = 16 << 20
#: How deep includes may nest: the top file and 63 levels of includes.
MAX_INCLUDE_DEPTH = 64
#: The values a YAML file may hold once its aliases are expanded.
MAX_YAML_VALUES = 100_000


@dataclass
class ConfigFile:
    path: str
    doc: dict[str, Any]


def read_tree(path: str) -> list[ConfigFile]:
    """The file at ``path`` and everything it includes, in merge order."""
    out: list[ConfigFile] = []
    path = os.path.abspath(path)
    _read(path, parse_file(path), out, (), {})
    return out


def _read(
    path: str,
    doc: dict[str, Any],
    out: list[ConfigFile],
    chain: tuple[tuple[str, str], ...],
    seen: dict[str, str],
) -> None:
    """Append ``doc`` and, depth first, its includes. ``chain`` holds the
    (real path, path) of the files including this one; ``seen`` maps the real
    path of every file read so far to the file that included it. Real paths
    make a file reached through a symbolic link the same file."""
    out.append(ConfigFile(path, doc))
    real = os.path.realpath(path)
    chain = (*chain, (real, path))
    seen.setdefault(real, "")
    includes = doc.get("include", [])
    place = Place(path) / "include"
    if not isinstance(includes, list):
        raise place.error(f"expected an array of file paths, got {_kind(includes)}")
    if includes and len(chain) >= MAX_INCLUDE_DEPTH:
        raise place.error(
            f"includes nest deeper than {MAX_INCLUDE_DEPTH} files (from {chain[0][1]})"
        )
    for i, inc in enumerate(includes):
        if not isinstance(inc, str) or not inc:
            raise (place / i).error(f"expected a file path, got {_kind(inc)}")
        target = os.path.normpath(os.path.join(os.path.dirname(path), inc))
        target_real = os.path.realpath(target)
        cycle = [p for r, p in chain if r == target_real]
        if cycle:
            loop = " -> ".join([p for _, p in chain[chain.index((target_real, cycle[0])) :]])
            raise (place / i).error(f"circular include: {loop} -> {target}")
        if target_real in seen:
            by = seen[target_real]
            raise (place / i).error(
                f"{target} is included twice (already by {by})"
                if by
                else f"{target} is the top config file"
            )
        seen[target_real] = path
        try:
            child = parse_file(target)
        except ConfigError as e:
            if e.file == target and e.problem.startswith("cannot read"):
                raise (place / i).error(e.problem.replace("config file", target, 1)) from None
            raise
        _read(target, child, out, chain, seen)


def _kind(value: Any) -> str:
    import json

    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def parse_file(path: str) -> dict[str, Any]:
    """One config file as a dict, or a ConfigError with line and column."""
    raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(
            f"line {line}, column {col}: not UTF-8 text (byte 0x{raw[e.start]:02x})", path
        ) from None
    if path.endswith((".yaml", ".yml")):
        doc = _parse_yaml(text, path)
        if doc is None:  # an empty YAML document
            doc = {}
    else:
        doc = _parse_json5(text, path)
    if not isinstance(doc, dict):
        raise ConfigError(f"the top level must be an object ({{...}}), not {_type_name(doc)}", path)
    return _join_surrogates(doc, Place(path))


def _read_bytes(path: str) -> bytes:
    """The file's bytes: only a regular file (opened without blocking, so a
    FIFO or a device is refused, not waited on) of at most MAX_FILE_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(f"cannot read config file: {e.strerror or e}", path) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ConfigError(f"cannot read config file: not a regular file ({_file_kind(mode)})", path)
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise ConfigError(f"cannot read config file: {e.strerror or e}", path) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"larger than {MAX_FILE_BYTES >> 20} MiB: not a config file", path)
    return raw


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a plain file"


_SURROGATE = re.compile("[\ud800-\udfff]")


def _join_surrogates(value: Any, place: Place) -> Any:
    """Strings as JSON means them: the parsers keep an escaped UTF-16 pair
    (``"\\ud83d\\ude00"``, as ``json.dumps`` writes any character beyond
    U+FFFF) as two code points; join each pair, and refuse a lone half, which
    no file name, argument or variable can hold."""
    if isinstance(value, str):
        if not _SURROGATE.search(value):
            return value
        try:
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        except UnicodeDecodeError:
            shown = value.encode("ascii", "backslashreplace").decode()
            if any(p == "env" or (isinstance(p, str) and is_secret_name(p)) for p in place.parts):
                shown = "the value"  # a secret: never echoed
            else:
                shown = f'"{shown}"'
            raise place.error(f"{shown} holds half of a UTF-16 surrogate pair") from None
    if isinstance(value, list):
        return [_join_surrogates(v, place / i) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {
            _join_surrogates(k, place): _join_surrogates(v, place / k) for k, v in value.items()
        }
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


_JSON5_POS = re.compile(r"^<string>:(\d+)\s+(.*?)(?: at column (\d+))?$", re.S)
_UNEXPECTED = re.compile(r'^Unexpected "(.*)"$', re.S)


#: Deeper documents go to json5 even when they are plain JSON, which refuses
#: them before the rest of PALHM would run out of stack.
PLAIN_DEPTH = 32


def _depth(doc: Any) -> int:
    deepest = 0
    todo = [(doc, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            todo.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("duplicate key")
    return doc


def _parse_json5(text: str, path: str) -> Any:
    # Plain JSON, the common case, through the standard library's C parser:
    # json5's pure-Python one takes milliseconds per kilobyte, on every run.
    # Anything else (comments, trailing commas, duplicate keys, errors) goes
    # to json5, which accepts JSONC and words the errors.
    try:
        doc = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except (ValueError, RecursionError):
        pass
    else:
        if _depth(doc) <= PLAIN_DEPTH:
            return doc
    import json5

    if not _strip_json_comments(text).strip():
        raise ConfigError("the file is empty (an empty config is {})", path)
    try:
        return json5.loads(text, allow_duplicate_keys=False)
    except ValueError as e:
        msg = str(e)
        m = _JSON5_POS.match(msg)
        if m:
            line, problem, col = m.groups()
            where = f"line {line}" + (f", column {col}" if col else "")
            raise ConfigError(f"{where}: syntax error: {_json5_problem(problem)}", path) from None
        raise ConfigError(f"syntax error: {_json5_problem(msg)}", path) from None
    except RecursionError:
        raise ConfigError("syntax error: nested too deeply", path) from None


def _json5_problem(problem: str) -> str:
    m = _UNEXPECTED.match(problem)
    if m:
        char = m.group(1)
        if char in ("\n", "\r"):
            return "unexpected end of line"
        return f"unexpected {char!r}"
    if problem.startswith("Unexpected end of input"):
        return "unexpected end of file"
    if problem.startswith("Duplicate key"):
        return "duplicate key " + problem[len("Duplicate key ") :].replace(" found in object", "")
    return problem.replace("\n", "\\n")


_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def _strip_json_comments(text: str) -> str:
    """Only used to tell an empty file from a broken one."""
    return _COMMENTS.sub("", text) if "/" in text else text


def _parse_yaml(text: str, path: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = e.problem or e.context or "invalid YAML"
        if e.context and e.problem and e.context_mark and e.context_mark is not mark:
            cm = e.context_mark
            problem += f" ({e.context} at line {cm.line + 1}, column {cm.column + 1})"
        raise ConfigError(f"{where}syntax error: {problem}", path) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"syntax error: {str(e).replace(chr(10), ' ')}", path) from None
    except RecursionError:
        raise ConfigError("syntax error: nested too deeply", path) from None
    except _AliasBomb as e:
        raise ConfigError(str(e), path) from None


class _AliasBomb(Exception):
    """A YAML document that expands past MAX_YAML_VALUES, or into itself."""


def _check_expansion(root) -> None:
    """Count the values of the node graph ``root`` as constructing it would
    make them, an alias counting as everything it refers to; stop past the
    limit before anything is built."""
    import yaml

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    todo = [(root, False)]
    while todo:
        node, children_done = todo.pop()
        key = id(node)
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_YAML_VALUES:
                line = node.start_mark.line + 1
                raise _AliasBomb(
                    f"line {line}: aliases expand to more than {MAX_YAML_VALUES:,} values "
                    "(PALHM's limit for a YAML file)"
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            line = node.start_mark.line + 1
            raise _AliasBomb(f"line {line}: an alias refers to the value that holds it")
        open_nodes.add(key)
        todo.append((node, True))
        todo.extend((c, False) for c in children if id(c) not in sizes)


_LOADER = None


def _yaml_loader():
    """``yaml.SafeLoader`` that refuses duplicate keys and keys that are not
    strings (YAML 1.1 reads a bare ``on:`` or ``no:`` as a boolean), as the
    JSON reader does, and documents whose aliases expand past
    MAX_YAML_VALUES values."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class Loader(yaml.SafeLoader):
        def get_single_node(self):
            node = super().get_single_node()
            if node is not None:
                _check_expansion(node)
            return node

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                self.flatten_mapping(node)
                keys: set[Any] = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=True)
                    if not isinstance(key, str):
                        raise yaml.constructor.ConstructorError(
                            None,
                            None,
                            f"key {key_node.value!r} is read as {_type_name(key)}, not a "
                            "string: quote it",
                            key_node.start_mark,
                        )
                    if key in keys:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r}", key_node.start_mark
                        )
                    keys.add(key)
            return super().construct_mapping(node, deep)

    _LOADER = Loader
    return Loader
