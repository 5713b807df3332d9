"""The ``palhm`` command.

Exit status: 0 success; 1 a task failed, or PALHM's output could not be written
(stdout closed, a full disk); 2 usage or config error; 75 another run of the
task holds its lock; 128+N stopped by signal N (after rollback). A user's
mistake is one line on stderr; ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import sys

from palhm_core.errors import PalhmError

DEFAULT_CONFIG = "/etc/palhm/palhm.conf"


class OutputError(PalhmError):
    """PALHM's output could not be written: exit status 1."""

    def __init__(self, error: OSError):
        super().__init__(f"cannot write to stdout: {error.strerror or error}")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog.split()[0]} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from palhm_core.cli import backups, bootreport, config, plugins, restore, run

    p = _Parser(
        prog="palhm",
        description="Periodic Automatic Live Host Maintenance: run routine and backup tasks.",
        epilog="Exit status: 0 success, 1 a task failed, 2 usage or config error, "
        "75 the task is already running, 128+N stopped by signal N.",
    )
    _add_global_options(p, {"config": None, "quiet": False, "verbose": 0})
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run.add_parsers(sub)
    config.add_parser(sub)
    plugins.add_parser(sub)
    backups.add_parser(sub)
    restore.add_parser(sub)
    bootreport.add_parser(sub)
    h = sub.add_parser("help", help="show help for a command")
    h.add_argument("topic", nargs="?", metavar="COMMAND")
    h.set_defaults(func=lambda args: _help(p, sub, args.topic))
    _everywhere(sub)
    return p


def _add_global_options(p: argparse.ArgumentParser, defaults: dict | None) -> None:
    """-f/-c, -q and -v. Before the command they have their defaults; after
    it (``palhm run -q backup``), as administrators also type them, they are
    only set when given (SUPPRESS), so as not to undo what came before."""
    kw = (lambda name: {"default": defaults[name]}) if defaults else (lambda name: {})
    if not defaults:
        p.argument_default = argparse.SUPPRESS
    p.add_argument(
        "-f",
        "-c",
        "--config",
        metavar="FILE",
        help=f"config file (default: $PALHM_CONFIG or {DEFAULT_CONFIG})",
        **kw("config"),
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing when all is well", **kw("quiet")
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        help="say more (repeat for debug); tracebacks on errors",
        **kw("verbose"),
    )
    if not defaults:
        p.argument_default = None


def _everywhere(sub) -> None:
    """The global options on every command and subcommand."""
    for parser in sub.choices.values():
        _add_global_options(parser, None)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _everywhere(action)


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


def storage_of(task, doing: str):
    """The backend keeping ``task``'s copies, for a command that ``doing``
    (``prune``, ``restore``) needs them."""
    from palhm_core.errors import UsageError

    backend = task.storage()
    if backend is None or backend.stores_nothing:
        raise UsageError(f"task {task.id!r} keeps no copies: nothing to {doing}")
    return backend


def config_path(args) -> str:
    return args.config or os.environ.get("PALHM_CONFIG") or DEFAULT_CONFIG


def main(argv: list[str] | None = None) -> int:
    _stdio_open()
    # Start-up makes many objects and no garbage: the collector would walk
    # them over and over for nothing (:func:`load_config` turns it back on).
    gc.disable()
    try:
        status = _main(argv)
    except SystemExit as e:  # --help, a usage error
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    try:  # what is left of the output, before the interpreter's own quiet try
        if sys.stdout is not None:
            sys.stdout.flush()
    except OutputError as e:
        from palhm_core import logs

        print(logs.error_line(str(e)), file=sys.stderr)
        _quiet_stdout()
        status = status or e.exit_status
    except BrokenPipeError:
        _quiet_stdout()
        status = status or 1
    return status


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    from palhm_core import logs

    args.vl_override = 0 if args.quiet else None
    log = logs.setup(0 if args.quiet else 3 + args.verbose)
    try:
        status = args.func(args) or 0
        if sys.stdout is not None:
            sys.stdout.flush()
        return status
    except OutputError as e:
        print(logs.error_line(str(e)), file=sys.stderr)
        _quiet_stdout()
        return e.exit_status
    except PalhmError as e:
        if args.verbose:
            log.exception("traceback")
        for line in str(e).splitlines() or [type(e).__name__]:
            print(logs.error_line(line), file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # stdout closed early, as by `| head`
        _quiet_stdout()
        return 1


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of
    what could not be written is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


class _StdoutBuffer(io.BufferedWriter):
    """stdout's bytes: a write that fails (stdout closed, a full disk) raises
    :class:`OutputError`; a closed pipe stays ``BrokenPipeError``."""

    def write(self, data):
        try:
            return super().write(data)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(e) from None

    def flush(self):
        try:
            return super().flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(e) from None


def _stdio_open() -> None:
    """Keep descriptors 0, 1 and 2 taken, so that no file PALHM opens (a
    lock, a copy being written) becomes a command's stdout or stderr: a
    closed one becomes /dev/null, stdout opened read-only so that writing to
    it fails as it would have. stdout's write errors become one line."""
    for fd, flags in ((0, os.O_RDONLY), (1, os.O_RDONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            new = os.open(os.devnull, flags)  # the lowest free descriptor: fd
            if new != fd:
                os.dup2(new, fd)
                os.close(new)
            os.set_inheritable(fd, True)  # the commands' stdio too
    if sys.stderr is None:
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
    if sys.stdout is None or sys.stdout is sys.__stdout__:
        old = sys.stdout
        if old is not None:
            old.flush()
        sys.stdout = io.TextIOWrapper(
            _StdoutBuffer(io.FileIO(1, "w", closefd=False)),
            encoding=getattr(old, "encoding", None) or "utf-8",
            errors=getattr(old, "errors", None) or "strict",
            line_buffering=bool(getattr(old, "line_buffering", False)),
        )


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
    gc.freeze()  # what start-up made lives as long as PALHM: never collected
    gc.enable()
    vl = effective_vl(args, conf.vl)
    logs.setup(vl)
    return plugins, conf, vl
