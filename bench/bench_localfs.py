"""Bench 1: localfs throughput, durable on both sides, 1 GiB and 2 GiB.

A file (in the page cache) goes through ``cat FILE | zstd -1 -T0`` and
through the raw pipe producer ``cat FILE | cat`` into a file on the same
filesystem. The shell writes with a redirection and then runs ``sync FILE``;
PALHM makes a localfs copy (the last stage writes into a pipe, PALHM splices
the bytes into the file and hashes them with SHA-256, files and directories
fsynced, the staging directory renamed). The two sides alternate; the
throughput ratio is shell seconds / PALHM seconds for the whole command
(interpreter start-up and commit included), judged on the median of the
per-round ratios; the spread (lowest and highest round) says how noisy the
machine was.

Targets: >= 0.97 for zstd, >= 0.90 for the raw pipe, at each size. Also
reported: the ratio for the object alone (PALHM's own report of the
object's seconds), PALHM's own CPU seconds and peak RSS.

    python bench/bench_localfs.py [--rounds 5] [--size-mib 1024,2048] [--json FILE]
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import benchlib as bl

TARGETS = {"zstd": 0.97, "raw": 0.90}
SIZES_MIB = (1024, 2048)


def make_input(path, size: int) -> None:
    """``size`` bytes that compress like a database dump (zstd -1: about 3x):
    one 64 MiB block of SQL-like lines, repeated (far beyond zstd's window)."""
    if path.exists() and path.stat().st_size == size:
        return
    rnd = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta"]
    lines = []
    n = 0
    block = 64 * bl.MIB
    while n < block:
        line = (
            f"INSERT INTO events VALUES ({rnd.randrange(10**9)},'{rnd.getrandbits(64):016x}',"
            f"'{rnd.choice(words)} {rnd.choice(words)}',{rnd.random():.6f},"
            f"'2026-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d}');\n"
        )
        lines.append(line)
        n += len(line)
    data = "".join(lines).encode()[:block]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        left = size
        while left:
            f.write(data[: min(left, len(data))])
            left -= min(left, len(data))
    os.replace(tmp, path)


def main() -> int:
    rounds = bl.rounds_arg(5)
    sizes = SIZES_MIB
    if "--size-mib" in sys.argv:
        sizes = tuple(int(n) for n in sys.argv[sys.argv.index("--size-mib") + 1].split(","))
    res = bl.Results(
        "localfs",
        f"1. localfs throughput, {' and '.join(bl.mib(n * bl.MIB) for n in sizes)}, "
        "durable, SHA-256 on",
    )
    tmp = bl.bench_tmp() / "localfs"
    tmp.mkdir(exist_ok=True)
    try:
        for size_mib in sizes:
            bench_size(res, tmp, size_mib * bl.MIB, rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


def bench_size(res: bl.Results, tmp, size: int, rounds: int) -> None:
    src = tmp / "input.sql"
    print(f"making {src} ({bl.mib(size)})", flush=True)
    make_input(src, size)
    subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # page cache
    out = tmp / "out"
    root = tmp / "root"
    report = tmp / "report.json"
    producers = {
        "zstd": ["zstd", "-1", "-T0", "-q"],
        "raw": ["cat"],
    }
    for name, stage2 in producers.items():
        conf = bl.write_config(
            tmp,
            {
                "tasks": [
                    {
                        "id": name,
                        "type": "backup",
                        "backend": "localfs",
                        "backend-param": {
                            "root": str(root),
                            "prefix": {"type": "iso8601", "timespec": "microseconds"},
                        },
                        "objects": [
                            {
                                "path": "data",
                                "pipeline": [bl.inline("cat", str(src)), bl.inline(*stage2)],
                            }
                        ],
                    }
                ]
            },
            name=f"{name}.json",
        )
        shell = f'cat "$1" | {" ".join(stage2)} > "$2" && sync "$2"'
        object_seconds = []

        def shell_side(shell=shell):
            return bl.run(["sh", "-c", shell, "sh", str(src), str(out)])

        def palhm_side(conf=conf, name=name, object_seconds=object_seconds):
            r = bl.run_palhm(["-q", "-f", str(conf), "run", name, "--report", str(report)])
            doc = json.loads(report.read_text())
            object_seconds.append(doc["objects"][0]["seconds"])
            r.extra["bytes"] = doc["objects"][0]["bytes"]
            return r

        def clean():
            if out.exists():
                out.unlink()
            shutil.rmtree(root, ignore_errors=True)
            os.sync()

        clean()
        print(f"{name}, {bl.mib(size)}: shell `{shell}` vs palhm run, {rounds} rounds", flush=True)
        runs = bl.alternate({"shell": shell_side, "palhm": palhm_side}, rounds, between=clean)
        sh_wall = [r.wall for r in runs["shell"]]
        pa_wall = [r.wall for r in runs["palhm"]]
        ratios = [a / b for a, b in zip(sh_wall, pa_wall, strict=True)]
        ratio = bl.median(ratios)
        obj_ratio = bl.paired_ratio(sh_wall, object_seconds)
        label = f"{bl.mib(size)} `cat | {' '.join(stage2)}`"
        res.add(
            f"{label}: shell / PALHM seconds (medians)",
            f"{bl.median(sh_wall):.2f} s / {bl.median(pa_wall):.2f} s",
        )
        res.check(f"{label}: throughput ratio PALHM / shell", ratio, ".3f", ">=", TARGETS[name])
        res.add(
            f"{label}: per-round ratios (lowest, highest)",
            f"{min(ratios):.3f}, {max(ratios):.3f}",
        )
        res.add(f"{label}: same, object phase only", f"{obj_ratio:.3f}")
        res.add(
            f"{label}: PALHM process CPU s (all CPU incl. children: PALHM / shell)",
            f"{bl.median(r.self_cpu for r in runs['palhm']):.2f} "
            f"({bl.median(r.cpu for r in runs['palhm']):.2f} / "
            f"{bl.median(r.cpu for r in runs['shell']):.2f})",
        )
        res.add(f"{label}: PALHM peak RSS", bl.mib(max(r.self_maxrss for r in runs["palhm"])))
        res.add(f"{label}: output bytes", f"{runs['palhm'][0].extra['bytes']:,}")


if __name__ == "__main__":
    sys.exit(main())
