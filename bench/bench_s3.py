"""Bench 2: S3 throughput and client memory.

Throughput: a 512 MiB file (in the page cache) streamed from ``cat FILE``
to moto's S3 server on 127.0.0.1, by PALHM (aws-s3 backend with its default
upload settings, SHA-256 of the stream on) and by ``cat FILE | aws s3 cp -
s3://...`` (the AWS CLI's defaults) to the same server, alternating. Ratio:
AWS CLI seconds / PALHM seconds, median of the per-round ratios.

Memory: PALHM's own peak RSS (the palhm process alone, VmHWM) for that
512 MiB object, and for 256 MiB and 2 GiB objects (``head -c N /dev/zero``)
sent to ``rclone serve s3`` (moto keeps whole objects in memory, too much
for 2 GiB). The 2 GiB peak must stay within 10% of the 256 MiB one.

Targets: throughput >= 1.2 x the AWS CLI; PALHM's peak RSS <= 128 MiB at
every size; flat from 256 MiB to 2 GiB.

    python bench/bench_s3.py [--rounds 5] [--rss-rounds 2] [--json FILE]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import benchlib as bl
import s3util

SIZE = 512 * bl.MIB
RSS_SIZES = (256 * bl.MIB, 2048 * bl.MIB)
TARGET = 1.2
RSS_LIMIT = 128 * bl.MIB
FLAT = 1.10


def palhm_config(server, bucket, path, pipeline):
    return {
        "tasks": [
            {
                "id": "s3",
                "type": "backup",
                "backend": "aws-s3",
                "backend-param": s3util.backend_param(server, bucket, "/palhm"),
                "objects": [{"path": path, "pipeline": pipeline}],
            }
        ]
    }


def aws_cp(src, server, dest) -> bl.Run:
    """``cat SRC | aws s3 cp - DEST``, the aws process measured by selfusage."""
    fd, usage = tempfile.mkstemp(prefix="aws-usage.", suffix=".json")
    os.close(fd)
    try:
        shell = 'cat "$1" | "$2" "$3" "$4" --endpoint-url "$5" s3 cp - "$6"'
        r = bl.run(
            [
                "sh",
                "-c",
                shell,
                "sh",
                str(src),
                sys.executable,
                str(bl.HERE / "selfusage.py"),
                str(bl.BIN / "aws"),
                server.endpoint,
                dest,
            ],
            env={**s3util.ENV, "PALHM_BENCH_USAGE": usage},
        )
        with open(usage) as f:
            doc = json.load(f)
        r.self_cpu, r.self_maxrss = doc["cpu"], doc["maxrss"]
    finally:
        os.unlink(usage)
    return r


def main() -> int:
    rounds = bl.rounds_arg(5)
    rss_rounds = 2
    if "--rss-rounds" in sys.argv:
        rss_rounds = int(sys.argv[sys.argv.index("--rss-rounds") + 1])
    res = bl.Results("s3", "2. S3: PALHM's aws-s3 backend against `aws s3 cp -`")
    tmp = bl.bench_tmp() / "s3"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    servers = []
    try:
        src = tmp / "input.bin"
        with open(src, "wb") as f:
            subprocess.run(["head", "-c", str(SIZE), "/dev/urandom"], stdout=f, check=True)
        moto = s3util.Server("moto", tmp / "moto")
        servers.append(moto)
        bucket = "bench"
        moto.bucket(bucket)
        conf = bl.write_config(
            tmp, palhm_config(moto, bucket, "obj", [bl.inline("cat", str(src))]), "moto.json"
        )
        print(f"s3: palhm vs aws s3 cp -, {bl.mib(SIZE)} to moto, {rounds} rounds", flush=True)
        runs = bl.alternate(
            {
                "aws": lambda: aws_cp(src, moto, f"s3://{bucket}/aws/obj"),
                "palhm": lambda: bl.run_palhm(["-q", "-f", str(conf), "run", "s3"], env=s3util.ENV),
            },
            rounds,
            between=lambda: moto.bucket(bucket),
        )
        aws = [r.wall for r in runs["aws"]]
        pa = [r.wall for r in runs["palhm"]]
        res.add(
            "512 MiB to moto: AWS CLI / PALHM seconds (medians)",
            f"{bl.median(aws):.2f} s / {bl.median(pa):.2f} s",
        )
        res.check("throughput ratio PALHM / AWS CLI", bl.paired_ratio(aws, pa), ".2f", ">=", TARGET)
        res.add(
            "client CPU s: PALHM / AWS CLI (medians)",
            f"{bl.median(r.self_cpu for r in runs['palhm']):.2f} / "
            f"{bl.median(r.self_cpu for r in runs['aws']):.2f}",
        )
        res.add("AWS CLI peak RSS (512 MiB)", bl.mib(max(r.self_maxrss for r in runs["aws"])))
        peak = {SIZE: max(r.self_maxrss for r in runs["palhm"])}
        moto.stop()

        rclone = s3util.Server("rclone", tmp / "rclone")
        servers.append(rclone)
        rclone.bucket(bucket)
        confs = {
            n: bl.write_config(
                tmp,
                palhm_config(rclone, bucket, "obj", [bl.inline("head", "-c", str(n), "/dev/zero")]),
                f"rclone-{n}.json",
            )
            for n in RSS_SIZES
        }
        print(f"s3: PALHM peak RSS, 256 MiB and 2 GiB to rclone, {rss_rounds} rounds", flush=True)

        def clean():
            rclone.bucket(bucket)
            shutil.rmtree(tmp / "rclone" / "cache", ignore_errors=True)

        sized = bl.alternate(
            {
                bl.mib(n): (
                    lambda n=n: bl.run_palhm(
                        ["-q", "-f", str(confs[n]), "run", "s3"], env=s3util.ENV
                    )
                )
                for n in RSS_SIZES
            },
            rss_rounds,
            between=clean,
        )
        for n in RSS_SIZES:
            peak[n] = max(r.self_maxrss for r in sized[bl.mib(n)])
        for n in sorted(peak):
            where = "moto" if n == SIZE else "rclone"
            res.check(
                f"PALHM peak RSS, {bl.mib(n)} ({where})",
                peak[n] / bl.MIB,
                ".1f",
                "<=",
                RSS_LIMIT / bl.MIB,
                " MiB",
            )
        small, big = RSS_SIZES
        res.check("PALHM peak RSS 2 GiB / 256 MiB", peak[big] / peak[small], ".3f", "<=", FLAT)
        res.add(
            "PALHM seconds 256 MiB / 2 GiB to rclone (medians)",
            f"{bl.median(r.wall for r in sized[bl.mib(small)]):.1f} s / "
            f"{bl.median(r.wall for r in sized[bl.mib(big)]):.1f} s",
        )
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
