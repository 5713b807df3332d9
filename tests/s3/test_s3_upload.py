"""Streaming uploads against the server: round trip, bounded memory, part
growth, alloc-size, single PUT."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from .conftest import REPORT
from .util import config, copies, manifest, obj, run_measured, run_palhm, s3_task

MiB = 1 << 20


def part_log(stderr: str, path: str) -> list[int]:
    """Part sizes palhm logged (-vvvv) for object ``path``."""
    pattern = re.compile(rf"/{re.escape(path)}: part (\d+), (\d+) bytes$")
    parts = {}
    for line in stderr.splitlines():
        m = pattern.search(line)
        if m:
            parts[int(m.group(1))] = int(m.group(2))
    return [parts[n] for n in sorted(parts)]


def server_part_sizes(bucket, key: str) -> list[int] | None:
    """Part sizes as the server stored them, where it tells."""
    if not bucket.server.part_sizes:
        return None
    etag = bucket.head(key)["ETag"].strip('"')
    count = int(etag.split("-")[1]) if "-" in etag else 1
    return [bucket.head(key, PartNumber=n)["ContentLength"] for n in range(1, count + 1)]


@pytest.mark.slow  # hundreds of MiB through the server: nox -s slow
def test_256_mib_from_a_pipe_round_trips(tmp_path, bucket):
    data = tmp_path / "data"
    h = hashlib.sha256()
    with open(data, "wb") as f:
        for _ in range(256):
            block = os.urandom(MiB)
            h.update(block)
            f.write(block)
    conf = config(tmp_path, s3_task(bucket, [obj("db/dump.bin", "cat", str(data))]))
    result, rss, seconds = run_measured("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    (prefix,) = copies(bucket)
    assert bucket.head(f"palhm/backup/{prefix}/db/dump.bin")["ContentLength"] == 256 * MiB
    entry = manifest(bucket, prefix)["objects"][0]
    assert (entry["size"], entry["sha256"]) == (256 * MiB, h.hexdigest())
    sums = bucket.get(f"palhm/backup/{prefix}/SHA256SUMS").decode()
    assert sums == f"{h.hexdigest()}  db/dump.bin\n"
    # Read back through the backend (open_object): the bytes stored are the
    # bytes of the manifest, so those of the file.
    verify = run_palhm("backups", "verify", "backup", config=conf)
    assert verify.returncode == 0, verify.stderr
    assert f"{prefix}: 1 objects, OK" in verify.stdout
    REPORT.append(
        f"256 MiB from a pipe: {256 / seconds:.0f} MiB/s, client peak RSS {rss / 1024:.0f} MiB"
    )


@pytest.mark.slow  # hundreds of MiB through the server: nox -s slow
def test_peak_memory_does_not_grow_with_the_object(tmp_path, bucket):
    rss = {}
    # The baseline: palhm with botocore loaded, one PUT of 1 KiB, no part buffers.
    conf = config(tmp_path / "base", s3_task(bucket, [obj("small", "echo", "x")], root="mem0"))
    result, base, _ = run_measured("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    for mib in (64, 512):
        conf = config(
            tmp_path / str(mib),
            s3_task(
                bucket,
                [obj("blob", "head", "-c", str(mib * MiB), "/dev/urandom")],
                root=f"mem{mib}",
            ),
        )
        result, rss[mib], seconds = run_measured("run", "backup", config=conf)
        assert result.returncode == 0, result.stderr
        (prefix,) = copies(bucket, root=f"mem{mib}")
        assert manifest(bucket, prefix, root=f"mem{mib}")["size"] == mib * MiB
        REPORT.append(
            f"{mib} MiB from /dev/urandom: {mib / seconds:.0f} MiB/s, "
            f"client peak RSS {rss[mib] / 1024:.1f} MiB (8 MiB parts, 4 in flight)"
        )
    assert abs(rss[512] - rss[64]) <= 0.10 * rss[64], rss
    # What streaming adds is the part buffers: 5 of 8 MiB, and some slack.
    assert rss[512] - base <= (5 * 8 + 16) * 1024, (base, rss)
    REPORT.append(
        f"baseline (one 2-byte PUT): client peak RSS {base / 1024:.1f} MiB; streaming adds "
        f"{(rss[512] - base) / 1024:.1f} MiB (5 part buffers = 40 MiB)"
    )


def test_parts_grow_from_a_small_first_part(tmp_path, bucket):
    size = 53 * MiB  # parts of 5, 5, 10, 10, 20 MiB and a last one of 3 MiB
    conf = config(
        tmp_path,
        s3_task(
            bucket,
            [obj("grow", "head", "-c", str(size), "/dev/urandom")],
            **{"part-size": 5 * MiB, "part-growth-interval": 2, "max-concurrency": 2},
        ),
    )
    result = run_palhm("-vvvv", "run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    expected = [5 * MiB, 5 * MiB, 10 * MiB, 10 * MiB, 20 * MiB, 3 * MiB]
    assert part_log(result.stderr, "grow") == expected
    (prefix,) = copies(bucket)
    key = f"palhm/backup/{prefix}/grow"
    assert server_part_sizes(bucket, key) in (None, expected)
    assert bucket.sha256(key)[1] == manifest(bucket, prefix)["objects"][0]["sha256"]


def test_alloc_size_picks_the_first_part_size(tmp_path, bucket):
    # 64 GiB announced: parts of 14 MiB (64 GiB in 5,000 parts); the stream is shorter.
    sized = obj("sized", "head", "-c", str(20 * MiB), "/dev/urandom", **{"alloc-size": 64 << 30})
    conf = config(tmp_path, s3_task(bucket, [sized]))
    result = run_palhm("-vvvv", "run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    assert part_log(result.stderr, "sized") == [14 * MiB, 6 * MiB]
    (prefix,) = copies(bucket)
    assert server_part_sizes(bucket, f"palhm/backup/{prefix}/sized") in (
        None,
        [14 * MiB, 6 * MiB],
    )


def test_what_fits_one_part_is_one_put(tmp_path, bucket):
    part = 5 * MiB
    conf = config(
        tmp_path,
        s3_task(
            bucket,
            [
                obj("empty", "true"),
                obj("small", "head", "-c", "1000", "/dev/urandom"),
                obj("exact", "head", "-c", str(part), "/dev/urandom"),
                obj("over", "head", "-c", str(part + 1), "/dev/urandom"),
            ],
            **{"part-size": part},
        ),
    )
    result = run_palhm("-vvvv", "run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    for path, size in (("empty", 0), ("small", 1000), ("exact", part)):
        assert f"/{path}: {size} bytes in one PUT" in result.stderr
    assert part_log(result.stderr, "over") == [part, 1]
    (prefix,) = copies(bucket)
    base = f"palhm/backup/{prefix}"
    for path, size in (("empty", 0), ("small", 1000), ("exact", part), ("over", part + 1)):
        assert bucket.head(f"{base}/{path}")["ContentLength"] == size
    if bucket.server.part_sizes:
        assert "-" not in bucket.head(f"{base}/exact")["ETag"]
        assert bucket.head(f"{base}/over")["ETag"].strip('"').endswith("-2")
    verify = run_palhm("backups", "verify", "backup", config=conf)
    assert verify.returncode == 0, verify.stderr


def test_checksums_sha256_by_default_none_when_asked(tmp_path, bucket):
    objects = [
        obj("multi", "head", "-c", str(11 * MiB), "/dev/urandom"),
        obj("single", "echo", "one part"),
    ]
    for checksum in ("SHA256", "none"):
        root = f"ck-{checksum}"
        conf = config(
            tmp_path / checksum,
            s3_task(bucket, objects, root=root, checksum=checksum, **{"part-size": 5 * MiB}),
        )
        result = run_palhm("run", "backup", config=conf)
        assert result.returncode == 0, result.stderr
        verify = run_palhm("backups", "verify", "backup", config=conf)
        assert verify.returncode == 0, verify.stderr
        (prefix,) = copies(bucket, root=root)
        if checksum == "SHA256" and bucket.server.keeps_checksums:
            for path in ("multi", "single"):
                head = bucket.head(f"{root}/{prefix}/{path}", ChecksumMode="ENABLED")
                assert head.get("ChecksumSHA256"), (path, head)


def test_throttling_and_server_errors_are_retried(tmp_path, bucket):
    from .flaky_proxy import FlakyProxy

    with FlakyProxy(bucket.endpoint) as proxy:
        task = s3_task(
            bucket,
            [obj("multi", "head", "-c", str(11 * MiB), "/dev/urandom"), obj("one", "echo", "1")],
            **{"endpoint-url": proxy.endpoint, "part-size": 5 * MiB},
        )
        conf = config(tmp_path, task)
        result = run_palhm("run", "backup", config=conf)
        assert result.returncode == 0, result.stderr
        kinds = {(status, method) for status, method, _ in proxy.injected}
        # Three parts throttled, single PUTs and the completion failed once each.
        assert kinds == {(503, "PUT"), (500, "PUT"), (500, "POST")}, proxy.injected
        assert sum(1 for s, m, p in proxy.injected if "partNumber=" in p) == 3
        verify = run_palhm("backups", "verify", "backup", config=conf)
        assert verify.returncode == 0, verify.stderr
    REPORT.append(f"retried after injected errors: {len(proxy.injected)} requests")
