"""Bench 5: rotation at scale.

localfs: a root holding 5,000 complete copies (made directly in PALHM's
on-disk format: a directory per PREFIX with an object, ``SHA256SUMS`` and
``palhm-manifest.json`` from :mod:`palhm_core.manifest`), rotated down to 10
copies by ``palhm run`` of a task with ``nb-copy-limit: 10`` and one ``true``
object, against the shell removing all but the 10 newest directories
(``ls | sort | head -n -10 | xargs rm -rf; sync .``), alternating. PALHM's
time includes making its own copy; a run of the same task on a root of 9
copies (nothing to rotate) is reported too.

S3: 100,000 keys in 1,000 copies served by ``rclone serve s3`` from files
(made once, hard-linked afresh for every run, on a server started afresh),
rotated down to 10 copies by ``palhm run`` against :mod:`s3_rotate_ref`
(boto3: list everything, DeleteObjects 1,000 keys at a time), alternating;
every request a client sends is counted (:mod:`selfusage`). The least a
rotation needs is the list pages plus ceil(deleted keys / 1,000)
DeleteObjects.

Target: PALHM's S3 list and delete requests <= that least count plus what
making its own copy needs: one more listing of ROOT before the copy is begun
(the scan for what killed runs left), the PREFIX check, the deletion of its
copy's marker and of the rotation's journal.

    python bench/bench_rotation.py [--rounds 5] [--s3-rounds N] [--disk]
                                   [--only-s3 | --only-localfs] [--json FILE]

The localfs root is on /dev/shm (tmpfs) unless ``--disk`` puts it under
PALHM_BENCH_TMP: see the note in main().
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import benchlib as bl
import s3util

LOCAL_COPIES = 5000
S3_COPIES = 1000
KEYS_PER_COPY = 100
KEEP = 10
#: list and delete requests of PALHM's own copy and journal, beyond the
#: leftover scan: the PREFIX check, the marker's and the journal's deletion
OWN_REQUESTS = 3


def write_copies(root: Path, n: int, paths: list[str], mode: int = 0o755) -> int:
    """``n`` complete copies under ``root`` in PALHM's on-disk format, an hour
    apart from 2020-01-01: per copy the 16-byte objects ``paths``,
    ``SHA256SUMS`` and ``palhm-manifest.json`` (:mod:`palhm_core.manifest`).
    The number of files written."""
    from palhm_core.manifest import MANIFEST_NAME, SUMS_NAME, make_manifest, manifest_bytes

    body = b"x" * 16
    entries = [{"path": p, "size": len(body), "sha256": "0" * 64} for p in paths]
    sums = "".join(f"{e['sha256']}  {e['path']}\n" for e in entries).encode()
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    for c in range(n):
        when = start + timedelta(hours=c)
        prefix = when.isoformat(timespec="seconds")
        d = root / prefix
        d.mkdir(mode=mode)
        for e in entries:
            (d / e["path"]).write_bytes(body)
        (d / SUMS_NAME).write_bytes(sums)
        manifest = make_manifest(
            task="rot",
            prefix=prefix,
            version="bench",
            started=when.isoformat(),
            finished=when.isoformat(),
            objects=entries,
        )
        (d / MANIFEST_NAME).write_bytes(manifest_bytes(manifest))
    return n * (len(entries) + 2)


def make_local_copies(root: Path, n: int) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    write_copies(root, n, ["data"], mode=0o750)
    os.sync()


def fs_type(path: Path) -> str:
    """The type of the filesystem holding ``path`` (from /proc/mounts)."""
    best, kind = "", "?"
    real = str(path.resolve())
    with open("/proc/mounts") as f:
        for line in f:
            _, mnt, fstype, *_ = line.split()
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, fstype
    return kind


def count_copies(root: Path) -> int:
    return sum(1 for p in root.iterdir() if (p / "palhm-manifest.json").exists())


def task(backend: str, params: dict) -> dict:
    return {
        "tasks": [
            {
                "id": "rot",
                "type": "backup",
                "backend": backend,
                "backend-param": {**params, "nb-copy-limit": KEEP},
                "objects": [{"path": "x", "pipeline": [bl.inline("true")]}],
            }
        ]
    }


def bench_localfs(res: bl.Results, tmp: Path, rounds: int, where: Path) -> None:
    root = where / "palhm-bench-rotation"
    conf = bl.write_config(
        tmp,
        task(
            "localfs",
            {"root": str(root), "prefix": {"type": "iso8601", "timespec": "microseconds"}},
        ),
        "localfs.json",
    )
    shell = f'cd "$1" && ls -1 | sort | head -n -{KEEP} | xargs rm -rf && sync .'
    left = {"shell": [], "palhm": [], "palhm, nothing to rotate": []}

    def shell_side():
        r = bl.run(["sh", "-c", shell, "sh", str(root)])
        left["shell"].append(count_copies(root))
        return r

    def palhm_side(name="palhm"):
        r = bl.run_palhm(["-q", "-f", str(conf), "run", "rot"])
        left[name].append(count_copies(root))
        return r

    def between_full():
        make_local_copies(root, LOCAL_COPIES)

    fs = fs_type(where)
    print(
        f"rotation: localfs on {where} ({fs}), {LOCAL_COPIES} copies down to {KEEP}, "
        f"{rounds} rounds",
        flush=True,
    )
    between_full()
    runs = bl.alternate({"shell": shell_side, "palhm": palhm_side}, rounds, between=between_full)
    make_local_copies(root, KEEP - 1)
    base = [palhm_side("palhm, nothing to rotate") for _ in range(3)]
    sh = [r.wall for r in runs["shell"]]
    pa = [r.wall for r in runs["palhm"]]
    res.add(
        f"localfs ({fs}) {LOCAL_COPIES} -> {KEEP} copies: shell / PALHM seconds (medians)",
        f"{bl.median(sh):.2f} s / {bl.median(pa):.2f} s",
    )
    res.add("localfs: PALHM / shell time (paired)", f"{bl.paired_ratio(pa, sh):.2f}x")
    res.add(
        f"localfs: PALHM run with {KEEP - 1} copies (nothing to rotate, median)",
        f"{bl.median(r.wall for r in base):.2f} s",
    )
    per_copy = (bl.median(pa) - bl.median(r.wall for r in base)) / (LOCAL_COPIES + 1 - KEEP)
    res.add("localfs: PALHM per deleted copy", f"{per_copy * 1000:.2f} ms")
    ok = all(n == KEEP for n in left["palhm"]) and all(n == KEEP for n in left["shell"])
    res.add("localfs: copies left", f"{sorted(set(left['palhm']))}", f"{KEEP}", ok)
    shutil.rmtree(root, ignore_errors=True)


def make_s3_template(top: Path) -> int:
    """ROOT ``palhm`` of 1,000 complete copies as files for ``rclone serve s3``:
    per copy 98 objects, ``SHA256SUMS`` and the manifest."""
    root = top / "palhm"
    root.mkdir(parents=True)
    return write_copies(root, S3_COPIES, [f"obj-{i:03d}" for i in range(KEYS_PER_COPY - 2)])


def bench_s3(res: bl.Results, tmp: Path, rounds: int, where: Path) -> None:
    top = where / "palhm-bench-s3-rotation"
    shutil.rmtree(top, ignore_errors=True)
    template = top / "template"
    template.mkdir(parents=True)
    total = make_s3_template(template)
    state = {"server": None, "bucket": "rot"}

    def fresh():
        # A new server for every run: files put behind rclone's back are not in
        # its directory cache.
        if state["server"] is not None:
            state["server"].stop()
        shutil.rmtree(top / "server", ignore_errors=True)
        bucket = top / "server" / "data" / state["bucket"]
        bucket.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(template / "palhm"), str(bucket)], check=True)
        state["server"] = s3util.Server("rclone", top / "server", vfs_cache=False)

    try:
        requests = {"reference": [], "palhm": []}
        left = {"reference": [], "palhm": []}
        env = {**s3util.ENV, "PALHM_BENCH_COUNT_REQUESTS": "1"}

        def copies_left() -> int:
            root = state["server"].data / state["bucket"] / "palhm"
            return sum(1 for p in root.iterdir() if (p / "palhm-manifest.json").exists())

        def ref_side():
            r = bl.run_script(
                str(bl.HERE / "s3_rotate_ref.py"),
                [state["server"].endpoint, state["bucket"], "/palhm", str(KEEP)],
                env=env,
            )
            requests["reference"].append(r.extra["requests"])
            left["reference"].append(copies_left())
            return r

        def palhm_side():
            param = s3util.backend_param(state["server"], state["bucket"], "/palhm")
            conf = bl.write_config(tmp, task("aws-s3", param), "s3.json")
            r = bl.run_palhm(["-q", "-f", str(conf), "run", "rot"], env=env)
            requests["palhm"].append(r.extra["requests"])
            left["palhm"].append(copies_left())
            return r

        print(
            f"rotation: S3 (rclone serve s3 on {fs_type(where)}), {total:,} keys in "
            f"{S3_COPIES} copies down to {KEEP}, {rounds} rounds",
            flush=True,
        )
        fresh()
        runs = bl.alternate({"reference": ref_side, "palhm": palhm_side}, rounds, between=fresh)
        ref = [r.wall for r in runs["reference"]]
        pa = [r.wall for r in runs["palhm"]]
        pages = math.ceil(total / 1000)
        # PALHM makes a copy of its own first (its object, SHA256SUMS and the
        # manifest), which its rotation lists too, and so deletes one copy
        # more than the reference to keep 10.
        rotation_pages = math.ceil((total + 3) / 1000)
        palhm_keys = total - (KEEP - 1) * KEYS_PER_COPY
        least = rotation_pages + math.ceil(palhm_keys / 1000)
        res.add(
            f"S3 {total:,} keys, {S3_COPIES} -> {KEEP} copies: reference / PALHM seconds (medians)",
            f"{bl.median(ref):.2f} s / {bl.median(pa):.2f} s",
        )
        res.add("S3: PALHM / reference time (paired)", f"{bl.paired_ratio(pa, ref):.2f}x")
        for side in ("reference", "palhm"):
            counts = requests[side][-1]
            detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            res.add(f"S3 requests, {side}", f"{sum(counts.values()):,} ({detail})")
        ok = all(n == KEEP for side in left.values() for n in side)
        res.add(
            "S3: copies left", f"{sorted({n for v in left.values() for n in v})}", f"{KEEP}", ok
        )
        counts = requests["palhm"][-1]
        lists = counts.get("ListObjectsV2", 0)
        deletes = counts.get("DeleteObjects", 0) + counts.get("DeleteObject", 0)
        allowed = least + pages + OWN_REQUESTS
        res.check(
            "S3: PALHM list + delete requests / (2 x list pages + ceil(keys / 1,000) + 3)",
            (lists + deletes) / allowed,
            ".2f",
            "<=",
            1.0,
            "x",
        )
        res.note(
            f"S3 least count of PALHM's rotation: {rotation_pages} list pages (its own copy "
            f"included) + ceil({palhm_keys:,} / 1,000) = {least}. PALHM's run may add "
            f"{pages} list pages for the leftover scan before its copy is begun and "
            f"{OWN_REQUESTS} requests (the PREFIX check, the deletion of "
            f"its copy's marker and of the rotation's journal): {allowed}. Requests are counted "
            "in each client (botocore's Endpoint, every HTTP attempt), see bench/selfusage.py."
        )
    finally:
        if state["server"] is not None:
            state["server"].stop()
        shutil.rmtree(top, ignore_errors=True)


def main() -> int:
    rounds = bl.rounds_arg(5)
    res = bl.Results("rotation", "5. rotation at scale")
    tmp = bl.bench_tmp() / "rotation"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        # tmpfs by default: on this machine's disk (ext4 mounted with discard)
        # removing 5,000 directories takes a minute for the shell alone, and
        # making 100,000 files for the S3 server longer: 5 rounds would not fit
        # the bench's 20 minutes. --disk uses PALHM_BENCH_TMP instead.
        shm = Path("/dev/shm")
        where = tmp if "--disk" in sys.argv or not shm.is_dir() else shm
        if "--only-s3" not in sys.argv:
            bench_localfs(res, tmp, rounds, where)
        if "--only-localfs" not in sys.argv:
            s3_rounds = rounds
            if "--s3-rounds" in sys.argv:
                s3_rounds = int(sys.argv[sys.argv.index("--s3-rounds") + 1])
            bench_s3(res, tmp, s3_rounds, where)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
