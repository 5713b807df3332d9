"""The life of copies on S3: complete only with the manifest, rotation,
rollback of failed and stopped runs, leftovers of killed runs, storage
classes, encryption."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from .util import (
    MANIFEST,
    MARKER,
    PALHM,
    TRICKLE,
    config,
    copies,
    manifest,
    obj,
    run_palhm,
    s3_task,
    wait_for,
)

MiB = 1 << 20
ROOT = "palhm/backup"


def put_manifest(bucket, prefix: str, paths: list[str], body: bytes = b"x") -> None:
    """The manifest of task ``backup`` for objects ``paths``, each ``body``:
    what PALHM writes last, which makes the copy complete and the task's."""
    from palhm_core.manifest import make_manifest, manifest_bytes

    digest = hashlib.sha256(body).hexdigest()
    doc = make_manifest(
        task="backup",
        prefix=prefix,
        version="test",
        started=prefix,
        finished=prefix,
        objects=[{"path": p, "size": len(body), "sha256": digest} for p in paths],
    )
    bucket.put(f"{ROOT}/{prefix}/{MANIFEST}", manifest_bytes(doc))


def put_foreign(bucket) -> list[str]:
    """Objects PALHM did not make, in and around ROOT."""
    keys = [f"{ROOT}/notes.txt", f"{ROOT}/foreign/data.bin", "elsewhere/file", f"{ROOT}x/y"]
    for k in keys:
        bucket.put(k)
    return keys


def test_a_copy_is_its_objects_sums_and_manifest(tmp_path, bucket):
    conf = config(
        tmp_path,
        s3_task(
            bucket, [obj("etc/hosts.txt", "echo", "127.0.0.1 localhost")], root="/palhm/backup/"
        ),
    )
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    (prefix,) = copies(bucket)
    assert bucket.key_list() == sorted(
        f"{ROOT}/{prefix}/{p}" for p in ("etc/hosts.txt", "SHA256SUMS", MANIFEST)
    )
    assert manifest(bucket, prefix)["objects"][0]["path"] == "etc/hosts.txt"
    cat = run_palhm("backups", "cat", "backup", "latest", "etc/hosts.txt", config=conf)
    assert (cat.returncode, cat.stdout) == (0, "127.0.0.1 localhost\n"), cat.stderr


def test_rotation_keeps_the_newest_and_never_touches_foreign_objects(tmp_path, bucket):
    foreign = put_foreign(bucket)
    task = s3_task(bucket, [obj("a", "head", "-c", "1000", "/dev/urandom")], **{"nb-copy-limit": 2})
    conf = config(tmp_path, task)
    made = []
    for _ in range(3):
        result = run_palhm("run", "backup", config=conf)
        assert result.returncode == 0, result.stderr
        made.append(copies(bucket)[-1])
    assert copies(bucket) == made[1:]
    listed = run_palhm("backups", "list", "--json", "backup", config=conf)
    assert listed.returncode == 0, listed.stderr
    import json

    rows = json.loads(listed.stdout)["copies"]
    assert [(r["prefix"], r["complete"], r["size"], r["objects"]) for r in rows] == [
        (p, True, 1000, 1) for p in made[1:]
    ]
    # The age comes from the manifest's time in the listing, not from reading it.
    assert all(0 <= r["age-seconds"] < 600 for r in rows), rows
    # By total size: only the copy just made fits, and it is never deleted.
    task["backend-param"]["root-size-limit"] = "1"
    task["backend-param"]["nb-copy-limit"] = "Infinity"
    conf = config(tmp_path, task)
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    (last,) = copies(bucket)
    assert last > made[-1]
    assert set(foreign) <= set(bucket.key_list())
    assert not [k for k in bucket.key_list() if k.endswith(MARKER)]


def test_rotation_of_a_copy_of_1001_objects_lists_pages_and_deletes_in_batches(tmp_path, bucket):
    old = "2000-01-01T00:00:00+00:00"
    # Two pages of listing, two DeleteObjects requests.
    keys = [f"{ROOT}/{old}/f/{i:04d}" for i in range(1001)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: bucket.put(k, b"x"), keys))
    put_manifest(bucket, old, [k[len(f"{ROOT}/{old}/") :] for k in keys])
    conf = config(tmp_path, s3_task(bucket, [obj("a", "echo", "new")], **{"nb-copy-limit": 1}))
    listed = run_palhm("backups", "list", "--json", "backup", config=conf)
    assert '"size": 1001' in listed.stdout, listed.stdout + listed.stderr
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    assert bucket.key_list(f"{ROOT}/{old}/") == []
    assert len(copies(bucket)) == 1


def put_old_copies(bucket, count: int, objects: int) -> list[str]:
    """``count`` complete copies of ``objects`` objects each (plus SHA256SUMS
    and the manifest), older than any PALHM makes now; their PREFIXes."""
    prefixes = [f"2000-01-01T{h:02d}:00:00+00:00" for h in range(count)]
    keys = [f"{ROOT}/{p}/o/{i:03d}" for p in prefixes for i in range(objects)]
    keys += [f"{ROOT}/{p}/SHA256SUMS" for p in prefixes]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: bucket.put(k, b"x"), keys))
    for p in prefixes:  # complete last, as PALHM makes them
        put_manifest(bucket, p, [f"o/{i:03d}" for i in range(objects)])
    return prefixes


def test_rotation_deletes_many_copies_in_batches_across_copies(tmp_path, bucket):
    from .flaky_proxy import FlakyProxy, never_fails

    foreign = put_foreign(bucket)
    old = put_old_copies(bucket, 24, 48)  # 24 copies of 50 keys: 1,200 keys
    with FlakyProxy(bucket.endpoint, fails=never_fails) as proxy:
        params = {"endpoint-url": proxy.endpoint, "nb-copy-limit": 1}
        task = s3_task(bucket, [obj("a", "echo", "new")], **params)
        result = run_palhm("-v", "run", "backup", config=config(tmp_path, task))
        assert result.returncode == 0, result.stderr
    (new,) = copies(bucket)
    assert sorted(bucket.key_list()) == sorted(
        [*foreign, *(f"{ROOT}/{new}/{p}" for p in ("a", "SHA256SUMS", MANIFEST))]
    )
    rotated = [ln.rsplit(" ", 1)[1] for ln in result.stderr.splitlines() if "rotated away" in ln]
    assert rotated == old
    deletes = [path for method, path in proxy.requests if method == "POST" and "?delete" in path]
    puts = [path for method, path in proxy.requests if method == "PUT"]
    # ceil(1,200 / 1,000) DeleteObjects for the copies, one for the marker of
    # the new copy, one for the rotation's journal; no request per old copy.
    assert len(deletes) == 2 + 1 + 1, proxy.requests
    assert sorted(path.split("?")[0].rsplit("/", 1)[1] for path in puts) == sorted(
        [".palhm-partial", "a", "SHA256SUMS", MANIFEST, ".palhm-rotation"]
    )


def test_rotation_on_s3_counts_only_the_tasks_own_whole_copies(tmp_path, bucket):
    gone, damaged, theirs = put_old_copies(bucket, 3, 2)
    put_manifest(bucket, damaged, ["o/000", "o/001", "o/002"])  # o/002 is not stored
    doc = manifest(bucket, theirs)
    bucket.put(f"{ROOT}/{theirs}/{MANIFEST}", json.dumps({**doc, "task": "other"}).encode())
    conf = config(tmp_path, s3_task(bucket, [obj("a", "echo", "new")], **{"nb-copy-limit": 1}))
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    assert f"copy {damaged} is damaged, never counted or rotated: 'o/002' missing" in result.stderr
    (new,) = [p for p in copies(bucket) if p not in (damaged, theirs)]
    assert copies(bucket) == [damaged, theirs, new]
    assert len(bucket.key_list(f"{ROOT}/{theirs}/")) == 4
    listed = json.loads(run_palhm("backups", "list", "--json", "backup", config=conf).stdout)
    states = {c["prefix"]: (c["state"], c["why"], c["size"]) for c in listed["copies"]}
    assert states[damaged] == ("damaged", "'o/002' missing", 2)
    assert states[theirs] == ("foreign", "made by task 'other'", 2)
    assert states[new][0] == "complete"
    assert gone not in states


def test_a_rotation_cut_short_is_finished_by_the_next_run(tmp_path, bucket):
    foreign = put_foreign(bucket)
    gone, still, kept = put_old_copies(bucket, 3, 5)
    # The journal names two copies; the first lost its manifest and some
    # objects before the run was killed, the second is still complete.
    bucket.put(f"{ROOT}/.palhm-rotation", f"# PALHM is deleting\n{gone}\n{still}\n".encode())
    for key in bucket.key_list(f"{ROOT}/{gone}/")[:3] + [f"{ROOT}/{gone}/{MANIFEST}"]:
        bucket.client.delete_object(Bucket=bucket.name, Key=key)
    assert copies(bucket) == [still, kept]
    conf = config(tmp_path, s3_task(bucket, [obj("a", "echo", "next")]))
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    assert f"what rotation left of s3://{bucket.name}/{ROOT}/{gone}/ (3 objects)" in result.stderr
    (new,) = [p for p in copies(bucket) if p not in (still, kept)]
    assert copies(bucket) == [still, kept, new]
    assert bucket.key_list(f"{ROOT}/{gone}/") == []
    assert len(bucket.key_list(f"{ROOT}/{still}/")) == 7
    assert set(foreign) <= set(bucket.key_list())
    assert f"{ROOT}/.palhm-rotation" not in bucket.key_list()


def failing_script(nbytes: int, code: int) -> list[str]:
    return [
        sys.executable,
        "-c",
        f"import os, sys; sys.stdout.buffer.write(os.urandom({nbytes})); sys.exit({code})",
    ]


def test_a_failing_pipeline_leaves_no_object_and_no_upload(tmp_path, bucket):
    foreign = put_foreign(bucket)
    task = s3_task(
        bucket,
        [
            obj("first", "head", "-c", str(6 * MiB), "/dev/urandom", group="one"),
            {
                "path": "second",
                "group": "two",
                "pipeline": [{"type": "exec-inline", "argv": failing_script(12 * MiB, 3)}],
            },
        ],
        groups=[{"id": "one"}, {"id": "two", "depends": ["one"]}],
        **{"part-size": 5 * MiB},
    )
    result = run_palhm("-vvvv", "run", "backup", config=config(tmp_path, task))
    assert result.returncode == 1, result.stderr
    assert "exit" in result.stderr and "second" in result.stderr
    assert "/second: part 2" in result.stderr  # it was a multipart upload
    assert sorted(bucket.key_list()) == sorted(foreign)
    assert bucket.uploads() == []


def start_slow_run(tmp_path, bucket):
    task = s3_task(
        bucket,
        [
            {
                "path": "slow",
                "pipeline": [
                    {"type": "exec-inline", "argv": [sys.executable, TRICKLE, str(12 * MiB), "60"]}
                ],
            }
        ],
        **{"part-size": 5 * MiB},
    )
    proc = subprocess.Popen(
        [PALHM, "-f", str(config(tmp_path, task)), "run", "backup"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: bucket.uploads(), what="a multipart upload")
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_rolls_back_uploads_and_objects(tmp_path, bucket, sig):
    foreign = put_foreign(bucket)
    proc = start_slow_run(tmp_path, bucket)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert sorted(bucket.key_list()) == sorted(foreign)
    assert bucket.uploads() == []


def test_kill_9_leftovers_are_removed_by_the_next_run(tmp_path, bucket):
    foreign = put_foreign(bucket)
    proc = start_slow_run(tmp_path, bucket)
    proc.kill()
    proc.communicate(timeout=60)
    leftover = [k for k in bucket.key_list() if k.endswith(f"/{MARKER}")]
    assert len(leftover) == 1
    assert bucket.uploads()
    # Also a copy whose rotation was interrupted: marker back, manifest gone.
    bucket.put(f"{ROOT}/1999-12-31T00:00:00+00:00/{MARKER}")
    bucket.put(f"{ROOT}/1999-12-31T00:00:00+00:00/a")
    # And a copy killed between its manifest and the marker's removal.
    cut = f"{ROOT}/2000-01-01T00:00:00+00:00"
    for path in (MARKER, "a", "SHA256SUMS", MANIFEST):
        bucket.put(f"{cut}/{path}")
    conf = config(tmp_path, s3_task(bucket, [obj("a", "echo", "next")]))
    shown = run_palhm("backups", "list", "backup", "--json", config=conf)
    assert shown.returncode == 0, shown.stderr
    complete = {c["prefix"]: c["complete"] for c in json.loads(shown.stdout)["copies"]}
    assert complete["2000-01-01T00:00:00+00:00"] is False
    assert not any(complete.values()), complete
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    assert "objects, 1 unfinished uploads)" in result.stderr
    assert "objects, 0 unfinished uploads)" in result.stderr
    assert "(4 objects, 0 unfinished uploads)" in result.stderr
    (prefix,) = copies(bucket)
    assert sorted(bucket.key_list()) == sorted(
        [*foreign, *(f"{ROOT}/{prefix}/{p}" for p in ("a", "SHA256SUMS", MANIFEST))]
    )
    assert bucket.uploads() == []


def test_storage_classes_sink_then_rotate_with_the_manifest_readable(tmp_path, bucket):
    task = s3_task(
        bucket,
        [
            obj("small", "echo", "cold"),
            obj("multi", "head", "-c", str(12 * MiB), "/dev/urandom"),
        ],
        **{
            "part-size": 5 * MiB,
            "sink-storage-class": "STANDARD_IA",
            "rot-storage-class": "GLACIER",
        },
    )
    conf = config(tmp_path, task)
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    (prefix,) = copies(bucket)
    base = f"{ROOT}/{prefix}"
    for path in ("small", "multi"):
        assert bucket.head(f"{base}/{path}").get("StorageClass") == "GLACIER"
    for path in (MANIFEST, "SHA256SUMS"):
        assert bucket.head(f"{base}/{path}").get("StorageClass", "STANDARD") == "STANDARD"
    assert manifest(bucket, prefix)["objects"][1]["size"] == 12 * MiB
    assert not bucket.key_list(f"{base}/{MARKER}")
    assert bucket.uploads() == []
    listed = run_palhm("backups", "list", "backup", config=conf)
    assert listed.returncode == 0 and "complete" in listed.stdout, listed.stderr
    verify = run_palhm("backups", "verify", "backup", config=conf)
    if bucket.server.archive_unreadable:
        assert verify.returncode == 1
        (line,) = verify.stderr.strip().splitlines()
        assert "restore it" in line and f"{base}/small" in line
    else:
        assert verify.returncode == 0, verify.stderr


def test_storage_class_sink_only(tmp_path, bucket):
    conf = config(
        tmp_path,
        s3_task(bucket, [obj("a", "echo", "ia")], **{"sink-storage-class": "STANDARD_IA"}),
    )
    assert run_palhm("run", "backup", config=conf).returncode == 0
    (prefix,) = copies(bucket)
    assert bucket.head(f"{ROOT}/{prefix}/a").get("StorageClass") == "STANDARD_IA"
    assert bucket.head(f"{ROOT}/{prefix}/{MANIFEST}").get("StorageClass", "STANDARD") == "STANDARD"


def test_multipart_copy_changes_the_class_of_large_objects(bucket):
    from palhm_s3.errors import S3Errors
    from palhm_s3.reclass import change_storage_class

    from palhm_core import BackendError

    data = os.urandom(12 * MiB + 123)
    bucket.put("big", data)

    def reclass():
        change_storage_class(
            bucket.client,
            bucket.name,
            "big",
            len(data),
            "STANDARD_IA",
            extra={},
            errors=S3Errors(),
            threshold=5 * MiB,  # what is 5 GiB on S3
            part_size=5 * MiB,
        )

    if not bucket.server.part_copy:  # a clear error, and no upload left
        with pytest.raises(BackendError, match="does not support UploadPartCopy"):
            reclass()
        assert bucket.uploads() == []
        return
    reclass()
    head = bucket.head("big")
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")
    assert bucket.sha256("big") == (len(data), hashlib.sha256(data).hexdigest())
    assert bucket.uploads() == []


def test_server_side_encryption(tmp_path, bucket):
    conf = config(tmp_path, s3_task(bucket, [obj("secret", "echo", "x")], sse="AES256"))
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    (prefix,) = copies(bucket)
    for path in ("secret", MANIFEST, "SHA256SUMS"):
        assert bucket.head(f"{ROOT}/{prefix}/{path}")["ServerSideEncryption"] == "AES256"


def test_an_existing_prefix_is_never_reused(bucket):
    from palhm_s3.backend import S3Backend

    from palhm_core import PrefixExists
    from palhm_core.config.place import Place

    bucket.put(f"{ROOT}/taken/x")
    backend = S3Backend(
        {"bucket": bucket.name, "root": ROOT, "endpoint-url": bucket.endpoint}, Place("t", ())
    )
    backend.open()
    try:
        with pytest.raises(PrefixExists):
            backend.begin("taken")
        assert bucket.key_list() == [f"{ROOT}/taken/x"]
        with backend.begin("free"):
            assert bucket.key_list(f"{ROOT}/free/") == [f"{ROOT}/free/{MARKER}"]
        assert bucket.key_list() == [f"{ROOT}/taken/x"]
    finally:
        backend.close()


# -- the rotation's listing after the commit -----------------------------------------------
#
# A run lists every key once, before its copy (the leftover scan); after the
# commit it lists copy names alone and reuses what the scan found. These
# tests change the bucket while the run makes its copy (the object's own
# pipeline does it, between the scan and the commit), as another writer would.

CHANGER = """\
import json, os, sys
import boto3
client = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
for action, key, body in json.loads(sys.argv[3]):
    if action == "put":
        client.put_object(Bucket=sys.argv[2], Key=key, Body=bytes.fromhex(body))
    else:
        client.delete_object(Bucket=sys.argv[2], Key=key)
sys.stdout.write("made while the bucket changed\\n")
"""


def changing_object(bucket, actions: list[tuple[str, str, bytes]]) -> dict:
    """A backup object whose pipeline applies ``actions`` (``("put", key,
    body)`` or ``("delete", key, b"")``) to the bucket, then writes a line."""
    doc = json.dumps([(a, k, body.hex()) for a, k, body in actions])
    argv = [sys.executable, "-c", CHANGER, bucket.endpoint, bucket.name, doc]
    return {"path": "a", "pipeline": [{"type": "exec-inline", "argv": argv}]}


def copy_keys(prefix: str, paths: list[str], task: str = "backup") -> list[tuple[str, str, bytes]]:
    """The puts that make a complete copy of ``task`` holding ``paths``
    (each ``b"x"``), manifest last."""
    from palhm_core.manifest import make_manifest, manifest_bytes

    body = b"x"
    digest = hashlib.sha256(body).hexdigest()
    doc = make_manifest(
        task=task,
        prefix=prefix,
        version="test",
        started=prefix,
        finished=prefix,
        objects=[{"path": p, "size": len(body), "sha256": digest} for p in paths],
    )
    puts = [("put", f"{ROOT}/{prefix}/{p}", body) for p in paths]
    return [*puts, ("put", f"{ROOT}/{prefix}/{MANIFEST}", manifest_bytes(doc))]


def test_a_copy_made_during_the_run_is_counted_from_a_fresh_listing(tmp_path, bucket):
    (old,) = put_old_copies(bucket, 1, 2)
    other = "2000-01-02T00:00:00+00:00"  # newer than old, made by another writer
    task = s3_task(
        bucket, [changing_object(bucket, copy_keys(other, ["o/000"]))], **{"nb-copy-limit": 2}
    )
    result = run_palhm("run", "backup", config=config(tmp_path, task))
    assert result.returncode == 0, result.stderr
    # Counted: old, other and the new copy are three; the oldest goes.
    (new,) = [p for p in copies(bucket) if p != other]
    assert copies(bucket) == [other, new]
    assert bucket.key_list(f"{ROOT}/{old}/") == []
    assert bucket.key_list(f"{ROOT}/{other}/") == [
        f"{ROOT}/{other}/{p}" for p in ("o/000", MANIFEST)
    ]


def test_a_copy_deleted_during_the_run_is_not_counted(tmp_path, bucket):
    old, gone = put_old_copies(bucket, 2, 2)
    deletes = [("delete", k, b"") for k in sorted(bucket.key_list(f"{ROOT}/{gone}/"))[::-1]]
    task = s3_task(bucket, [changing_object(bucket, deletes)], **{"nb-copy-limit": 2})
    result = run_palhm("run", "backup", config=config(tmp_path, task))
    assert result.returncode == 0, result.stderr
    # old and the new copy are two: nothing to rotate.
    (new,) = [p for p in copies(bucket) if p != old]
    assert copies(bucket) == [old, new]
    assert len(bucket.key_list(f"{ROOT}/{old}/")) == 4
    assert "rotated away" not in result.stderr


def test_a_copy_losing_its_manifest_during_the_run_is_neither_counted_nor_deleted(tmp_path, bucket):
    old, cut = put_old_copies(bucket, 2, 2)
    change = [("delete", f"{ROOT}/{cut}/{MANIFEST}", b"")]
    task = s3_task(bucket, [changing_object(bucket, change)], **{"nb-copy-limit": 2})
    result = run_palhm("run", "backup", config=config(tmp_path, task))
    assert result.returncode == 0, result.stderr
    (new,) = [p for p in copies(bucket) if p != old]
    assert copies(bucket) == [old, new]
    assert len(bucket.key_list(f"{ROOT}/{cut}/")) == 3  # its objects and SHA256SUMS


def test_prefixes_not_palhms_stay_untouched_when_they_change_during_the_run(tmp_path, bucket):
    foreign = put_foreign(bucket)  # ROOT/foreign/data.bin among them
    old = put_old_copies(bucket, 2, 1)
    # Another writer adds to ROOT/foreign, down to a manifest of this task
    # naming what it holds: the scan saw no copy there, and PALHM never made one.
    change = [("put", f"{ROOT}/foreign/more.bin", b"x")]
    change += copy_keys("foreign", ["data.bin", "more.bin"])
    task = s3_task(bucket, [changing_object(bucket, change)], **{"nb-copy-limit": 1})
    result = run_palhm("run", "backup", config=config(tmp_path, task))
    assert result.returncode == 0, result.stderr
    rotated = [ln.rsplit(" ", 1)[1] for ln in result.stderr.splitlines() if "rotated away" in ln]
    assert rotated == old
    (new,) = [p for p in copies(bucket) if p != "foreign"]
    assert sorted(bucket.key_list()) == sorted(
        [
            *foreign,
            f"{ROOT}/foreign/more.bin",
            f"{ROOT}/foreign/{MANIFEST}",
            *(f"{ROOT}/{new}/{p}" for p in ("a", "SHA256SUMS", MANIFEST)),
        ]
    )


def test_the_rotation_lists_copy_names_alone_after_the_commit(tmp_path, bucket):
    from .flaky_proxy import FlakyProxy, never_fails

    old = put_old_copies(bucket, 3, 1)
    with FlakyProxy(bucket.endpoint, fails=never_fails) as proxy:
        params = {"endpoint-url": proxy.endpoint, "nb-copy-limit": 2}
        task = s3_task(bucket, [obj("a", "echo", "new")], **params)
        result = run_palhm("-v", "run", "backup", config=config(tmp_path, task))
        assert result.returncode == 0, result.stderr
    (new,) = [p for p in copies(bucket) if p not in old]
    assert copies(bucket) == [old[2], new]
    lists = [path for method, path in proxy.requests if method == "GET" and "list-type=2" in path]
    # The scan of ROOT, the check that PREFIX is free, then names alone.
    assert len(lists) == 3, lists
    assert "delimiter=" not in lists[0] and "delimiter=%2F" in lists[2], lists


def test_a_copy_rewritten_during_the_run_is_never_deleted_in_part(tmp_path, bucket):
    (old,) = put_old_copies(bucket, 1, 2)
    # Another writer adds an object to the complete copy and a manifest naming
    # it, after the scan: deleting the copy from what the scan saw would leave
    # o/002 behind. The copy is kept whole (judged from its new manifest
    # against the scan) or deleted whole (from a fresh listing).
    change = copy_keys(old, ["o/000", "o/001", "o/002"])
    task = s3_task(bucket, [changing_object(bucket, change)], **{"nb-copy-limit": 1})
    result = run_palhm("run", "backup", config=config(tmp_path, task))
    assert result.returncode == 0, result.stderr
    whole = [f"{ROOT}/{old}/{p}" for p in ("SHA256SUMS", "o/000", "o/001", "o/002", MANIFEST)]
    assert bucket.key_list(f"{ROOT}/{old}/") in (whole, [])
    # The next run lists every key before its copy: the copy is rotated, whole.
    task = s3_task(bucket, [obj("a", "echo", "x")], **{"nb-copy-limit": 1})
    result = run_palhm("run", "backup", config=config(tmp_path, task))
    assert result.returncode == 0, result.stderr
    assert bucket.key_list(f"{ROOT}/{old}/") == []
