"""Rotation under a careless administrator, a hostile user and a wrong clock.

Two tasks of two configs share one localfs root, each with its own
``nb-copy-limit``. Between runs, at random (seeded), copies are tampered with
as a user who can write ROOT would (manifest sizes made huge or junk, objects
truncated, removed or added, manifests replaced by garbage, relabelled to
another task or host), and, with ``faketime``, runs happen with the clock
years ahead or back.

After every run: no traceback; every good copy of either task is there byte
for byte, except the oldest of the task that ran, beyond its limit; every
tampered or future-dated copy is still there, untouched (rotation never
deletes what it cannot prove is the task's, nor what the clock makes look
newer); a run under a clock set back deletes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PALHM, inline, write_config

from .util import (
    FIGURES,
    MANIFEST,
    TRIALS,
    CopyBook,
    allowed_rotation,
    count_tracebacks,
    localfs_fingerprint,
    rng,
)

PREFIX = {"type": "iso8601", "timespec": "microseconds"}
LIMITS = {"db": 2, "etc": 3}
#: Runs per case: one per kill -9 trial of the other fault tests.
STEPS = max(12, TRIALS)


def _tamper_size(value):
    def edit(doc):
        doc["size"] = value

    return edit


def _tamper_objects(doc):
    doc["objects"][0]["size"] = 10**12
    doc["size"] = 10**12


#: What a user who can write ROOT does to a copy's manifest; each makes the
#: copy damaged or foreign.
MANIFEST_EDITS = {
    "size 1e12": _tamper_size(1e12),
    "size null": _tamper_size(None),
    "size abc": _tamper_size("abc"),
    "size 10**30": _tamper_size(10**30),
    "size -1": _tamper_size(-1),
    "object size 10**12": _tamper_objects,
    "task renamed": lambda doc: doc.update(task="someone-else"),
    "host renamed": lambda doc: doc.update(host="elsewhere.example"),
    "finished junk": lambda doc: doc.update(finished="soon"),
}
FILE_EDITS = ["object truncated", "object removed", "file added", "manifest garbage", "size 1e400"]


def _tamper(copy: Path, how: str, random) -> None:
    manifest = copy / MANIFEST
    if how in MANIFEST_EDITS:
        doc = json.loads(manifest.read_text())
        MANIFEST_EDITS[how](doc)
        manifest.write_text(json.dumps(doc))
    elif how == "object truncated":
        (copy / "data").write_bytes((copy / "data").read_bytes()[:3])
    elif how == "object removed":
        (copy / "data").unlink()
    elif how == "file added":
        (copy / "planted").write_bytes(random.randbytes(random.randrange(1, 5000)))
    elif how == "manifest garbage":
        manifest.write_bytes(random.randbytes(random.randrange(0, 300)))
    elif how == "size 1e400":
        text = manifest.read_text()
        doc = json.loads(text)
        manifest.write_text(text.replace(f'"size": {doc["size"]}', '"size": 1e400', 1))


class Shared:
    """The shared root, the two tasks' configs and what is known of each copy."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "root"
        self.configs = {}
        for task_id in LIMITS:
            task = {
                "id": task_id,
                "type": "backup",
                "backend": "localfs",
                "backend-param": {
                    "root": str(self.root),
                    "prefix": PREFIX,
                    "nb-copy-limit": LIMITS[task_id],
                },
                "objects": [
                    {"path": "data", "pipeline": [inline("head", "-c", "2000", "/dev/urandom")]}
                ],
            }
            self.configs[task_id] = write_config(
                tmp_path, {"vl": 2, "tasks": [task]}, f"{task_id}.jsonc"
            )
        self.good = {task_id: CopyBook(localfs_fingerprint(self.root)) for task_id in LIMITS}
        #: Copies PALHM must never touch again: tampered and future-dated ones.
        self.kept = CopyBook(localfs_fingerprint(self.root))

    def prefixes(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        return {p.name for p in self.root.iterdir() if not p.name.startswith(".")}

    def run(self, task_id: str, when: str | None = None) -> str:
        """Run ``task_id`` (under ``faketime when``); the copy it made."""
        argv = [PALHM, "-f", str(self.configs[task_id]), "run", task_id]
        if when is not None:
            argv = ["faketime", when, *argv]
        before = self.prefixes()
        env = dict(os.environ, TZ="UTC")
        env.pop("PALHM_CONFIG", None)
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180)
        FIGURES.palhm_runs += 1
        assert not count_tracebacks(result.stderr), result.stderr
        assert result.returncode == 0, result.stderr
        (made,) = self.prefixes() - before
        return made

    def check(self, task_id: str, made: str, rotates: bool) -> None:
        """After a run of ``task_id`` that made ``made``: what may be gone
        is the oldest good copies of that task beyond its limit (nothing if
        ``rotates`` is false); everything else is there, unchanged."""
        book = self.good[task_id]
        allowed = allowed_rotation(list(book.good), made, LIMITS[task_id]) if rotates else set()
        lost = book.check(allowed)
        for other, other_book in self.good.items():
            if other != task_id:
                lost += other_book.check()
        kept_lost = self.kept.check()
        FIGURES.kept_lost += len(kept_lost)
        if not rotates:
            FIGURES.newer_lost += len(lost) + len(kept_lost)
        assert not lost and not kept_lost, f"lost good {lost}, lost kept {kept_lost}"
        book.add(made)


@pytest.mark.parametrize("clock", [False, True], ids=["shared-root", "shared-root-and-clock"])
def test_rotation_deletes_only_the_tasks_own_good_copies(tmp_path, clock):
    if clock and shutil.which("faketime") is None:
        pytest.skip("faketime (Debian package faketime) is not installed")
    random = rng(f"rotation/{clock}")
    shared = Shared(tmp_path)
    edits = sorted(MANIFEST_EDITS) + FILE_EDITS
    for step in range(STEPS):
        FIGURES.trials += 1
        action = random.choice(["run", "run", "tamper"] + (["ahead", "back"] if clock else []))
        task_id = random.choice(sorted(LIMITS))
        book = shared.good[task_id]
        if action == "tamper" and book.good:
            prefix = random.choice(sorted(book.good))
            how = random.choice(edits)
            _tamper(shared.root / prefix, how, random)
            del book.good[prefix]
            shared.kept.add(prefix)
            FIGURES.tampered[how] += 1
            continue
        if action == "ahead":
            # Years ahead, each such run less far than the one before, so that
            # the copies of earlier ones are future-dated for it as for every
            # later run: it may rotate the task's real copies, as any run.
            made = shared.run(task_id, f"{2100 - step}-01-01 00:00:00")
            shared.check(task_id, made, rotates=True)
            del book.good[made]
            shared.kept.add(made)
            FIGURES.clock_runs += 1
            FIGURES.future_copies += 1
            continue
        if action == "back":
            # Years back, each such run further than the one before: every
            # copy looks newer than this one's, and none may go.
            made = shared.run(task_id, f"{2020 - step}-01-01 00:00:00")
            shared.check(task_id, made, rotates=False)
            FIGURES.clock_runs += 1
            continue
        made = shared.run(task_id)
        shared.check(task_id, made, rotates=True)
        FIGURES.rotation_runs += 1
    # PALHM's own account agrees: tampered copies are damaged or foreign
    # for both tasks, future-dated ones are marked.
    for task_id, conf in shared.configs.items():
        listed = subprocess.run(
            [PALHM, "-f", str(conf), "backups", "list", "--json", task_id],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert not count_tracebacks(listed.stderr) and listed.returncode == 0, listed.stderr
        states = {c["prefix"]: c for c in json.loads(listed.stdout)["copies"]}
        for prefix in shared.kept.good:
            c = states[prefix]
            assert c["state"] in ("damaged", "foreign") or c["future"], c
        for prefix in shared.good[task_id].good:
            assert states[prefix]["state"] == "complete" and not states[prefix]["future"]
