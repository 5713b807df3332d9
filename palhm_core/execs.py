"""Exec definitions and the steps that use them: ``exec``, ``exec-append``,
``exec-inline``. An exec is an argv (never given to a shell), variables added
to the inherited environment, the exit codes that count as success, the
verbosity at which its stdout and stderr are shown and how long it may run
(``timeout``, seconds)."""

from __future__ import annotations

import operator
import os
import re
from dataclasses import dataclass, field

from palhm_core.config.place import Place

_EC = re.compile(r"^\s*(?:(<=|>=|==|<|>)?\s*([0-9]+)|([0-9]+)\s*-\s*([0-9]+))\s*$")
_OPS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}


@dataclass(frozen=True)
class ExitCodes:
    """Accepted exit codes, parsed from ``"==0"``, ``"<2"``, ``"0-1"``, ``"1"``..."""

    text: str
    low: int
    high: int

    @classmethod
    def parse(cls, text: str, place: Place) -> ExitCodes:
        m = _EC.match(text) if isinstance(text, str) else None
        if not m:
            raise place.error(
                f'bad exit code range {text!r} (use "==0", "<2", ">=0", "0-1" or a number)'
            )
        op, n, low, high = m.groups()
        if low is not None:
            lo, hi = int(low), int(high)
            if lo > hi:
                raise place.error(f"bad exit code range {text!r}: {lo} is above {hi}")
            return cls(text.strip(), lo, hi)
        n = int(n)
        op = op or "=="
        # Exit codes are 0..255: turn the comparison into an inclusive range.
        accepted = [c for c in range(256) if _OPS[op](c, n)]
        if not accepted:
            raise place.error(f"exit code range {text!r} accepts no exit code")
        return cls(text.strip(), accepted[0], accepted[-1])

    def __contains__(self, code: int) -> bool:
        return self.low <= code <= self.high


SUCCESS = ExitCodes("==0", 0, 0)


@dataclass(frozen=True)
class Exec:
    """A command ready to run."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    ec: ExitCodes = SUCCESS
    vl_stderr: int = 1
    vl_stdout: int = 3
    place: Place | None = field(default=None, compare=False)
    #: Seconds the command may run; past them its process group is ended
    #: (SIGTERM, SIGKILL after a grace period) and it fails. None: no limit.
    timeout: float | None = None

    def env_for_child(self) -> dict[str, str] | None:
        """The child's environment: PALHM's own plus ``env``; None to inherit."""
        if not self.env:
            return None
        import os

        return {**os.environ, **self.env}

    def shell_line(self) -> str:
        """How a shell would write this command (for plans, never run)."""
        import shlex

        env = " ".join(f"{k}=<set>" for k in self.env)
        return (env + " " if env else "") + shlex.join(self.argv)

    @property
    def label(self) -> str:
        """The program's name, for messages."""
        return self.argv[0].rsplit("/", 1)[-1]

    @classmethod
    def from_config(cls, conf: dict, place: Place) -> Exec:
        ec = ExitCodes.parse(conf["ec"], place / "ec") if "ec" in conf else SUCCESS
        return cls(
            argv=tuple(check_argv(conf["argv"], place / "argv")),
            env=check_env(conf.get("env", {}), place / "env"),
            ec=ec,
            vl_stderr=conf.get("vl-stderr", 1),
            vl_stdout=conf.get("vl-stdout", 3),
            place=place,
            timeout=conf.get("timeout"),
        )


def _os_string(text: str, place: Place, what: str, shown: bool = True) -> None:
    """``text`` can be given to the OS: no NUL, and encodable (a lone
    surrogate from a ``\\ud800`` escape is not). ``shown=False``: the error
    does not quote it (a variable's value may be a secret)."""
    what = f"{what} {text!r}" if shown else what
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        raise place.error(f"{what} is not valid unicode") from None
    if b"\0" in raw:
        raise place.error(f"{what} contains a NUL character")


def check_argv(argv, place: Place) -> list[str]:
    for i, arg in enumerate(argv):
        _os_string(arg, place / i, "argument")
    return list(argv)


def check_env(env: dict, place: Place) -> dict[str, str]:
    for name, value in env.items():
        _os_string(name, place / name, "variable name")
        if "=" in name or not name:
            raise (place / name).error(f"bad variable name {name!r}")
        _os_string(value, place / name, "the value", shown=False)
    return dict(env)


def build_step_exec(step: dict, place: Place, execs: dict[str, Exec]) -> Exec:
    """The Exec an ``exec``, ``exec-append`` or ``exec-inline`` step runs."""
    kind = step["type"]
    if kind == "exec-inline":
        return Exec.from_config(step, place)
    exec_id = step["exec-id"]
    base = execs.get(exec_id)
    if base is None:
        known = ", ".join(sorted(execs)) or "none"
        raise (place / "exec-id").error(f"unknown exec {exec_id!r}; defined: {known}")
    # A step may show or hide the definition's output differently.
    vl_stderr = step.get("vl-stderr", base.vl_stderr)
    vl_stdout = step.get("vl-stdout", base.vl_stdout)
    timeout = step.get("timeout", base.timeout)
    if kind == "exec":
        return Exec(base.argv, base.env, base.ec, vl_stderr, vl_stdout, place, timeout)
    return Exec(
        argv=base.argv + tuple(check_argv(step.get("argv", ()), place / "argv")),
        env={**base.env, **check_env(step.get("env", {}), place / "env")},
        ec=base.ec,
        vl_stderr=vl_stderr,
        vl_stdout=vl_stdout,
        place=place,
        timeout=timeout,
    )
