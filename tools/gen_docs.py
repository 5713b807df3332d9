"""Generate the reference parts of PALHM's documentation from the code.

- doc/config.md, between ``<!-- BEGIN GENERATED: config -->`` and its END
  marker: every key of the config JSON Schema composed by the installed core
  and the repository's own plugins (``plugins/*``), with type, default and
  description.
- doc/plugins.md: the ``example-plugin`` region, the files of
  doc/example-plugin/ as they are; the ``backend-api`` region, the Backend,
  Sink and CopyInfo contract of ``palhm_core/backend.py``; the ``hookspecs``
  region, every hook of ``palhm_core/hookspecs.py`` with its signature and
  docstring.

Usage: ``python tools/gen_docs.py`` rewrites the regions; ``--check`` changes
nothing and exits 1 when a region is out of date (``nox -s docs`` runs the
former). The schema comes from the installed distributions, so install the
core and every plugin under ``plugins/`` first; third-party plugins that happen
to be installed are left out of the reference.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import glob
import json
import os
import re
import sys
import textwrap
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_MD = os.path.join(ROOT, "doc", "config.md")
PLUGINS_MD = os.path.join(ROOT, "doc", "plugins.md")
HOOKSPECS_PY = os.path.join(ROOT, "palhm_core", "hookspecs.py")
BACKEND_PY = os.path.join(ROOT, "palhm_core", "backend.py")
EXAMPLE_DIR = os.path.join(ROOT, "doc", "example-plugin")
EXAMPLE_FILES = (("pyproject.toml", "toml"), ("palhm_dirstore.py", "python"))

DECIMAL = {"integer", "number", "string"}


# -- regions between markers ---------------------------------------------------


def markers(name: str) -> tuple[str, str]:
    return (
        f"<!-- BEGIN GENERATED: {name} (tools/gen_docs.py; edit the code, then nox -s docs) -->",
        f"<!-- END GENERATED: {name} -->",
    )


def region(text: str, name: str) -> str:
    """The generated text between the markers of ``name`` in ``text``."""
    begin, end = markers(name)
    try:
        start = text.index(begin) + len(begin)
        stop = text.index(end, start)
    except ValueError:
        raise SystemExit(f"gen_docs: the markers of region {name!r} are missing") from None
    return text[start:stop]


def replace_region(text: str, name: str, body: str) -> str:
    begin, end = markers(name)
    old = region(text, name)
    start = text.index(begin) + len(begin)
    return text[:start] + "\n" + body.strip("\n") + "\n" + text[start + len(old) :]


# -- plugins of this repository --------------------------------------------------


def repo_plugins() -> dict[str, str]:
    """Entry point name -> distribution of every plugin under plugins/."""
    found = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "plugins", "*", "pyproject.toml"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        dist = re.search(r'^name\s*=\s*"([^"]+)"', text, re.M)
        section = re.search(
            r"^\[project\.entry-points\.palhm\]\s*\n((?:[^\[\n].*\n?)*)", text, re.M
        )
        if not dist or not section:
            continue
        for line in section.group(1).splitlines():
            m = re.match(r'\s*"?([A-Za-z0-9_.-]+)"?\s*=', line)
            if m:
                found[m.group(1)] = dist.group(1)
    return found


@contextlib.contextmanager
def _env(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def repo_schema() -> dict[str, Any]:
    """The config schema of the core and this repository's plugins, whatever
    else is installed. Every repository plugin must be installed."""
    from palhm_core.config.schema import build_schema
    from palhm_core.plugins import Plugins

    wanted = repo_plugins()
    with _env(PALHM_DISABLE_PLUGIN_AUTOLOAD="1", PALHM_PLUGINS=",".join(wanted)):
        plugins = Plugins()
    missing = [
        f"{dist} (plugin {name!r})" for name, dist in wanted.items() if name not in plugins.infos
    ]
    if missing:
        raise SystemExit(
            "gen_docs: not installed, the reference would miss their keys: "
            + ", ".join(missing)
            + "; install every folder under plugins/ (pip install ./plugins/...)"
        )
    return build_schema(plugins)


# -- the config reference ------------------------------------------------------------

SECTIONS = [
    (
        "top",
        "Top level",
        "The keys of a config file. Every file of an include tree is checked "
        "against this on its own, then the files are merged.",
    ),
    ("exec-definition", "Exec definitions", None),
    (
        "step.",
        "Steps",
        "A pipeline (backup objects) allows `exec`, `exec-append` and "
        "`exec-inline`; a routine allows every kind. `type` selects the kind.",
    ),
    (
        "task.",
        "Task types",
        "`type` selects the task type; `id` names the task for `palhm run` and `task` steps.",
    ),
    (
        "backend.",
        "Backends",
        "The `backend-param` object of a backup task, by `backend`. "
        "`nb-copy-limit`, `root-size-limit` and `prefix` are handled by the core for every "
        "backend.",
    ),
    ("prefix", "Prefix generators", "The `backend-param.prefix` object, by `type`."),
    (
        "keep",
        "Retention policies",
        "The `backend-param.keep` object, by `type` (see [Retention](#retention-keep)).",
    ),
    ("builtin.", "Builtins", "The `param` of a `builtin` step, by `builtin-id`."),
    (
        "notifier.",
        "Notifiers",
        "An entry of a `notify` list (top level: the run; in a task: that task), by `type`. "
        "`on` and `timeout` are handled by the core for every notifier.",
    ),
]


def anchor(def_name: str) -> str:
    return "def-" + re.sub(r"[^a-z0-9-]+", "-", def_name.lower())


def describe_type(schema: dict[str, Any]) -> str:
    """A short human type of a schema node."""
    if not isinstance(schema, dict):
        return "any"
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        name = ref[len("#/$defs/") :]
        label = {
            "pipeline": "pipeline",
            "routine": "routine",
            "prefix": "prefix object",
            "keep": "keep object",
        }.get(name, name)
        return f"[{label}](#{anchor(name)})"
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        if set(kind) == DECIMAL:
            text = "decimal (number or string)"
        else:
            text = " or ".join(kind)
    elif kind == "array":
        items = schema.get("items", {})
        if isinstance(items, dict) and items.get("type") == "object" and "properties" in items:
            inner = "objects"
        elif isinstance(items, dict) and set(items) == {"type"}:
            kinds = items["type"] if isinstance(items["type"], list) else [items["type"]]
            inner = " or ".join(k + "s" for k in kinds)
        else:
            inner = describe_type(items) if items else "any"
        text = f"array of {inner}"
        if schema.get("minItems") == 1:
            text = "non-empty " + text
    elif kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("type") == "string":
            text = "object of strings"
        else:
            text = "object"
    elif kind:
        text = kind
        if kind == "string" and schema.get("minLength") == 1:
            text = "non-empty string"
    elif "properties" in schema:
        text = "object"
    else:
        text = "any"
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and hi is not None:
        text += f", {lo} to {hi}"
    elif lo is not None:
        text += f", at least {lo}"
    elif hi is not None:
        text += f", at most {hi}"
    return text


_DEFAULT_WORD = re.compile(r"\bDefault(?::\s*|\s+)(.+?)(?:\.(?:\s|$)|;|$)")
_DEFAULT_PAREN = re.compile(r"([^,:;()]+?)\s*\((?:[^()]*;\s*)?(?:the )?default\b")


def default_of(schema: dict[str, Any]) -> str:
    """The ``default`` annotation, else what the description says."""
    if "default" in schema:
        return f"`{json.dumps(schema['default'])}`"
    text = schema.get("description", "")
    m = _DEFAULT_WORD.search(text) or _DEFAULT_PAREN.search(text)
    if not m:
        return ""
    return re.sub(r"^(?:or|and)\s+", "", m.group(1).strip(" .;,"))


def cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def rows(schema: dict[str, Any], path: str = ""):
    """(key path, type, default, description) for each property, depth
    first, following nested objects and arrays of objects, never ``$ref``."""
    required = set(schema.get("required", ()))
    for key, prop in schema.get("properties", {}).items():
        if not isinstance(prop, dict):
            prop = {}
        full = f"{path}{key}"
        default = "**required**" if key in required else default_of(prop)
        yield full, describe_type(prop), default, prop.get("description", "")
        yield from nested(prop, full)


def nested(prop: dict[str, Any], full: str):
    if "$ref" in prop:
        return
    if prop.get("type") == "object" or ("properties" in prop and "type" not in prop):
        yield from rows(prop, f"{full}.")
    items = prop.get("items")
    if prop.get("type") == "array" and isinstance(items, dict) and "properties" in items:
        yield from rows(items, f"{full}[].")


def table(entries) -> list[str]:
    out = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, kind, default, desc in entries:
        out.append(f"| `{key}` | {cell(kind)} | {cell(default)} | {cell(desc)} |")
    return out


def def_block(name: str, node: dict[str, Any], title: str) -> list[str]:
    out = [f'<a id="{anchor(name)}"></a>', "", f"### {title}", ""]
    if node.get("description"):
        out += [node["description"], ""]
    if node.get("type") == "array" and "properties" not in node:
        # an array-valued definition (pipeline, routine, a builtin's param)
        entries = [(name.split(".")[-1], describe_type(node), "", "")]
        items = node.get("items", {})
        step_types = items.get("properties", {}).get("type", {}).get("enum")
        if step_types:
            out += [
                "An array of steps, objects whose `type` is one of: "
                + ", ".join(f"[`{t}`](#{anchor('step.' + t)})" for t in step_types)
                + ".",
                "",
            ]
            return out
        entries = list(nested(node, "param" if name.startswith("builtin.") else name))
        out += [f"Type: {describe_type(node)}.", ""]
        if entries:
            out += table(entries) + [""]
        return out
    entries = list(rows(node))
    if entries:
        out += table(entries) + [""]
    else:
        out += ["No parameters.", ""]
    return out


def title_of(name: str) -> str:
    if name == "exec-definition":
        return "Exec definition (`execs[]`)"
    if name == "pipeline":
        return "`pipeline`"
    if name == "routine":
        return "`routine`"
    if name in ("prefix", "keep"):
        return f"`{name}` (common keys)"
    kind, _, what = name.partition(".")
    label = {
        "step": "step",
        "task": "task type",
        "backend": "backend",
        "prefix": "prefix generator",
        "builtin": "builtin",
        "notifier": "notifier",
        "keep": "retention policy",
    }[kind]
    return f"`{what}` {label}"


def render_config(schema: dict[str, Any]) -> str:
    defs = schema["$defs"]
    done: set[str] = set()
    out: list[str] = []
    for key, heading, intro in SECTIONS:
        out += [f"## {heading}", ""]
        if intro:
            out += [intro, ""]
        if key == "top":
            out += [f'<a id="{anchor("top")}"></a>', ""]
            out += table(rows(schema)) + [""]
            continue
        if key == "step.":
            names = [n for n in defs if n.startswith("step.")] + ["pipeline", "routine"]
        elif key in ("prefix", "keep"):
            names = [key] + sorted(n for n in defs if n.startswith(key + "."))
        elif key.endswith("."):
            names = sorted(n for n in defs if n.startswith(key))
        else:
            names = [key]
        for name in names:
            if name in defs:
                out += def_block(name, defs[name], title_of(name))
                done.add(name)
    rest = [n for n in defs if n not in done]
    if rest:
        out += ["## Other definitions", ""]
        for name in rest:
            out += def_block(name, defs[name], f"`{name}`")
    return "\n".join(out).rstrip() + "\n"


# -- docstrings as Markdown ----------------------------------------------------------

_ROLE = re.compile(r":(?:class|meth|func|data|attr|exc|mod|obj):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_FIELD = re.compile(r"^:(param|returns?|raises|type|rtype)\s*([^:]*):\s*(.*)$")


def inline(text: str) -> str:
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    return _LITERAL.sub(lambda m: f"`{m.group(1)}`", text)


def rst_to_md(doc: str) -> str:
    """The reST subset of PALHM's docstrings as Markdown: roles and
    double-backquote literals, ``::`` literal blocks and field lists."""
    lines = textwrap.dedent(doc).strip("\n").splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _FIELD.match(line.strip())
        if m and not line.startswith(" "):
            kind, arg, text = m.groups()
            i += 1
            while i < len(lines) and lines[i].startswith(" ") and lines[i].strip():
                text += " " + lines[i].strip()
                i += 1
            arg = arg.strip()
            if kind == "param":
                out.append(f"- `{arg}`: {inline(text)}")
            elif kind.startswith("return"):
                out.append(f"- returns: {inline(text)}")
            elif kind == "raises":
                out.append(f"- raises `{arg}`: {inline(text)}")
            continue
        if line.rstrip().endswith("::"):
            head = line.rstrip()[:-2].rstrip()
            if head:
                out.append(inline(head) + ":")
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            out += ["", "```", *textwrap.dedent("\n".join(block)).splitlines(), "```", ""]
            continue
        out.append(inline(line))
        i += 1
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _signature(fn: ast.FunctionDef) -> str:
    sig = f"def {fn.name}({ast.unparse(fn.args)})"
    if fn.returns is not None:
        sig += f" -> {ast.unparse(fn.returns)}"
    return sig


def _decorator_name(dec: ast.expr) -> str:
    target = dec.func if isinstance(dec, ast.Call) else dec
    return ast.unparse(target)


def hookspecs(path: str = HOOKSPECS_PY) -> list[tuple[str, str, str, str]]:
    """(name, signature, options, docstring) of each ``@hookspec`` function."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        decs = [d for d in node.decorator_list if _decorator_name(d) == "hookspec"]
        if not decs:
            continue
        options = ""
        if isinstance(decs[0], ast.Call):
            options = ", ".join(ast.unparse(k) for k in decs[0].keywords)
        found.append((node.name, _signature(node), options, ast.get_docstring(node) or ""))
    return found


def render_hookspecs() -> str:
    out: list[str] = []
    for name, sig, options, doc in hookspecs():
        out += [f"### `{name}`", "", "```python", sig, "```", ""]
        if options:
            out += [f"Declared with `@hookspec({options})`.", ""]
        out += [rst_to_md(doc)]
    return "\n".join(out).rstrip() + "\n"


def backend_api(path: str = BACKEND_PY) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """(class, docstring, [(method, signature, docstring)]) of the contract
    classes, public methods and ``__init__``."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
            continue
        methods = []
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and (
                not item.name.startswith("_") or item.name == "__init__"
            ):
                methods.append((item.name, _signature(item), ast.get_docstring(item) or ""))
        found.append((node.name, ast.get_docstring(node) or "", methods))
    return found


def render_backend_api() -> str:
    with open(BACKEND_PY, encoding="utf-8") as f:
        module_doc = ast.get_docstring(ast.parse(f.read())) or ""
    out = [rst_to_md(module_doc)]
    for cls, doc, methods in backend_api():
        out += [f"### `{cls}`", "", rst_to_md(doc)]
        for name, sig, mdoc in methods:
            out += [f"#### `{cls}.{name}`", "", "```python", sig, "```", ""]
            if mdoc:
                out += [rst_to_md(mdoc)]
    return "\n".join(out).rstrip() + "\n"


def render_example() -> str:
    out = []
    for name, lang in EXAMPLE_FILES:
        with open(os.path.join(EXAMPLE_DIR, name), encoding="utf-8") as f:
            body = f.read().rstrip("\n")
        out += [f"`doc/example-plugin/{name}`:", "", f"```{lang}", body, "```", ""]
    return "\n".join(out)


# -- README -------------------------------------------------------------------------------

_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.M | re.S)


def readme_commands(text: str) -> tuple[str, str]:
    """The two set-up commands: the first two ```sh blocks of README.md."""
    blocks = [b.strip() for b in _SH_BLOCK.findall(text)]
    if len(blocks) < 2:
        raise SystemExit("README.md: expected the two set-up commands in ```sh blocks")
    return blocks[0], blocks[1]


# -- main ------------------------------------------------------------------------------


def generated() -> dict[str, dict[str, str]]:
    """file -> region -> the text it should hold."""
    return {
        CONFIG_MD: {"config": render_config(repo_schema())},
        PLUGINS_MD: {
            "example-plugin": render_example(),
            "backend-api": render_backend_api(),
            "hookspecs": render_hookspecs(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for path, regions in generated().items():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        new = text
        for name, body in regions.items():
            new = replace_region(new, name, body)
        if new != text:
            stale.append(os.path.relpath(path, ROOT))
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
    if args.check and stale:
        print(f"gen_docs: out of date: {', '.join(stale)} (run: nox -s docs)", file=sys.stderr)
        return 1
    for path in stale:
        print(f"gen_docs: rewrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
