"""The ``palhm`` command.

Exit status: 0 success; 1 a task failed; 2 usage or config error; 75 another
run of the task holds its lock; 128+N stopped by signal N (after rollback).
A user's mistake is one line on stderr; ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_CONFIG = "/etc/palhm/palhm.conf"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog.split()[0]} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from palhm_core.cli import backups, config, plugins, run

    p = _Parser(
        prog="palhm",
        description="Periodic Automatic Live Host Maintenance: run routine and backup tasks.",
        epilog="Exit status: 0 success, 1 a task failed, 2 usage or config error, "
        "75 the task is already running, 128+N stopped by signal N.",
    )
    p.add_argument(
        "-f",
        "--config",
        metavar="FILE",
        help=f"config file (default: $PALHM_CONFIG or {DEFAULT_CONFIG})",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing when all is well")
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="say more (repeat for debug); tracebacks on errors",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run.add_parsers(sub)
    config.add_parser(sub)
    plugins.add_parser(sub)
    backups.add_parser(sub)
    h = sub.add_parser("help", help="show help for a command")
    h.add_argument("topic", nargs="?", metavar="COMMAND")
    h.set_defaults(func=lambda args: _help(p, sub, args.topic))
    return p


def _help(parser, sub, topic) -> int:
    if topic is None:
        parser.print_help()
        return 0
    choice = sub.choices.get(topic)
    if choice is None:
        from palhm_core.errors import UsageError

        raise UsageError(f"no command {topic!r}; commands: {', '.join(sub.choices)}")
    choice.print_help()
    return 0


def config_path(args) -> str:
    return args.config or os.environ.get("PALHM_CONFIG") or DEFAULT_CONFIG


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    from palhm_core import logs
    from palhm_core.errors import PalhmError

    args.vl_override = 0 if args.quiet else None
    log = logs.setup(0 if args.quiet else 3 + args.verbose)
    try:
        return args.func(args) or 0
    except PalhmError as e:
        if args.verbose:
            log.exception("traceback")
        for line in str(e).splitlines() or [type(e).__name__]:
            print(logs.error_line(line), file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # stdout closed early, as by `| head`
        # Point stdout at /dev/null so the interpreter's final flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def effective_vl(args, config_vl: int) -> int:
    """-q says nothing; each -v adds to the config's verbosity."""
    if args.quiet:
        return 0
    return config_vl + args.verbose


def load_config(args):
    """Plugins and the config the command line names."""
    from palhm_core import logs
    from palhm_core.config.loader import load
    from palhm_core.plugins import Plugins

    plugins = Plugins()
    conf = load(config_path(args), plugins)
    vl = effective_vl(args, conf.vl)
    logs.setup(vl)
    return plugins, conf, vl
