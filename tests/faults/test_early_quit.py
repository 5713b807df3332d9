"""Stages that quit early: a consumer that closes its stdin, one that fails
after reading a little, an upstream killed by SIGPIPE. The one error line
names the stage that caused the failure, and the copy is rolled back (the
storage is exactly as before: files, objects and multipart uploads), on
localfs and on S3 with several MiB already uploaded."""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import inline, write_config

from .util import (
    FIGURES,
    GEN,
    PY,
    TOKEN_VAR,
    new_token,
    one_error_line,
    palhm,
    snapshot,
    start_palhm,
    survivors,
)

MiB = 1 << 20
PREFIX = {"type": "iso8601", "timespec": "microseconds"}
CLOSE_STDIN = "import os, sys, time; os.close(0); time.sleep(0.3); sys.stdout.write('done')"


class Local:
    name = "localfs"

    def __init__(self, tmp_path):
        self.root = tmp_path / "root"

    def params(self):
        return {"root": str(self.root), "prefix": PREFIX}

    def state(self):
        return snapshot(self.root)


class Remote:
    name = "aws-s3"

    def __init__(self, bucket):
        self.bucket = bucket

    def params(self):
        return {
            "bucket": self.bucket.name,
            "root": "backup",
            "endpoint-url": self.bucket.endpoint,
            "part-size": 5 * MiB,
            "prefix": PREFIX,
        }

    def state(self):
        return self.bucket.objects(), self.bucket.uploads()


@pytest.fixture(params=["localfs", "aws-s3"])
def store(request, tmp_path):
    if request.param == "localfs":
        return Local(tmp_path)
    return Remote(request.getfixturevalue("fault_bucket"))


def run_case(tmp_path, store, pipeline, *, big=False):
    """A good copy first, then the failing one; the error line."""
    good = [{"path": "ok", "pipeline": [inline("echo", "good")]}]
    objects = [
        # Another object, made in parallel, several MiB long: on S3 a
        # multipart upload is under way when the failure comes.
        {"path": "data/big", "pipeline": [inline(PY, GEN, str(12 * MiB if big else MiB), "1")]},
        {"path": "data/quits", "pipeline": pipeline},
    ]

    def conf(objs, name):
        task = {
            "id": "backup",
            "type": "backup",
            "backend": store.name,
            "backend-param": store.params(),
            "objects": objs,
        }
        return write_config(tmp_path, {"vl": 2, "nb-workers": 2, "tasks": [task]}, name)

    assert palhm("run", "backup", config=conf(good, "good.jsonc")).returncode == 0
    before = store.state()
    result = palhm("run", "backup", config=conf(objects, "quits.jsonc"))
    FIGURES.trials += 1
    assert result.returncode == 1, result.stderr
    assert store.state() == before, "the copy was not rolled back"
    return one_error_line(result.stderr)


def test_consumer_closes_its_stdin_and_exits_0(tmp_path, store):
    line = run_case(tmp_path, store, [inline("yes"), inline(PY, "-c", CLOSE_STDIN)])
    assert "stage 1/2 'yes' killed by SIGPIPE" in line, line
    assert "stage 2/2 'python" in line and "stopped reading its input" in line, line


def test_middle_stage_quits_early(tmp_path, store):
    pipeline = [inline("yes"), inline("head", "-c", "100000"), inline("gzip", "-c")]
    line = run_case(tmp_path, store, pipeline, big=True)
    assert "stage 1/3 'yes' killed by SIGPIPE: stage 2/3 'head' stopped reading" in line, line


def test_consumer_fails_after_reading_a_little(tmp_path, store):
    pipeline = [
        inline(PY, GEN, str(8 * MiB), "0.5"),
        inline("gzip", "-1", "-c"),
        inline("sh", "-c", "head -c 1000; exit 3"),
    ]
    line = run_case(tmp_path, store, pipeline, big=True)
    # The culprit is the stage with a real failure; the broken pipes it
    # caused upstream are secondary.
    assert "object 'data/quits': stage 3/3 'sh' exited with status 3 (accepted: ==0)" in line, line


def test_consumer_fails_at_once(tmp_path, store):
    line = run_case(tmp_path, store, [inline("yes"), inline("false")])
    assert "stage 2/2 'false' exited with status 1" in line, line


def test_upstream_killed_by_sigpipe(tmp_path, store):
    """SIGPIPE sent to the first stage from outside while its reader still
    reads: the failure names that stage and how it ended."""
    token = new_token()
    env = {TOKEN_VAR: token}
    good = [{"path": "ok", "pipeline": [inline("echo", "good")]}]
    objects = [
        {
            "path": "victim",
            "pipeline": [
                inline("sh", "-c", "while :; do echo x; sleep 0.05; done", env=env),
                inline("cat", env=env),
            ],
        }
    ]

    def conf(objs, name):
        task = {
            "id": "backup",
            "type": "backup",
            "backend": store.name,
            "backend-param": store.params(),
            "objects": objs,
        }
        return write_config(tmp_path, {"vl": 2, "tasks": [task]}, name)

    assert palhm("run", "backup", config=conf(good, "good.jsonc")).returncode == 0
    before = store.state()
    err = tmp_path / "stderr"
    with open(err, "wb") as f:
        proc = start_palhm("run", "backup", config=conf(objects, "victim.jsonc"), stderr=f)
    deadline = time.monotonic() + 30
    while True:
        shells = [pid for pid, cmd in survivors(token) if cmd.startswith("sh -c")]
        if shells:
            break
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.2)
    os.kill(shells[0], signal.SIGPIPE)
    proc.wait(timeout=60)
    FIGURES.trials += 1
    FIGURES.palhm_runs += 1
    stderr = err.read_text()
    assert "Traceback" not in stderr
    assert proc.returncode == 1, stderr
    line = one_error_line(stderr)
    assert "object 'victim': stage 1/2 'sh' killed by SIGPIPE" in line, line
    assert store.state() == before
