"""Bench 3: the scheduler.

40 objects, each ``sleep 0.2``, in a 4-level group DAG, ``nb-workers: 4``:

    l1 (12 objects)
    l2a (4), l2b (4)      each after l1
    l3a (6), l3b (6)      each after l2a and l2b
    l4 (8)                after l3a and l3b

Every level is a barrier and fills 4 workers exactly, so the ideal schedule
is (3 + 2 + 3 + 2) x 0.2 s = 2.0 s. PALHM's time is the build phase of its
own report (the copy's start to its end: every object built, null backend);
the reference, run alternately, is the shell doing the same levels with
``xargs -P 4`` (what starting 40 ``sleep`` processes costs here).

Target: PALHM's build phase <= 1.05 x the ideal schedule (median).

    python bench/bench_scheduler.py [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import json
import shutil
import sys

import benchlib as bl

SLEEP = 0.2
WORKERS = 4
LEVELS = [
    [("l1", 12, [])],
    [("l2a", 4, ["l1"]), ("l2b", 4, ["l1"])],
    [("l3a", 6, ["l2a", "l2b"]), ("l3b", 6, ["l2a", "l2b"])],
    [("l4", 8, ["l3a", "l3b"])],
]
TARGET = 1.05


def ideal() -> float:
    rounds = 0
    for level in LEVELS:
        n = sum(count for _, count, _ in level)
        rounds += -(-n // WORKERS)
    return rounds * SLEEP


def config() -> dict:
    groups, objects = [], []
    for level in LEVELS:
        for gid, count, deps in level:
            groups.append({"id": gid, "depends": deps})
            for i in range(count):
                objects.append(
                    {"path": f"{gid}/{i}", "group": gid, "pipeline": [bl.inline("sleep", "0.2")]}
                )
    return {
        "nb-workers": WORKERS,
        "tasks": [
            {
                "id": "dag",
                "type": "backup",
                "backend": "null",
                "object-groups": groups,
                "objects": objects,
            }
        ],
    }


def main() -> int:
    rounds = bl.rounds_arg(5)
    res = bl.Results("scheduler", "3. scheduler: 40 x `sleep 0.2`, 4-level group DAG, 4 workers")
    tmp = bl.bench_tmp() / "scheduler"
    tmp.mkdir(exist_ok=True)
    try:
        conf = bl.write_config(tmp, config())
        report = tmp / "report.json"
        levels = " ".join(str(sum(c for _, c, _ in level)) for level in LEVELS)
        shell = (
            f"for n in {levels}; do seq $n | xargs -P {WORKERS} -I@ sleep {SLEEP} || exit 1; done"
        )
        build = []

        def palhm_side():
            r = bl.run_palhm(["-q", "-f", str(conf), "run", "dag", "--report", str(report)])
            build.append(json.loads(report.read_text())["seconds"])
            return r

        print(f"scheduler: palhm vs `{shell}`, {rounds} rounds", flush=True)
        runs = bl.alternate(
            {"palhm": palhm_side, "shell": lambda: bl.run(["sh", "-c", shell])}, rounds
        )
        best = ideal()
        sh = [r.wall for r in runs["shell"]]
        pa = [r.wall for r in runs["palhm"]]
        res.add("ideal schedule", f"{best:.2f} s")
        res.add(
            "medians: PALHM build phase / PALHM process / shell xargs",
            f"{bl.median(build):.3f} s / {bl.median(pa):.3f} s / {bl.median(sh):.3f} s",
        )
        res.check("PALHM build phase / ideal", bl.median(build) / best, ".3f", "<=", TARGET)
        res.add("PALHM build phase / shell xargs (paired)", f"{bl.paired_ratio(build, sh):.3f}")
        res.add("shell xargs / ideal", f"{bl.median(sh) / best:.3f}")
        res.add("PALHM whole process / ideal", f"{bl.median(pa) / best:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
