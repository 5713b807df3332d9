"""``palhm backups verify | cat`` read copies back from the S3 server."""

from __future__ import annotations

import hashlib

from .util import config, copies, manifest, obj, run_palhm, s3_task

ROOT = "palhm/backup"

MiB = 1 << 20


def test_verify_names_exactly_the_flipped_object_and_cat_refuses_it(tmp_path, bucket):
    task = s3_task(
        bucket,
        [
            obj("a", "seq", "1", "50000"),
            obj("dir/b", "head", "-c", str(12 * MiB), "/dev/urandom"),
        ],
        **{"part-size": 5 * MiB},
    )
    conf = config(tmp_path, task)
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    (prefix,) = copies(bucket)
    ok = run_palhm("backups", "verify", "backup", "--all", config=conf)
    assert ok.returncode == 0, ok.stderr
    assert f"{prefix}: 2 objects, OK" in ok.stdout

    key = f"{ROOT}/{prefix}/dir/b"
    data = bytearray(bucket.get(key))
    data[7 * MiB + 3] ^= 0x80
    bucket.put(key, bytes(data))
    bad = run_palhm("backups", "verify", "backup", prefix, config=conf)
    assert bad.returncode == 1
    expected = next(
        o["sha256"] for o in manifest(bucket, prefix)["objects"] if o["path"] == "dir/b"
    )
    assert bad.stderr.splitlines() == [
        f"palhm: {prefix}/dir/b: SHA-256 mismatch: {hashlib.sha256(data).hexdigest()}, "
        f"manifest says {expected}"
    ]
    cat = run_palhm("backups", "cat", "backup", "latest", "dir/b", config=conf, text=False)
    assert cat.returncode == 1 and b"does not match the manifest" in cat.stderr
    good = run_palhm("backups", "cat", "backup", "latest", "a", config=conf, text=False)
    assert good.returncode == 0 and good.stdout == b"".join(
        f"{i}\n".encode() for i in range(1, 50001)
    )

    bucket.client.delete_object(Bucket=bucket.name, Key=f"{ROOT}/{prefix}/a")
    gone = run_palhm("backups", "verify", "backup", config=conf)
    assert gone.returncode == 1 and f"{prefix}/a: missing" in gone.stderr
