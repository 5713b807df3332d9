"""Bench 2: S3 throughput and client memory.

Throughput: a 512 MiB file (in the page cache) streamed from ``cat FILE``
by PALHM (a backup task with that one object, aws-s3 backend with its
default upload settings, SHA-256 of the stream on) and by ``cat FILE | aws
s3 cp - s3://...`` (the AWS CLI's defaults), whole processes, alternating
(A B, B A, ...), to two servers on 127.0.0.1:

- ``rclone serve s3`` with its data, its VFS cache and the file on a tmpfs
  (``PALHM_BENCH_TMPFS``, default /dev/shm), so that the server is not the
  bottleneck; a fresh server for every run (rclone writes an upload back
  from its cache some seconds after it, which would land in the next run);
- moto's server (which keeps objects in Python memory: it is the bottleneck
  of both clients there).

Ratio: AWS CLI seconds / PALHM seconds, median of the per-round ratios. The
CPU seconds of each client (the process alone) and of the server during each
run say where the time went.

rclone answers every listing with the MD5 of every object listed, which it
computes by reading the objects. PALHM's rotation, after the copy, lists
copy names alone (no object, so no hash); a second rclone series started
with ``--etag-hash ''`` (no hash in listings, as S3, which stores ETags,
answers) shows what listing hashes still cost.

Memory: PALHM's own peak RSS (the palhm process alone, VmHWM) for the
512 MiB object, and for 256 MiB and 2 GiB objects (``head -c N /dev/zero``)
sent to rclone. The 2 GiB peak must stay within 10% of the 256 MiB one.

Targets: throughput >= 1.2 x the AWS CLI; PALHM's peak RSS <= 128 MiB at
every size; flat from 256 MiB to 2 GiB.

The AWS CLI is looked for in ``$PALHM_BENCH_AWS``, next to this Python,
in /tmp/awscli, then on PATH; its rows are skipped, saying so, when there is
none. ``nox -s bench`` installs it next to PALHM (AWS CLI 1.46 carries its
own copy of botocore); in a dev venv, install it apart, so that the venv's
packages stay as they are::

    python3 -m venv /tmp/awscli && /tmp/awscli/bin/pip install awscli

    python bench/bench_s3.py [--rounds 5] [--rss-rounds 2] [--only rclone,moto,rss]
                             [--json FILE]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib as bl
import s3util

SIZE = 512 * bl.MIB
RSS_SIZES = (256 * bl.MIB, 2048 * bl.MIB)
TARGET = 1.2
RSS_LIMIT = 128 * bl.MIB
FLAT = 1.10
BUCKET = "bench"
#: rclone answering listings without reading objects to hash them.
NO_LIST_HASH = ("--etag-hash", "")


def palhm_config(server, path, pipeline):
    return {
        "tasks": [
            {
                "id": "s3",
                "type": "backup",
                "backend": "aws-s3",
                "backend-param": s3util.backend_param(server, BUCKET, "/palhm"),
                "objects": [{"path": path, "pipeline": pipeline}],
            }
        ]
    }


def find_aws() -> Path | None:
    """The AWS CLI's ``aws`` script (a Python console script), or None."""
    candidates = [os.environ.get("PALHM_BENCH_AWS"), bl.BIN / "aws", "/tmp/awscli/bin/aws"]
    candidates.append(shutil.which("aws"))
    for c in candidates:
        if c and os.access(c, os.X_OK) and interpreter(Path(c)):
            return Path(c)
    return None


def interpreter(script: Path) -> str | None:
    """The Python of a console script (its ``#!`` line), or None: selfusage
    runs the script in it, as the script would run itself."""
    with open(script, "rb") as f:
        first = f.readline().decode(errors="replace")
    if first.startswith("#!") and "python" in first:
        return first[2:].split()[0]
    return None


def aws_cp(aws: Path, src, server, dest) -> bl.Run:
    """``cat SRC | aws s3 cp - DEST``, the aws process measured by selfusage."""
    fd, usage = tempfile.mkstemp(prefix="aws-usage.", suffix=".json")
    os.close(fd)
    try:
        shell = 'cat "$1" | "$2" "$3" "$4" --endpoint-url "$5" s3 cp - "$6"'
        argv = [str(interpreter(aws)), str(bl.HERE / "selfusage.py"), str(aws)]
        r = bl.run(
            ["sh", "-c", shell, "sh", str(src), *argv, server.endpoint, dest],
            env={**s3util.ENV, "PALHM_BENCH_USAGE": usage},
        )
        with open(usage) as f:
            doc = json.load(f)
        r.self_cpu, r.self_maxrss = doc["cpu"], doc["maxrss"]
    finally:
        os.unlink(usage)
    return r


def palhm_run(conf: Path) -> bl.Run:
    return bl.run_palhm(["-q", "-f", str(conf), "run", "s3"], env=s3util.ENV)


class Fresh:
    """A new server for every run (rclone), or one server emptied between
    runs (moto); each run's server CPU seconds in ``Run.extra``."""

    def __init__(self, kind: str, workdir: Path, args: tuple[str, ...] = ()):
        self.kind, self.workdir, self.args = kind, workdir, args
        self.server: s3util.Server | None = None
        self.n = 0

    def start(self) -> s3util.Server:
        if self.server is None:
            self.n += 1
            where = self.workdir / f"{self.kind}-{self.n}"
            self.server = s3util.Server(self.kind, where, args=self.args)
            self.server.bucket(BUCKET)
        return self.server

    def measured(self, fn):
        """``fn(server)`` as a side of a round."""

        def side() -> bl.Run:
            server = self.start()
            before = server.cpu()
            r = fn(server)
            r.extra["server_cpu"] = server.cpu() - before
            return r

        return side

    def between(self) -> None:
        if self.server is None:
            return
        if self.kind == "moto":
            self.server.bucket(BUCKET)
            return
        self.stop()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            shutil.rmtree(self.server.workdir, ignore_errors=True)
            self.server = None


def throughput(res, label, fresh: Fresh, src: Path, rounds: int, aws: Path | None, tmp: Path):
    """One series of rounds, PALHM against the AWS CLI; PALHM's peak RSS."""

    def palhm(server):
        conf = bl.write_config(tmp, palhm_config(server, "obj", [bl.inline("cat", str(src))]))
        return palhm_run(conf)

    sides = {"palhm": fresh.measured(palhm)}
    if aws is not None:
        sides["aws"] = fresh.measured(lambda server: aws_cp(aws, src, server, f"s3://{BUCKET}/aws"))
    print(f"s3: {', '.join(sides)}, {label}, {rounds} rounds", flush=True)
    try:
        runs = bl.alternate(sides, rounds, between=fresh.between)
    finally:
        fresh.stop()
    pa = runs["palhm"]
    if aws is None:
        res.add(f"{label}: PALHM seconds (median)", f"{bl.median(r.wall for r in pa):.2f} s")
        res.add(f"{label}: AWS CLI", "skipped: no `aws` found (see bench_s3.py to install it)")
    else:
        aw = runs["aws"]
        res.add(
            f"{label}: AWS CLI / PALHM seconds (medians)",
            f"{bl.median(r.wall for r in aw):.2f} s / {bl.median(r.wall for r in pa):.2f} s",
        )
        res.check(
            f"{label}: throughput ratio PALHM / AWS CLI",
            bl.paired_ratio([r.wall for r in aw], [r.wall for r in pa]),
            ".2f",
            ">=",
            TARGET,
        )
        ratios = sorted(a.wall / p.wall for a, p in zip(aw, pa, strict=True))
        res.add(
            f"{label}: per-round ratios (lowest, highest)", f"{ratios[0]:.2f}, {ratios[-1]:.2f}"
        )
        res.add(
            f"{label}: client CPU s, PALHM / AWS CLI (medians)",
            f"{bl.median(r.self_cpu for r in pa):.2f} / {bl.median(r.self_cpu for r in aw):.2f}",
        )
        res.add(
            f"{label}: server CPU s during PALHM / AWS CLI runs (medians)",
            f"{bl.median(r.extra['server_cpu'] for r in pa):.2f} / "
            f"{bl.median(r.extra['server_cpu'] for r in aw):.2f}",
        )
        res.add(f"{label}: AWS CLI peak RSS", bl.mib(max(r.self_maxrss for r in aw)))
    return max(r.self_maxrss for r in pa)


def memory(res, fresh: Fresh, rounds: int, tmp: Path, peaks: dict[str, int]) -> None:
    """PALHM's peak RSS for 256 MiB and 2 GiB objects to rclone, with
    ``peaks`` (label: bytes) measured before."""

    def sized(n):
        def run(server):
            pipeline = [bl.inline("head", "-c", str(n), "/dev/zero")]
            conf = bl.write_config(tmp, palhm_config(server, "obj", pipeline), f"rss-{n}.json")
            return palhm_run(conf)

        return fresh.measured(run)

    print(f"s3: PALHM peak RSS, 256 MiB and 2 GiB to rclone, {rounds} rounds", flush=True)
    try:
        runs = bl.alternate({bl.mib(n): sized(n) for n in RSS_SIZES}, rounds, between=fresh.between)
    finally:
        fresh.stop()
    by_size = {n: max(r.self_maxrss for r in runs[bl.mib(n)]) for n in RSS_SIZES}
    for n in RSS_SIZES:
        peaks[f"{bl.mib(n)} (rclone)"] = by_size[n]
    for label, peak in peaks.items():
        res.check(
            f"PALHM peak RSS, {label}", peak / bl.MIB, ".1f", "<=", RSS_LIMIT / bl.MIB, " MiB"
        )
    small, big = RSS_SIZES
    res.check("PALHM peak RSS 2 GiB / 256 MiB", by_size[big] / by_size[small], ".3f", "<=", FLAT)
    res.add(
        "PALHM seconds 256 MiB / 2 GiB to rclone (medians)",
        f"{bl.median(r.wall for r in runs[bl.mib(small)]):.1f} s / "
        f"{bl.median(r.wall for r in runs[bl.mib(big)]):.1f} s",
    )


def main() -> int:
    rounds = bl.rounds_arg(5)
    rss_rounds = 2
    if "--rss-rounds" in sys.argv:
        rss_rounds = int(sys.argv[sys.argv.index("--rss-rounds") + 1])
    only = ["rclone", "moto", "rss"]
    if "--only" in sys.argv:
        only = sys.argv[sys.argv.index("--only") + 1].split(",")
    res = bl.Results("s3", "2. S3: PALHM's aws-s3 backend against `aws s3 cp -`")
    aws = find_aws()
    if aws is None:
        res.note(
            "No AWS CLI found: its rows are skipped. Install it with `python3 -m venv "
            "/tmp/awscli && /tmp/awscli/bin/pip install awscli` (or name it in PALHM_BENCH_AWS)."
        )
    shm = s3util.tmpfs_dir()
    if shm is None:
        res.note("No tmpfs found (PALHM_BENCH_TMPFS, /dev/shm): rclone's files are on disk.")
    tmp = (shm or bl.bench_tmp()) / f"palhm-bench-s3.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    peaks: dict[str, int] = {}
    try:
        src = tmp / "input.bin"
        with open(src, "wb") as f:
            subprocess.run(["head", "-c", str(SIZE), "/dev/urandom"], stdout=f, check=True)
        where = "tmpfs" if shm else "disk"
        if "rclone" in only:
            label = f"{bl.mib(SIZE)} to rclone ({where})"
            peaks[f"{bl.mib(SIZE)} (rclone)"] = throughput(
                res, label, Fresh("rclone", tmp), src, rounds, aws, tmp
            )
            label = f"{bl.mib(SIZE)} to rclone ({where}, --etag-hash '')"
            throughput(res, label, Fresh("rclone", tmp, NO_LIST_HASH), src, rounds, aws, tmp)
        if "moto" in only:
            label = f"{bl.mib(SIZE)} to moto"
            peaks[f"{bl.mib(SIZE)} (moto)"] = throughput(
                res, label, Fresh("moto", tmp), src, rounds, aws, tmp
            )
        if "rss" in only:
            memory(res, Fresh("rclone", tmp), rss_rounds, tmp, peaks)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
