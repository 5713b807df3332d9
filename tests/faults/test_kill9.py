"""kill -9 at random moments of a multi-object, multi-group task, on localfs
and on the S3 server.

After each kill: nothing the killed run started is still running; every
complete copy verifies against its manifest (``palhm backups verify --all``);
no partial copy is listed as complete; the good copies are all there and
byte for byte unchanged (only rotation may have removed the oldest, and only
once the killed run's own copy was complete); then (a quarter of the time
after another killed run, which may be killed while it cleans) a run succeeds,
removes every leftover (staging directories; marker prefixes, partial objects
and unfinished multipart uploads on S3), keeps exactly ``nb-copy-limit``
copies (so leftovers were not counted), and touches nothing PALHM did not make.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import inline, write_config

from palhm_core.objectstore import MARKER_NAME

from .util import (
    FIGURES,
    GEN,
    MANIFEST,
    PY,
    STAGING,
    TOKEN_VAR,
    TRIALS,
    CopyBook,
    allowed_rotation,
    count_tracebacks,
    kill9_after,
    localfs_fingerprint,
    new_token,
    palhm,
    rng,
    snapshot,
    start_palhm,
    survivors,
    wait_no_survivors,
)

LIMIT = 3
MiB = 1 << 20
PREFIX = {"type": "iso8601", "timespec": "microseconds"}
GROUPS = [
    {"id": "db"},
    {"id": "files", "depends": ["db"]},
    {"id": "meta", "depends": ["files"]},
]


def objects(token: str, big: int) -> list[dict]:
    env = {TOKEN_VAR: token}

    def gen(nbytes, seconds):
        return inline(PY, GEN, str(nbytes), str(seconds), env=env)

    def step(*argv):
        return inline(*argv, env=env)

    return [
        {
            "path": "db/main.sql.gz",
            "group": "db",
            "pipeline": [gen(big, 0.4), step("gzip", "-1", "-c")],
        },
        {"path": "db/users.sql", "group": "db", "pipeline": [gen(200_000, 0.3)]},
        {
            "path": "files/home.tar.zst",
            "group": "files",
            "alloc-size": big // 2,
            "pipeline": [gen(big, 0.4), step("zstd", "-q", "-1", "-c")],
        },
        {"path": "files/etc.tar", "group": "files", "pipeline": [gen(300_000, 0.2)]},
        {
            "path": "meta/packages",
            "group": "meta",
            "pipeline": [gen(50_000, 0.2), step("cat"), step("sort", "-S", "1M")],
        },
        {"path": "host", "pipeline": [step("uname", "-a")]},
    ]


class LocalFs:
    name = "localfs"
    big = 4 * MiB

    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "root"
        self.root.mkdir()
        (self.root / "notes.txt").write_text("the admin's, not PALHM's\n")
        (self.root / "manual").mkdir()
        (self.root / "manual" / "dump.sql").write_text("made by hand\n")
        self.fingerprint = localfs_fingerprint(self.root)

    def params(self) -> dict:
        return {"root": str(self.root), "nb-copy-limit": LIMIT, "prefix": PREFIX}

    def complete(self) -> list[str]:
        return sorted(
            p.name
            for p in self.root.iterdir()
            if not p.name.startswith(".") and (p / MANIFEST).is_file()
        )

    poll = 0.01

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.name.startswith(STAGING))

    partial_names = leftovers

    def foreign(self):
        return snapshot(self.root / "manual"), (self.root / "notes.txt").read_text()


class S3:
    name = "aws-s3"
    big = 6 * MiB  # two 5 MiB parts: multipart uploads are in flight when killed
    base = "palhm/backup"

    def __init__(self, bucket):
        self.bucket = bucket
        bucket.put(f"{self.base}/notes.txt", b"the admin's")
        bucket.put(f"{self.base}/manual/dump.sql", b"made by hand")
        bucket.put("elsewhere/keep", b"not under ROOT")

    def params(self) -> dict:
        return {
            "bucket": self.bucket.name,
            "root": self.base,
            "endpoint-url": self.bucket.endpoint,
            "part-size": 5 * MiB,
            "max-concurrency": 2,
            "nb-copy-limit": LIMIT,
            "prefix": PREFIX,
        }

    def _by_prefix(self) -> dict[str, dict[str, tuple]]:
        found: dict[str, dict[str, tuple]] = {}
        client = self.bucket.client
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket.name, Prefix=f"{self.base}/"
        ):
            for o in page.get("Contents", ()):
                rest = o["Key"][len(self.base) + 1 :]
                prefix, sep, path = rest.partition("/")
                if sep:
                    found.setdefault(prefix, {})[path] = (o["Size"], o["ETag"])
        return found

    def fingerprint(self, prefix: str):
        keys = self._by_prefix().get(prefix, {})
        return keys if MANIFEST in keys else None

    def complete(self) -> list[str]:
        """A copy is complete once it holds its manifest and its marker is
        gone: a run killed between the two left a copy to remove."""
        return sorted(
            p
            for p, keys in self._by_prefix().items()
            if MANIFEST in keys and MARKER_NAME not in keys
        )

    def leftovers(self) -> list[str]:
        """Unfinished uploads, markers, and prefixes of PALHM's without a manifest."""
        out = [f"upload {key}" for key, _ in self.bucket.uploads(f"{self.base}/")]
        for prefix, keys in self._by_prefix().items():
            if prefix == "manual":
                continue
            if MARKER_NAME in keys:
                out.append(f"marker {prefix}")
            if MANIFEST not in keys:
                out.extend(f"partial object {prefix}/{k}" for k in keys)
        return sorted(out)

    poll = 0.05

    def partial_names(self) -> list[str]:
        """Prefixes with a marker: copies being made (or left by a crash)."""
        keys = self.bucket.keys(f"{self.base}/")
        return [k for k in keys if k.endswith(f"/{MARKER_NAME}")]

    def foreign(self):
        return (
            self.bucket.get(f"{self.base}/notes.txt"),
            self.bucket.get(f"{self.base}/manual/dump.sql"),
            self.bucket.get("elsewhere/keep"),
            self.bucket.uploads("elsewhere/"),
        )


def config(tmp_path: Path, store, token: str) -> Path:
    task = {
        "id": "backup",
        "type": "backup",
        "backend": store.name,
        "backend-param": store.params(),
        "object-groups": GROUPS,
        "objects": objects(token, store.big),
    }
    return write_config(tmp_path, {"vl": 2, "nb-workers": 2, "tasks": [task]})


def listed(conf: Path) -> dict[str, bool]:
    result = palhm("backups", "list", "backup", "--json", config=conf)
    assert result.returncode == 0, result.stderr
    return {c["prefix"]: c["complete"] for c in json.loads(result.stdout)["copies"]}


def phase(killed: bool, new: str | None, partial: bool) -> str:
    if not killed:
        return "after the run ended"
    if new is not None:
        return "after the commit"
    return "while the copy was being made" if partial else "before the copy was begun"


def run_timed(store, conf: Path, log: Path):
    """Run to the end; the exit status, stderr, and when (seconds after the
    start) the copy was begun and the run ended."""
    old = set(store.partial_names())
    t0 = time.monotonic()
    begun = None
    with open(log, "wb") as err:
        proc = start_palhm("run", "backup", config=conf, stderr=err)
    while proc.poll() is None:
        if begun is None and set(store.partial_names()) - old:
            begun = time.monotonic() - t0
        time.sleep(store.poll)
    total = time.monotonic() - t0
    proc.wait()
    FIGURES.palhm_runs += 1
    stderr = log.read_text(errors="replace")
    assert not count_tracebacks(stderr), stderr
    return proc.returncode, stderr, begun if begun is not None else total / 2, total


def kill_at_random(r, store, conf: Path, log: Path, begun: float, total: float):
    """Start a run and SIGKILL it: a quarter of the time at any moment of
    the run, else at a moment after the copy was begun (where the interesting
    states are). Whether it was killed, and a description."""
    old = set(store.partial_names())
    anywhere = r.random() < 0.25
    if anywhere:
        delay = r.uniform(0.0, total)
    else:
        delay = r.uniform(0.0, max(0.05, total - begun))
    with open(log, "wb") as err:
        proc = start_palhm("run", "backup", config=conf, stderr=err)
        t0 = time.monotonic()
        if not anywhere:
            while proc.poll() is None and not set(store.partial_names()) - old:
                if time.monotonic() - t0 > 60:
                    break
                time.sleep(store.poll)
        killed = kill9_after(proc, delay)
    when = "from the start" if anywhere else "after the copy was begun"
    return proc, killed, f"kill {delay:.3f}s {when}"


def trials(tmp_path: Path, store, name: str) -> None:
    r = rng(name)
    book = CopyBook(store.fingerprint)
    foreign = store.foreign()
    log = tmp_path / "palhm.stderr"
    rc, stderr, begun, total = run_timed(store, config(tmp_path, store, new_token()), log)
    assert rc == 0, stderr
    book.add(store.complete()[-1])
    conf = None
    pending: set[str] = set()
    for trial in range(TRIALS):
        token = new_token()
        conf = config(tmp_path, store, token)
        before = store.complete()
        proc, killed, how = kill_at_random(r, store, conf, log, begun, total)
        FIGURES.trials += 1
        what = f"{name} trial {trial} ({how})"
        stderr = log.read_text(errors="replace")
        count_tracebacks(stderr)
        assert killed or proc.returncode == 0, f"{what}: {stderr}"
        left = wait_no_survivors(token, timeout=10.0)
        assert not left, f"{what}: the killed run left these running: {left}"

        after = store.complete()
        new = sorted(set(after) - set(before))
        assert len(new) <= 1 and all(p > max(before) for p in new), (what, before, after)
        new_prefix = new[0] if new else None
        partial = store.leftovers()
        FIGURES.kill_phases[phase(killed, new_prefix, bool(partial))] += 1

        # Listed: every complete copy, and nothing else as complete.
        shown = listed(conf)
        assert sorted(p for p, c in shown.items() if c) == after, (what, shown)
        # Every complete copy verifies against its manifest.
        verify = palhm("backups", "verify", "backup", "--all", config=conf)
        assert verify.returncode == 0, f"{what}: {verify.stdout}{verify.stderr}"
        for prefix in after:
            assert prefix in verify.stdout, (what, verify.stdout)
        # No good copy lost: only rotation by a run whose own copy is complete.
        lost = book.check(allowed_rotation(sorted(book.good), new_prefix, LIMIT))
        assert not lost, f"{what}: lost {lost}"
        if new_prefix is not None:
            book.add(new_prefix)
        assert len(after) >= min(LIMIT, len(before)), (what, before, after)

        # Now and then the next run is killed too, with leftovers to clean.
        pending |= set(partial)
        if trial < TRIALS - 1 and r.random() < 0.25:
            continue
        # The next run removes the leftovers and nothing else.
        token = new_token()
        conf = config(tmp_path, store, token)
        rc, stderr, begun, total = run_timed(store, conf, log)
        assert rc == 0, f"{what}, next run: {stderr}"
        assert not wait_no_survivors(token, timeout=10.0)
        assert store.leftovers() == [], what
        FIGURES.leftovers_cleaned += len(pending)
        pending.clear()
        now = store.complete()
        made = max(now)
        assert made not in after, (what, after, now)
        assert len(now) == min(LIMIT, len(after) + 1), (what, after, now)
        lost = book.check(allowed_rotation(sorted(book.good), made, LIMIT))
        assert not lost, f"{what}, next run: lost {lost}"
        book.add(made)
        assert store.foreign() == foreign, what
    final = palhm("backups", "verify", "backup", "--all", config=conf)
    assert final.returncode == 0, final.stdout + final.stderr
    assert not book.check()


def test_kill_9_on_localfs(tmp_path):
    trials(tmp_path, LocalFs(tmp_path), "kill9-localfs")


def test_kill_9_on_s3(tmp_path, fault_bucket):
    trials(tmp_path, S3(fault_bucket), "kill9-s3")


@pytest.mark.parametrize("when", ["building", "rolling back"])
def test_kill_9_leaves_no_process_running(tmp_path, when):
    """The pipelines of a killed PALHM end with it, whether it was building
    or already ending them; checked in /proc."""
    token = new_token()
    env = {TOKEN_VAR: token}
    root = tmp_path / "root"
    go = tmp_path / "GO"
    # A last stage that writes straight into the staging file, a middle stage,
    # a stage that ignores SIGTERM (so that ending the stages waits out the
    # grace period for it), and a grandchild in the stage's own process group;
    # "fails" fails once the test creates GO. The sleeps' lengths tell them apart.
    objects = [
        {"path": "direct", "pipeline": [inline("sh", "-c", "sleep 61; echo x", env=env)]},
        {"path": "piped", "pipeline": [inline("sleep", "62", env=env), inline("cat", env=env)]},
        {
            "path": "stubborn",
            "pipeline": [inline("sh", "-c", "trap '' TERM; sleep 63 & wait; wait", env=env)],
        },
        {
            "path": "fails",
            "pipeline": [
                inline("sh", "-c", f'while [ ! -e "{go}" ]; do sleep 0.05; done; exit 3', env=env)
            ],
        },
    ]
    task = {
        "id": "backup",
        "type": "backup",
        "backend": "localfs",
        "backend-param": {"root": str(root), "prefix": PREFIX},
        "objects": objects,
    }
    conf = write_config(tmp_path, {"vl": 2, "nb-workers": 4, "tasks": [task]})
    proc = start_palhm("run", "backup", config=conf)

    def running(*commands: str) -> bool:
        assert proc.poll() is None, f"palhm exited ({proc.returncode}) too early"
        return set(commands) <= {cmd for _, cmd in survivors(token)}

    def reached(state, what: str) -> None:
        deadline = time.monotonic() + 60
        while not state():
            assert time.monotonic() < deadline, f"not {what}: {survivors(token)}"
            time.sleep(0.05)

    reached(lambda: running("sleep 61", "sleep 62", "cat", "sleep 63"), "every stage running")
    if when == "rolling back":
        go.touch()  # "fails" fails: PALHM ends the other stages, and waits for "stubborn"
        reached(
            lambda: running("sleep 63") and not running("sleep 61") and not running("sleep 62"),
            "ending the stages",
        )
    assert kill9_after(proc, 0)
    FIGURES.trials += 1
    left = wait_no_survivors(token, timeout=10.0)
    assert not left, f"a killed PALHM left these running: {left}"
