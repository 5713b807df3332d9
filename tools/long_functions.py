"""The longest functions of PALHM's code, by lines (from ``def`` to the end
of the body, docstring and comments included), longest first::

    python tools/long_functions.py [-n 10] [PATH ...]   # default: palhm_core plugins

The project keeps functions under 50 lines; a longer one says why in a
comment.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = {"build", ".venv", ".nox", "__pycache__"}


def functions(paths: list[Path]) -> list[tuple[int, str, str]]:
    """(lines, file:line, name) of every function and method under ``paths``."""
    found = []
    for top in paths:
        for path in sorted(top.rglob("*.py")) if top.is_dir() else [top]:
            if SKIPPED.intersection(path.parts):
                continue
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                    found.append((lines, f"{where}:{node.lineno}", node.name))
    return sorted(found, key=lambda f: -f[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10, help="how many (default 10)")
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args()
    paths = [p.resolve() for p in args.paths] or [ROOT / "palhm_core", ROOT / "plugins"]
    for lines, where, name in functions(paths)[: args.n]:
        print(f"{lines:4d}  {where}  {name}")


if __name__ == "__main__":
    main()
