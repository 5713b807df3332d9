"""``palhm restore`` and ``backups verify --deep`` from the aws-s3 backend:
a PostgreSQL database dumped to the S3 test server and restored into a new
database, row for row; a stored object replaced behind PALHM's back stops
its restore pipeline."""

from __future__ import annotations

import sys

from restore_util import make_database, need, pg_object, rows, unique

from .util import config, copies, obj, run_palhm, s3_task


def test_postgres_restored_from_s3_into_a_new_database(tmp_path, bucket, postgres):
    need("zstd")
    source = make_database(postgres)
    target = postgres.create_database(unique("palhm_s3_restored"))
    conf = config(tmp_path, s3_task(bucket, [pg_object(postgres, source, target)]))
    done = run_palhm("run", "backup", "--lock-dir", tmp_path / "locks", config=conf)
    assert done.returncode == 0, done.stderr
    done = run_palhm("backups", "verify", "--deep", "backup", config=conf)
    assert done.returncode == 0, done.stderr
    done = run_palhm("restore", "backup", "latest", "db/dump.pgc.zst", config=conf)
    assert done.returncode == 0, done.stderr
    assert rows(postgres, target) == rows(postgres, source)


RECORDER = (
    "import sys; n = len(sys.stdin.buffer.read()); open(sys.argv[1], 'w').write(f'clean {n}')"
)


def test_an_object_replaced_on_s3_stops_the_restore_and_fails_deep_verify(tmp_path, bucket):
    marker = tmp_path / "marker"
    data = obj(
        "data",
        "head",
        "-c",
        "2000000",
        "/dev/zero",
        restore=[{"type": "exec-inline", "argv": [sys.executable, "-c", RECORDER, str(marker)]}],
    )
    conf = config(tmp_path, s3_task(bucket, [data]))
    done = run_palhm("run", "backup", "--lock-dir", tmp_path / "locks", config=conf)
    assert done.returncode == 0, done.stderr
    (prefix,) = copies(bucket)
    bucket.put(f"palhm/backup/{prefix}/data", b"\1" * 2000000)  # same size, other bytes
    done = run_palhm("restore", "backup", config=conf)
    assert done.returncode == 1
    assert f"{prefix}/data: SHA-256" in done.stderr
    assert not marker.exists()
    done = run_palhm("backups", "verify", "--deep", "backup", config=conf)
    assert done.returncode == 1
    assert f"{prefix}/data: SHA-256" in done.stderr
