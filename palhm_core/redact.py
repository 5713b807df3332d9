"""Keeping secrets out of what PALHM prints and stores: plans, log lines,
error messages, stderr tails, run reports and ``palhm config show``.

Hidden (replaced by ``<hidden>``), in text of any number of lines and in argv
lists alike:

- the password of a URL, ``https://user:<hidden>@host/``, and its query
  values whose name says secret, ``?token=<hidden>``;
- the value of an option or variable whose name says it is secret:
  ``--password=x``, ``--password x``, ``--secret-key x``, ``,pass=x`` (in an
  rclone connection string),
  ``AWS_SECRET_ACCESS_KEY=x`` (names holding ``password``,
  ``passwd``, ``passphrase``, ``secret``, ``credential`` or
  ``authorization`` anywhere, or
  ``pass``, ``pwd``, ``token``, ``api-key``, ``access-key``, ``private-key``
  or ``auth-key`` as a whole part; ``--no-password``, ``--passphrase-file``
  and other names of files and descriptors are not secret);
- the password of a ``user:password`` option: ``-u admin:x``, ``-uadmin:x``,
  ``--user admin:x``, ``--user=admin:x``, ``--proxy-user`` (curl's forms);
  so ``-u 1000:1000`` prints as ``-u 1000:<hidden>`` too;
- the credentials of an ``Authorization:`` or ``Proxy-Authorization:``
  header (``Authorization: Bearer <hidden>``), as an argument of its own, after
  ``-H`` or in a line of text;
- ``-pPASSWORD`` glued to ``-p``, only for the programs that read it as a
  password (``mysql``, ``mysqldump``, ``mariadb``, ``mariadb-dump`` and the
  rest of their families), and ``sshpass -p PASSWORD``: elsewhere ``-p`` is a
  port, a path or a flag;
- in ``config show``: every ``env`` value, the value of every key whose
  name is secret, and all but the scheme and host of a notifier's ``url``
  (:func:`redact_config`).

This is a safety net, not a guarantee. What cannot be told from any other
word is printed as it is: a secret passed as a bare argument (``mysql db
hunter2``), after an option whose name does not say so (``-k KEY``, ``-P``),
inside a value of another format (a JSON body, base64), or split across lines
of a program's stderr. Keep secrets in files (``--passphrase-file``,
``.my.cnf``, ``.netrc``) or in ``env``, which is never printed.
"""

from __future__ import annotations

import re
from typing import Any

HIDDEN = "<hidden>"

#: Words that make a name secret wherever they appear in it...
_SECRET_ANYWHERE = re.compile(
    r"pass(?:word|wd|phrase)|secret|credential|authorization", re.IGNORECASE
)
#: ... and words that do only as a whole part of it (``--token``, not ``--tokenizer``).
_SECRET_PART = re.compile(
    r"(?:^|[-_])(?:pass|pwd|token|(?:api|access|private|auth)[-_]?key)(?:$|[-_])", re.IGNORECASE
)
#: Names of a file or descriptor holding a secret, or that say there is none.
_NOT_SECRET = re.compile(r"(?:^no[-_]|[-_]?(?:file|fd|path|dir)$)", re.IGNORECASE)
#: A word's start: the line's start, a blank or a quote.
_START = r"(?<![^\s'\"])"
#: One value: quoted, or up to a blank or quote.
_VALUE = r"('[^'\n]*'|\"[^\"\n]*\"|[^\s'\"]+)"
#: scheme://user:password@  (userinfo holds no "/", "@" or whitespace)
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/@:'\"]*):([^\s/@'\"]*)@")
#: ?name=value or &name=value in a URL's query (``?token=x``, ``&api_key=x``)
_URL_QUERY = re.compile(r"([?&])([A-Za-z_][A-Za-z0-9_.-]*)=([^&#\s'\"]*)")
#: --name=value, -name=value, NAME=value
_ASSIGNMENT = re.compile(
    _START + r"(--?|)([A-Za-z_][A-Za-z0-9_-]*)=" + r"('[^'\n]*'|\"[^\"\n]*\"|\S*)"
)
#: ,name=value: an option of an rclone connection string (``:sftp,host=h,pass=x:path``)
_CONNECTION_OPTION = re.compile(
    r"(?<=,)([A-Za-z_][A-Za-z0-9_-]*)=('[^'\n]*'|\"[^\"\n]*\"|[^,:\s]*)"
)
#: --name value (the value not an option itself)
_OPTION_VALUE = re.compile(
    _START + r"(--?[A-Za-z][A-Za-z0-9_-]*)([ \t]+)('[^'\n]*'|\"[^\"\n]*\"|[^\s-]\S*)"
)
#: Authorization: SCHEME CREDENTIALS (the scheme is kept)
_AUTH_HEADER = re.compile(
    r"(?<![\w-])((?:Proxy-)?Authorization[ \t]*:[ \t]*)(?:([A-Za-z][\w-]*)[ \t]+)?([^\s'\"]+)",
    re.IGNORECASE,
)
#: -u user:password, --user user:password, --user=user:password
_USER_OPTION = re.compile(
    _START + r"((?:--user|--proxy-user)(?:[ \t]+|=)|-[uU][ \t]*)(['\"]?)([^\s:'\"]*):([^\s'\"]+)"
)
#: The programs whose -pVALUE is a password, and sshpass, whose -p VALUE is.
_P_PROGRAMS = re.compile(r"(?<![\w-])(?:mysql|mariadb|sshpass)[\w-]*")
_GLUED_P = re.compile(_START + r"-p(?=\S)" + _VALUE)
_SSHPASS_P = re.compile(r"(?<![\w-])(sshpass\b.*?" + _START + r"-p)([ \t]+)" + _VALUE)
_USER_OPTIONS = ("-u", "-U", "--user", "--proxy-user")


def is_secret_name(name: str) -> bool:
    """``--password``, ``PGPASSWORD``, ``AWS_SECRET_ACCESS_KEY``: True;
    ``--passphrase-file``, ``--no-password``: False."""
    name = name.lstrip("-")
    if not name or _NOT_SECRET.search(name):
        return False
    return bool(_SECRET_ANYWHERE.search(name) or _SECRET_PART.search(name))


def redact(text: str) -> str:
    """``text`` (any number of lines) with the secrets this module knows of
    replaced by ``<hidden>``; each line is read on its own."""
    if not text:
        return text
    return "\n".join(_redact_line(line) for line in text.split("\n"))


def _redact_line(line: str) -> str:
    line = _URL_PASSWORD.sub(rf"\1:{HIDDEN}@", line)
    line = _URL_QUERY.sub(_query_value, line)

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

    def connection_option(m: re.Match) -> str:
        return f"{m[1]}={HIDDEN}" if is_secret_name(m[1]) else m.group(0)

    line = _ASSIGNMENT.sub(assignment, line)
    line = _CONNECTION_OPTION.sub(connection_option, line)
    line = _OPTION_VALUE.sub(option_value, line)
    line = _AUTH_HEADER.sub(_auth_header, line)
    line = _USER_OPTION.sub(rf"\1\2\3:{HIDDEN}", line)
    if _P_PROGRAMS.search(line):
        line = _SSHPASS_P.sub(rf"\1\2{HIDDEN}", line)
        line = _GLUED_P.sub(f"-p{HIDDEN}", line)
    return line


def _query_value(m: re.Match) -> str:
    sep, name, value = m.groups()
    if not value or value == HIDDEN or not is_secret_name(name):
        return m.group(0)
    return f"{sep}{name}={HIDDEN}"


def _auth_header(m: re.Match) -> str:
    head, scheme, _ = m.groups()
    if scheme and scheme != HIDDEN:
        return f"{head}{scheme} {HIDDEN}"
    return f"{head}{HIDDEN}"


def redact_argv(argv) -> list[str]:
    """An argv list with its secrets hidden, element by element (for
    printing only: never run the result)."""
    out: list[str] = []
    program = str(argv[0]).rsplit("/", 1)[-1] if argv else ""
    glued_p = bool(_P_PROGRAMS.fullmatch(program))
    sshpass = program == "sshpass"
    hide_next = user_next = False
    for arg in map(str, argv):
        if hide_next:
            out.append(HIDDEN)
            hide_next = False
            continue
        if user_next:
            user_next = False
            user, colon, _ = arg.partition(":")
            out.append(f"{user}:{HIDDEN}" if colon else arg)
            continue
        arg = _URL_PASSWORD.sub(rf"\1:{HIDDEN}@", arg)
        arg = _URL_QUERY.sub(_query_value, arg)
        arg = _AUTH_HEADER.sub(_auth_header, arg)
        name, eq, value = arg.partition("=")
        if eq and re.fullmatch(r"-{0,2}[A-Za-z_][A-Za-z0-9_-]*", name):
            if is_secret_name(name):
                arg = f"{name}={HIDDEN}"
            elif name in ("--user", "--proxy-user") and ":" in value:
                arg = f"{name}={value.partition(':')[0]}:{HIDDEN}"
        elif arg in _USER_OPTIONS:
            user_next = True
        elif arg[:2] in ("-u", "-U") and ":" in arg and len(out) > 0:
            arg = f"{arg.partition(':')[0]}:{HIDDEN}"
        elif (sshpass and arg == "-p") or (
            arg.startswith("-") and not eq and is_secret_name(arg) and len(out) > 0
        ):
            hide_next = True
        elif glued_p and arg.startswith("-p") and len(arg) > 2 and not arg.startswith("--"):
            arg = "-p" + HIDDEN
        out.append(arg)
    return out


def redact_config(node: Any, key: str | None = None) -> Any:
    """A config document as ``palhm config show`` prints it: every ``env``
    value, the value of every key whose name is secret, URL passwords, the
    secrets of ``argv`` lists and all but the origin of a notifier's ``url``
    (a ping URL's path is its secret) hidden."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "env" and isinstance(v, dict):
                out[k] = {name: HIDDEN for name in v}
            elif is_secret_name(str(k)) and not isinstance(v, (dict, list)):
                out[k] = HIDDEN
            elif key == "notify" and k == "url" and isinstance(v, str):
                out[k] = _url_origin(v)
            elif k == "argv" and isinstance(v, list) and all(isinstance(a, str) for a in v):
                out[k] = [redact(a) for a in redact_argv(v)]
            else:
                out[k] = redact_config(v, k)
        return out
    if isinstance(node, list):
        return [redact_config(v, key) for v in node]
    if isinstance(node, str):
        return redact(node)
    return node


def _url_origin(url: str) -> str:
    """``https://hc-ping.com/<hidden>``: the scheme and host of ``url``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return HIDDEN
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    return f"{scheme}://{host}/{HIDDEN}" if host != rest else f"{scheme}://{host}"
