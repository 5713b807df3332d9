"""The plugins of this repository use only ``palhm_core.api``, as doc/plugins.md
asks of every plugin: what else the core has may change in any release."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    p
    for pattern in ("plugins/*/palhm_*/**/*.py", "tests/plugins/*/*.py", "doc/example-plugin/*.py")
    for p in REPO.glob(pattern)
    if "build" not in p.parts
)


def core_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return [n for n in names if n == "palhm_core" or n.startswith("palhm_core.")]


def test_the_plugin_sources_were_found():
    assert {p.parts[len(REPO.parts) + 1] for p in SOURCES if "plugins" in p.parts[:-2]} >= {
        "palhm_localfs",
        "palhm_null",
        "palhm_s3",
        "palhm_rclone",
    }


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_a_plugin_imports_only_the_api(path):
    assert [m for m in core_imports(path) if m != "palhm_core.api"] == []
