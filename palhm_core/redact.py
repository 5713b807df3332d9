"""Keeping secrets out of what PALHM prints: plans, log lines, error messages
and run reports.

Hidden: the password of a URL (``https://user:secret@host/``), the value of an
option or variable whose name says it is secret (``--password=x``,
``--secret-key x``, ``AWS_SECRET_ACCESS_KEY=x``), and MySQL's ``-pPASSWORD``.
Exec ``env`` values are never printed at all (plans show ``NAME=<set>``).
This is a safety net, not a guarantee: a secret passed as a bare argument
cannot be told from any other word. Keep secrets in files or the environment.
"""

from __future__ import annotations

import re

HIDDEN = "<hidden>"

#: Words that make a name secret wherever they appear in it...
_SECRET_ANYWHERE = re.compile(r"pass(?:word|wd|phrase)|secret|credential", re.IGNORECASE)
#: ... and words that do only as a whole part of it (``--token``, not ``--tokenizer``).
_SECRET_PART = re.compile(
    r"(?:^|[-_])(?:pass|pwd|token|(?:api|access|private|auth)[-_]?key)(?:$|[-_])", re.IGNORECASE
)
#: Names of a file or descriptor holding a secret, or that say there is none.
_NOT_SECRET = re.compile(r"(?:^no[-_]|[-_]?(?:file|fd|path|dir)$)", re.IGNORECASE)
#: scheme://user:password@  (userinfo holds no "/", "@" or whitespace)
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/@:'\"]*):([^\s/@'\"]*)@")
#: MySQL and MariaDB clients take the password glued to -p.
_MYSQL = re.compile(r"\b(?:mysql|mariadb)")
_MYSQL_P = re.compile(r"(?<![^\s'\"])-p(?=[^\s'\"])('[^']*'|\"[^\"]*\"|\S+)")
#: --name=value, -name=value, NAME=value
_ASSIGNMENT = re.compile(r"(?<![^\s'\"])(--?|)([A-Za-z_][A-Za-z0-9_-]*)=('[^']*'|\"[^\"]*\"|\S*)")
#: --name value (the value not an option itself)
_OPTION_VALUE = re.compile(
    r"(?<![^\s'\"])(--?[A-Za-z][A-Za-z0-9_-]*)(\s+)('[^']*'|\"[^\"]*\"|[^\s-]\S*)"
)


def is_secret_name(name: str) -> bool:
    """``--password``, ``PGPASSWORD``, ``AWS_SECRET_ACCESS_KEY``: True;
    ``--passphrase-file``, ``--no-password``: False."""
    name = name.lstrip("-")
    if not name or _NOT_SECRET.search(name):
        return False
    return bool(_SECRET_ANYWHERE.search(name) or _SECRET_PART.search(name))


def redact(text: str) -> str:
    """``text`` with the secrets this module knows of replaced by ``<hidden>``."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(rf"\1:{HIDDEN}@", text)

    def assignment(m: re.Match) -> str:
        dash, name, value = m.groups()
        if value == "<set>" or not is_secret_name(name):
            return m.group(0)
        return f"{dash}{name}={HIDDEN}"

    def option_value(m: re.Match) -> str:
        option, space, _ = m.groups()
        if not is_secret_name(option):
            return m.group(0)
        return f"{option}{space}{HIDDEN}"

    text = _ASSIGNMENT.sub(assignment, text)
    text = _OPTION_VALUE.sub(option_value, text)
    if _MYSQL.search(text):
        text = _MYSQL_P.sub(f"-p{HIDDEN}", text)
    return text


def redact_argv(argv) -> list[str]:
    """An argv list with its secrets hidden, element by element (for
    printing only: never run the result)."""
    out: list[str] = []
    program = str(argv[0]).rsplit("/", 1)[-1] if argv else ""
    mysql = program.startswith(("mysql", "mariadb"))
    hide_next = False
    for arg in map(str, argv):
        if hide_next:
            out.append(HIDDEN)
            hide_next = False
            continue
        arg = _URL_PASSWORD.sub(rf"\1:{HIDDEN}@", arg)
        name, eq, _ = arg.partition("=")
        if eq and is_secret_name(name) and re.fullmatch(r"-{0,2}[A-Za-z_][A-Za-z0-9_-]*", name):
            arg = f"{name}={HIDDEN}"
        elif arg.startswith("-") and not eq and is_secret_name(arg) and len(out) > 0:
            hide_next = True
        elif mysql and arg.startswith("-p") and len(arg) > 2 and not arg.startswith("--"):
            arg = "-p" + HIDDEN
        out.append(arg)
    return out
