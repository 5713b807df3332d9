"""Where a value sits in the config: the ``FILE: tasks[2].backend-param.root`` of errors."""

from __future__ import annotations

import json

from palhm_core.errors import ConfigError


class Place:
    """A file and a JSON path inside it; ``place / "key" / 0`` goes deeper."""

    __slots__ = ("file", "parts")

    def __init__(self, file: str, parts: tuple[str | int, ...] = ()):
        self.file = file
        self.parts = parts

    def __truediv__(self, part: str | int) -> Place:
        return Place(self.file, (*self.parts, part))

    @property
    def path(self) -> str:
        return format_path(self.parts)

    def error(self, problem: str) -> ConfigError:
        """The error to raise for a bad value here."""
        return ConfigError(problem, self.file, self.path or None)

    def __str__(self) -> str:
        return f"{self.file}: {self.path}" if self.parts else self.file


def format_path(parts) -> str:
    """``("tasks", 2, "backend-param")`` -> ``tasks[2].backend-param``. A key
    that is empty or holds characters that are not printable (a newline, a
    form feed, a NUL) is written quoted and escaped, ``env["A\\u0000"]``, so
    that an error stays one line."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part or not str(part).isprintable():
            out += f"[{json.dumps(str(part))}]"
        else:
            out += f".{part}" if out else str(part)
    return out
