"""``palhm config``: show the merged config, check it, print the schema, or
install the default config files."""

from __future__ import annotations

import json
import os
import sys

DEFAULT_DIR = "/etc/palhm"
DATA_FILES = ("palhm.conf", "conf.d/core.json")


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="show, check or install config; print the schema")
    p.add_argument(
        "action",
        nargs="?",
        default="show",
        choices=["show", "check", "schema", "init"],
        help="show (default): the merged config; check: validate only; schema: the JSON "
        "Schema for editors; init [DIR]: write the default config files",
    )
    p.add_argument("dir", nargs="?", metavar="DIR", help=f"for init (default {DEFAULT_DIR})")
    p.add_argument(
        "--show-secrets",
        action="store_true",
        help="show: print env values, passwords and other secrets as they are (by default "
        "they are <hidden>)",
    )
    p.set_defaults(func=cmd_config)


def cmd_config(args) -> int:
    if args.action == "init":
        return _init(args.dir or DEFAULT_DIR, quiet=args.quiet)
    if args.dir is not None:
        from palhm_core.errors import UsageError

        raise UsageError(f"config {args.action} takes no DIR")
    if args.action == "schema":
        from palhm_core.config.schema import build_schema
        from palhm_core.plugins import Plugins

        json.dump(build_schema(Plugins()), sys.stdout, indent=2)
        print()
        return 0
    from palhm_core.cli import load_config

    _, conf, _ = load_config(args)
    if args.action == "show":
        from palhm_core.redact import redact_config

        doc = conf.merged if args.show_secrets else redact_config(conf.merged)
        # default=str: YAML dates in free-form values (boot-report) print as text
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False, default=str)
        print()
    elif not args.quiet:
        print(
            f"{conf.files[0].path}: ok ({_count(len(conf.files), 'file')}, "
            f"{_count(len(conf.execs), 'exec')}, {_count(len(conf.tasks), 'task')})"
        )
    return 0


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _init(target: str, quiet: bool = False) -> int:
    """Write the default files into ``target``, never over an existing file;
    mode 0600, as they may come to hold secrets (``env``)."""
    from importlib import resources

    from palhm_core.errors import PalhmError

    data = resources.files("palhm_core") / "data"
    for name in DATA_FILES:
        dest = os.path.join(target, name)
        content = (data / name).read_bytes()
        try:
            os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if not quiet:
                print(f"palhm: {dest} exists, left as it is", file=sys.stderr)
            continue
        except OSError as e:
            raise PalhmError(f"cannot write {dest}: {e.strerror}") from None
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        if not quiet:
            print(f"palhm: wrote {dest}", file=sys.stderr)
    return 0
