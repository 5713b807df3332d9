"""Uploads that read the pipe straight into the part buffers (parts of
8 MiB and more), hashed by the core from those buffers, often on its helper
thread: with the fewest buffers there are, the object, its manifest and its
parts must still be exactly the producer's bytes."""

from __future__ import annotations

import hashlib
import os

import pytest

from .test_s3_upload import part_log
from .util import config, copies, manifest, obj, run_palhm, s3_task

MiB = 1 << 20


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 67 MiB file (not a whole number of parts) and its SHA-256."""
    path = tmp_path_factory.mktemp("splice") / "data"
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(67):
            block = os.urandom(MiB)
            h.update(block)
            f.write(block)
    return path, h.hexdigest()


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_fast_producer_with_few_buffers_stores_its_bytes(tmp_path, bucket, data, concurrency):
    path, digest = data
    root = f"splice{concurrency}"
    task = s3_task(
        bucket, [obj("blob", "cat", str(path))], root=root, **{"max-concurrency": concurrency}
    )
    conf = config(tmp_path, task)
    result = run_palhm("-vvvv", "run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    assert part_log(result.stderr, "blob") == [8 * MiB] * 8 + [3 * MiB]
    (prefix,) = copies(bucket, root=root)
    entry = manifest(bucket, prefix, root=root)["objects"][0]
    assert (entry["size"], entry["sha256"]) == (67 * MiB, digest)
    assert bucket.sha256(f"{root}/{prefix}/blob")[1] == digest
    verify = run_palhm("backups", "verify", "backup", config=conf)
    assert verify.returncode == 0, verify.stderr


def test_spliced_parts_grow(tmp_path, bucket, data):
    path, digest = data
    task = s3_task(
        bucket,
        [obj("grow", "cat", str(path))],
        **{"part-size": 8 * MiB, "part-growth-interval": 1, "max-concurrency": 2},
    )
    conf = config(tmp_path, task)
    result = run_palhm("-vvvv", "run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    assert part_log(result.stderr, "grow") == [8 * MiB, 16 * MiB, 32 * MiB, 11 * MiB]
    (prefix,) = copies(bucket)
    assert manifest(bucket, prefix)["objects"][0]["sha256"] == digest
    assert bucket.sha256(f"palhm/backup/{prefix}/grow")[1] == digest


def test_exactly_one_spliced_part_is_one_put(tmp_path, bucket, data):
    path, _ = data
    task = s3_task(bucket, [obj("one", "head", "-c", str(8 * MiB), str(path))])
    conf = config(tmp_path, task)
    result = run_palhm("-vvvv", "run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    assert f"/one: {8 * MiB} bytes in one PUT" in result.stderr
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read(8 * MiB)).hexdigest()
    (prefix,) = copies(bucket)
    assert manifest(bucket, prefix)["objects"][0]["sha256"] == digest
