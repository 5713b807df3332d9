"""What every bench script shares: running a command and measuring it, the
alternated A/B rounds, medians and ratios, the result table and the verdict.

Numbers on a shared machine are noisy, so a bench never judges seconds: it
runs the two sides of a pair in the same rounds, alternating which goes first
(A B, B A, A B, ...), and judges the median of the per-round ratios.

Measurements of a command come from the kernel: wall time around the child,
and ``os.wait4`` for its CPU time and peak RSS (which, for a process that
waited for its own children, include theirs). PALHM's own share is measured
inside it by :mod:`selfusage`, which runs the real ``palhm`` script and writes
its own CPU time and ``VmHWM`` at exit.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PALHM = str(BIN / "palhm")
MIB = 1 << 20
GIB = 1 << 30


def bench_tmp() -> Path:
    """Where large files go (``PALHM_BENCH_TMP``, default /tmp/palhm-bench)."""
    path = Path(os.environ.get("PALHM_BENCH_TMP", "/tmp/palhm-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Run:
    """One measured run of a command."""

    wall: float
    #: CPU seconds (user + system) of the process and the children it waited for
    cpu: float
    #: peak RSS in bytes of the process or of its largest waited-for child
    maxrss: int
    returncode: int
    #: PALHM's own share (``selfusage``): cpu and maxrss of the palhm process alone
    self_cpu: float | None = None
    self_maxrss: int | None = None
    extra: dict = field(default_factory=dict)


class CommandFailed(RuntimeError):
    pass


def run(
    argv: list[str],
    *,
    env: dict | None = None,
    cwd: str | None = None,
    stdout=subprocess.DEVNULL,
    stderr=None,
    check: bool = True,
) -> Run:
    """Run ``argv`` and measure it. ``check``: raise unless it exits 0."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env=full_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=err if stderr is None else stderr,
        )
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if check and proc.returncode != 0:
            err.seek(0)
            text = err.read().decode(errors="replace")[-4000:]
            raise CommandFailed(f"{argv!r} exited {proc.returncode}:\n{text}")
    return Run(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024, proc.returncode)


def run_palhm(args: list[str], *, env: dict | None = None, cwd=None, check=True) -> Run:
    """Run the installed ``palhm`` script and measure it, including PALHM's
    own CPU time and peak RSS."""
    return run_script(PALHM, args, env=env, cwd=cwd, check=check)


def run_script(script: str, args: list[str], *, env=None, cwd=None, check=True, **kw) -> Run:
    """Run a Python console script of this environment (``palhm``, ``aws``)
    through :mod:`selfusage`, measuring its own CPU time and peak RSS too."""
    fd, usage = tempfile.mkstemp(prefix="palhm-usage.", suffix=".json")
    os.close(fd)
    try:
        r = run(
            [sys.executable, str(HERE / "selfusage.py"), script, *args],
            env={**(env or {}), "PALHM_BENCH_USAGE": usage},
            cwd=cwd,
            check=check,
            **kw,
        )
        with open(usage) as f:
            doc = json.load(f)
        r.self_cpu = doc["cpu"]
        r.self_maxrss = doc["maxrss"]
        if "requests" in doc:
            r.extra["requests"] = doc["requests"]
    finally:
        os.unlink(usage)
    return r


def alternate(
    sides: dict[str, Callable[[], Run]],
    rounds: int,
    *,
    between: Callable[[], None] | None = None,
    log=print,
) -> dict[str, list[Run]]:
    """Run each side ``rounds`` times, alternating the order every round
    (A B, B A, ...). ``between`` runs after every run, untimed (clean-up)."""
    names = list(sides)
    out: dict[str, list[Run]] = {n: [] for n in names}
    for i in range(rounds):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            r = sides[name]()
            out[name].append(r)
            log(f"  round {i + 1}/{rounds} {name}: {r.wall:.3f} s wall, {r.cpu:.2f} s cpu")
            if between is not None:
                between()
    return out


def median(values) -> float:
    return statistics.median(list(values))


def paired_ratio(num: list[float], den: list[float]) -> float:
    """The median of the per-round ratios ``num[i] / den[i]``."""
    return median(a / b for a, b in zip(num, den, strict=True))


@dataclass
class Row:
    """One line of the result table."""

    bench: str
    what: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: reported, not judged


class Results:
    """The rows a bench script produced, printed as a table and written as
    JSON (``--json FILE``) for ``run_all`` to gather into RESULTS.md."""

    def __init__(self, bench: str, title: str):
        self.bench = bench
        self.title = title
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.started = time.monotonic()

    def add(self, what: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.rows.append(Row(self.bench, what, value, target, ok))

    def check(self, what: str, value: float, fmt: str, op: str, limit: float, unit: str = ""):
        ok = value >= limit if op == ">=" else value <= limit
        self.add(what, f"{value:{fmt}}{unit}", f"{op} {limit:{fmt}}{unit}", ok)
        return ok

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def missed(self) -> list[Row]:
        return [r for r in self.rows if r.ok is False]

    def table(self) -> str:
        lines = ["| what | result | target | |", "| --- | --- | --- | --- |"]
        for r in self.rows:
            mark = "" if r.ok is None else ("met" if r.ok else "**missed**")
            lines.append(f"| {r.what} | {r.value} | {r.target} | {mark} |")
        return "\n".join(lines)

    def finish(self, argv: list[str] | None = None) -> int:
        """Print the table, write ``--json FILE`` if asked; the exit status:
        1 if a target was missed."""
        argv = sys.argv[1:] if argv is None else argv
        seconds = time.monotonic() - self.started
        print(f"\n## {self.title}\n")
        print(self.table())
        for n in self.notes:
            print(f"\n{n}")
        print(f"\n({seconds:.0f} s)")
        if "--json" in argv:
            path = argv[argv.index("--json") + 1]
            with open(path, "w") as f:
                json.dump(
                    {
                        "bench": self.bench,
                        "title": self.title,
                        "rows": [asdict(r) for r in self.rows],
                        "notes": self.notes,
                        "seconds": round(seconds, 1),
                    },
                    f,
                    indent=2,
                )
        if self.missed:
            print(f"\n{self.bench}: missed: " + "; ".join(r.what for r in self.missed))
            return 1
        return 0


def rounds_arg(default: int) -> int:
    """``--rounds N`` from the command line (at least 5 for a judged run)."""
    if "--rounds" in sys.argv:
        return int(sys.argv[sys.argv.index("--rounds") + 1])
    return int(os.environ.get("PALHM_BENCH_ROUNDS", default))


def write_config(directory: Path, doc: dict, name: str = "palhm.json") -> Path:
    path = Path(directory) / name
    path.write_text(json.dumps(doc, indent=2))
    return path


def inline(*argv: str) -> dict:
    return {"type": "exec-inline", "argv": list(argv)}


def machine() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": usable,
        "cpu-model": model,
        "memory-gib": round(mem / GIB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def mib(n: int | float) -> str:
    return f"{n / MIB:.1f} MiB"
