"""Bench 4: start-up.

``palhm --help``, ``palhm plugins``, ``palhm config check``, a null run and a
localfs run of one ``true`` object, against ``python -c pass`` with the same
interpreter, in the same rounds (the order rotates every round). Ratios are
the median of the per-round ratios to the bare interpreter.

Then, in real subprocesses (``python -X importtime`` running the installed
``palhm`` script): boto3 and botocore are never imported by ``palhm --help``,
``palhm plugins``, the null run or a localfs run, with palhm-s3 installed.

PALHM's start-up cache (palhm_core/cache.py) is in a directory of the
bench's own, filled by one run of each command before the rounds, as it is
on a machine where PALHM ran before; ``config check`` is also measured with
the cache unusable (a relative ``XDG_CACHE_HOME``, which PALHM ignores), as
after an upgrade. ``floor`` is an interpreter that only imports the modules
of the standard library a run needs and pluggy, which no start-up of PALHM
can go below.

Targets: ``palhm --help``, ``palhm config check`` and the localfs run <= 4 x
the bare interpreter; no boto3.

    python bench/bench_startup.py [--rounds 15] [--json FILE]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata

import benchlib as bl

TARGET = 4.0
#: What every ``palhm run`` imports before any of PALHM's own code runs: the
#: standard library modules it needs, and pluggy.
FLOOR = (
    "argparse",
    "dataclasses",
    "datetime",
    "hashlib",
    "json",
    "logging",
    "pluggy",
    "re",
    "signal",
    "subprocess",
    "threading",
    "typing",
)


def imported_modules(args: list[str]) -> set[str]:
    """Top-level modules ``palhm ARGS`` imports, from ``-X importtime``."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", bl.PALHM, *args],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise bl.CommandFailed(f"palhm {args} exited {proc.returncode}: {proc.stderr[-2000:]}")
    mods = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            mods.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return mods


def main() -> int:
    rounds = bl.rounds_arg(15)
    res = bl.Results("startup", "4. start-up, against `python -c pass`")
    tmp = bl.bench_tmp() / "startup"
    tmp.mkdir(exist_ok=True)
    try:
        null = bl.write_config(
            tmp,
            {
                "tasks": [
                    {
                        "id": "null",
                        "type": "backup",
                        "backend": "null",
                        "objects": [{"path": "x", "pipeline": [bl.inline("true")]}],
                    },
                    {
                        "id": "local",
                        "type": "backup",
                        "backend": "localfs",
                        "backend-param": {
                            "root": str(tmp / "root"),
                            "nb-copy-limit": 1,
                            "prefix": {"type": "iso8601", "timespec": "microseconds"},
                        },
                        "objects": [{"path": "x", "pipeline": [bl.inline("true")]}],
                    },
                ]
            },
        )
        cache = {"XDG_CACHE_HOME": str(tmp / "cache")}
        for warm in (["plugins"], ["-f", str(null), "config", "check"]):
            bl.run([bl.PALHM, *warm], env=cache)
        floor = f"import {', '.join(FLOOR)}"
        sides = {
            "python -c pass": lambda: bl.run([sys.executable, "-c", "pass"]),
            "floor": lambda: bl.run([sys.executable, "-c", floor]),
            "palhm --help": lambda: bl.run([bl.PALHM, "--help"]),
            "palhm plugins": lambda: bl.run([bl.PALHM, "plugins"], env=cache),
            "palhm config check": lambda: bl.run(
                [bl.PALHM, "-f", str(null), "config", "check"], env=cache
            ),
            "palhm config check (no cache)": lambda: bl.run(
                [bl.PALHM, "-f", str(null), "config", "check"], env={"XDG_CACHE_HOME": "off"}
            ),
            "palhm run (null, one `true`)": lambda: bl.run(
                [bl.PALHM, "-q", "-f", str(null), "run", "null"], env=cache
            ),
            "palhm run (localfs, one `true`)": lambda: bl.run(
                [bl.PALHM, "-q", "-f", str(null), "run", "local"], env=cache
            ),
        }
        judged = {"palhm --help", "palhm config check", "palhm run (localfs, one `true`)"}
        names = list(sides)
        times: dict[str, list[float]] = {n: [] for n in names}
        print(f"start-up: {', '.join(names)}; {rounds} rounds", flush=True)
        for i in range(rounds):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                times[name].append(sides[name]().wall)
        base = times[names[0]]
        res.add("`python -c pass` (median)", f"{bl.median(base) * 1000:.0f} ms")
        for name in names[1:]:
            ratio = bl.paired_ratio(times[name], base)
            what = f"`{name}` / `python -c pass` ({bl.median(times[name]) * 1000:.0f} ms)"
            if name in judged:
                res.check(what, ratio, ".2f", "<=", TARGET, "x")
            else:
                res.add(what, f"{ratio:.2f}x")

        try:
            s3 = metadata.version("palhm-s3")
        except metadata.PackageNotFoundError:
            s3 = None
        checks = {
            "palhm --help": ["--help"],
            "palhm plugins": ["plugins"],
            "palhm run (null)": ["-q", "-f", str(null), "run", "null"],
            "palhm run (localfs)": ["-q", "-f", str(null), "run", "local"],
        }
        for name, args in checks.items():
            heavy = sorted(imported_modules(args) & {"boto3", "botocore", "s3transfer"})
            what = f"`{name}` imports boto3/botocore"
            if s3 is None:
                res.add(what, "palhm-s3 not installed: not checked", "never", None)
            else:
                res.add(what, ", ".join(heavy) or "no", "never", not heavy)
        if s3 is None:
            res.note("palhm-s3 is not installed here, so the boto3 check proves nothing.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
