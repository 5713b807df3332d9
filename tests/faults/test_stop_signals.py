"""A stop signal ends a run whatever it is waiting on, and leaves nothing
that looks whole but is not.

- SIGTERM during an upload to an S3 server that was stopped (SIGSTOP, so that
  it accepts connections and never answers): PALHM exits 143, says it left
  the copy for the next run, and no process it started is left; once the
  server runs again, the next run removes the leftovers.
- SIGTERM during a rotation (its first request held back by a proxy, then let
  through at once, or never while PALHM runs): PALHM exits 143; every
  complete copy still verifies (no complete copy with missing objects), and
  the next run finishes the rotation.
- SIGTERM while the manifest is being written (held back by the proxy until
  PALHM exited): PALHM exits 143, and the copy it leaves is either removed or
  complete and verifying after the next run.

The requests held back never end while PALHM runs, so that PALHM exits at
all (within the tests' GUARD) shows it gave up waiting on them, which its
lines say. How long it took is printed with the fault figures beside PALHM's
stop bound (:data:`palhm_core.signals.STOP_BOUND`), not asserted: on a
loaded machine that measures the machine.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from conftest import inline
from palhm_s3.backend import JOURNAL_NAME, MARKER_NAME
from s3.conftest import SERVER, start_server
from s3.flaky_proxy import FlakyProxy

from palhm_core.signals import STOP_BOUND

from .conftest import wait_answering
from .test_s3_server_dies import BASE, MiB, config, state
from .util import (
    FIGURES,
    GEN,
    MANIFEST,
    PY,
    TOKEN_VAR,
    FaultBucket,
    count_tracebacks,
    error_lines,
    new_token,
    palhm,
    start_palhm,
    wait_no_survivors,
)

#: A guard against hanging forever, not a measure of speed.
GUARD = 120.0
SMALL = [
    {"path": "etc", "pipeline": [inline("seq", "1", "10000")]},
    {"path": "host", "pipeline": [inline("uname", "-a")]},
]


def wait_until(predicate, what: str, proc=None, timeout: float = GUARD):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc is None or proc.poll() is None, f"palhm exited before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stop(proc, what: str) -> None:
    """SIGTERM ``proc`` and wait for its exit; the seconds it took go to
    the fault figures."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=GUARD)
    took = time.monotonic() - started
    FIGURES.notes.append(f"{what}: exit {took:.1f} s after SIGTERM (stop bound {STOP_BOUND:g} s)")


def prefixes(bucket: FaultBucket) -> dict[str, set[str]]:
    """PREFIX -> the names under it, of every copy PALHM made or began."""
    found: dict[str, set[str]] = {}
    for key in bucket.keys(f"{BASE}/"):
        prefix, sep, name = key[len(BASE) + 1 :].partition("/")
        if sep:
            found.setdefault(prefix, set()).add(name)
    return found


@pytest.fixture
def own_server(request, tmp_path):
    """An S3 server of this test's own, since the test stops it."""
    request.getfixturevalue("s3_env")
    server = start_server(SERVER, tmp_path / "server")
    try:
        wait_answering(server)
        yield server
    finally:
        if server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


def test_sigterm_while_the_s3_server_stopped_answering(tmp_path, own_server):
    bucket = FaultBucket(own_server, "palhm-stopped").create()
    good = config(tmp_path, bucket, SMALL, "good.jsonc")
    assert palhm("run", "backup", config=good).returncode == 0
    good_state = state(bucket)

    big = [*SMALL, {"path": "db/dump", "pipeline": [inline(PY, GEN, str(40 * MiB), "8")]}]
    conf = config(tmp_path, bucket, big, "big.jsonc")
    token = new_token()
    err = tmp_path / "stopped.stderr"
    with open(err, "wb") as f:
        proc = start_palhm("run", "backup", config=conf, env={TOKEN_VAR: token}, stderr=f)
    try:
        wait_until(lambda: bucket.uploads(f"{BASE}/"), "a multipart upload", proc)
        os.kill(own_server.proc.pid, signal.SIGSTOP)
        stop(proc, "SIGTERM with the S3 server stopped (SIGSTOP)")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.kill(own_server.proc.pid, signal.SIGCONT)
    FIGURES.trials += 1
    FIGURES.palhm_runs += 1
    stderr = err.read_text(errors="replace")
    assert not count_tracebacks(stderr), stderr
    assert proc.returncode == 143, stderr
    lines = error_lines(stderr)
    assert lines[-1] == "palhm: stopped by SIGTERM", stderr
    assert any("left incomplete, the next run removes it" in ln for ln in lines[:-1]), stderr
    assert wait_no_survivors(token) == []

    wait_answering(own_server)
    left = state(bucket)
    leftovers = sorted(set(left[0]) - set(good_state[0])) + [k for k, _ in left[1]]
    assert leftovers, "the stopped run left its marker and its upload"
    again = palhm("run", "backup", config=good)
    assert again.returncode == 0, again.stderr
    objects, uploads = state(bucket)
    assert uploads == []
    for key, value in good_state[0].items():
        assert objects.get(key) == value, key
    copies = prefixes(bucket)
    assert len(copies) == 2, copies
    for names in copies.values():
        assert MANIFEST in names and MARKER_NAME not in names
    FIGURES.leftovers_cleaned += len(leftovers)


def test_a_server_that_stopped_answering_fails_the_run_in_bounded_time(tmp_path, own_server):
    """Without a signal, connect-timeout, read-timeout and max-attempts bound
    every request: the run fails with one line instead of hanging."""
    bucket = FaultBucket(own_server, "palhm-hung").create()
    big = [*SMALL, {"path": "db/dump", "pipeline": [inline(PY, GEN, str(40 * MiB), "8")]}]
    conf = config(tmp_path, bucket, big, "hung.jsonc")
    conf.write_text(
        conf.read_text().replace(
            '"max-attempts": 3',
            '"max-attempts": 2, "connect-timeout": 1, "read-timeout": 1',
        )
    )
    err = tmp_path / "hung.stderr"
    with open(err, "wb") as f:
        proc = start_palhm("run", "backup", config=conf, stderr=f)
    try:
        wait_until(lambda: bucket.uploads(f"{BASE}/"), "a multipart upload", proc)
        os.kill(own_server.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        proc.wait(timeout=GUARD)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        os.kill(own_server.proc.pid, signal.SIGCONT)
    FIGURES.trials += 1
    FIGURES.palhm_runs += 1
    FIGURES.notes.append(
        f"S3 server stopped, read-timeout 1 s × 2 attempts: the run failed after {took:.1f} s"
    )
    stderr = err.read_text(errors="replace")
    assert not count_tracebacks(stderr), stderr
    assert proc.returncode == 1, stderr
    final = error_lines(stderr)[-1]
    assert "db/dump" in final and "palhm-hung" in final, stderr


class Gate:
    """Holds the PUT of a key named ``name`` (the rotation's journal, its
    first request; the manifest) until opened, so that a signal lands while
    PALHM waits on it."""

    def __init__(self, name: str):
        self.name = name
        self.reached = threading.Event()
        self.opened = threading.Event()

    def __call__(self, method: str, path: str) -> None:
        if method == "PUT" and path.split("?")[0].endswith(f"/{self.name}"):
            self.reached.set()
            self.opened.wait(GUARD)
        return None


@pytest.mark.parametrize("release", ["at-once", "never"])
def test_sigterm_during_rotation(tmp_path, fault_bucket, release):
    bucket = fault_bucket
    keep = config(tmp_path, bucket, SMALL, "keep.jsonc")
    for _ in range(3):
        assert palhm("run", "backup", config=keep).returncode == 0
    old = sorted(prefixes(bucket))
    gate = Gate(JOURNAL_NAME)
    with FlakyProxy(bucket.endpoint, fails=gate) as proxy:
        doc = config(tmp_path, bucket, SMALL, "limit.jsonc").read_text()
        limited = config(tmp_path, bucket, SMALL, "limit.jsonc")
        text = doc.replace(bucket.endpoint, proxy.endpoint).replace(
            '"max-attempts": 3', '"max-attempts": 3, "nb-copy-limit": 1'
        )
        limited.write_text(text)
        err = tmp_path / "rotation.stderr"
        with open(err, "wb") as f:
            proc = start_palhm("run", "backup", config=limited, stderr=f)
        try:
            wait_until(gate.reached.is_set, "the rotation", proc)
            if release == "at-once":
                gate.opened.set()
            stop(proc, f"SIGTERM during a rotation (held request released {release})")
        finally:
            if proc.poll() is None:
                proc.kill()
            gate.opened.set()
        # The journal's PUT, let through now, lands before anything is checked.
        wait_until(
            lambda: f"{BASE}/{JOURNAL_NAME}" in bucket.keys(f"{BASE}/") or release == "at-once",
            "the journal",
        )
    FIGURES.trials += 1
    FIGURES.palhm_runs += 1
    stderr = err.read_text(errors="replace")
    assert not count_tracebacks(stderr), stderr
    assert proc.returncode == 143, stderr
    assert error_lines(stderr)[-1] == "palhm: stopped by SIGTERM", stderr

    # No complete copy misses an object: every one verifies, the new one too.
    copies = prefixes(bucket)
    complete = sorted(p for p, names in copies.items() if MANIFEST in names)
    new = [p for p in complete if p not in old]
    assert len(new) == 1, copies
    verify = palhm("backups", "verify", "backup", "--all", config=keep)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    if release == "never":
        assert complete == sorted([*old, *new])  # nothing was deleted

    limited.write_text(text.replace(proxy.endpoint, bucket.endpoint))
    again = palhm("run", "backup", config=limited)
    assert again.returncode == 0, again.stderr
    copies = prefixes(bucket)
    assert len(copies) == 1 and all(MANIFEST in n for n in copies.values()), copies
    assert f"{BASE}/{JOURNAL_NAME}" not in bucket.keys(f"{BASE}/")


def _stop_while_held(tmp_path, bucket: FaultBucket, name: str):
    """Run the backup through a proxy that holds back the PUT of ``name``,
    SIGTERM PALHM while it is held, then let the PUT land; the process and
    PALHM's stderr."""
    gate = Gate(name)
    with FlakyProxy(bucket.endpoint, fails=gate) as proxy:
        proxied = config(tmp_path, bucket, SMALL, "proxied.jsonc")
        proxied.write_text(proxied.read_text().replace(bucket.endpoint, proxy.endpoint))
        err = tmp_path / "stopped.stderr"
        with open(err, "wb") as f:
            proc = start_palhm("run", "backup", config=proxied, stderr=f)
        try:
            wait_until(gate.reached.is_set, f"the PUT of {name}", proc)
            stop(proc, f"SIGTERM while the PUT of {name} is held")
        finally:
            if proc.poll() is None:
                proc.kill()
            gate.opened.set()
        wait_until(lambda: any(name in n for n in prefixes(bucket).values()), f"{name} landing")
    FIGURES.trials += 1
    FIGURES.palhm_runs += 1
    return proc, err.read_text(errors="replace")


def test_sigterm_while_the_manifest_is_written(tmp_path, fault_bucket):
    bucket = fault_bucket
    direct = config(tmp_path, bucket, SMALL, "direct.jsonc")
    proc, stderr = _stop_while_held(tmp_path, bucket, MANIFEST)
    assert not count_tracebacks(stderr), stderr
    assert proc.returncode == 143, stderr
    lines = error_lines(stderr)
    assert lines[-1] == "palhm: stopped by SIGTERM", stderr
    assert any("writing the manifest did not finish" in ln for ln in lines), stderr

    again = palhm("run", "backup", config=direct)
    assert again.returncode == 0, again.stderr
    assert bucket.uploads(f"{BASE}/") == []
    for names in prefixes(bucket).values():
        assert MANIFEST in names and MARKER_NAME not in names
    verify = palhm("backups", "verify", "backup", "--all", config=direct)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_an_upload_left_behind_that_lands_late_is_removed_by_the_next_run(tmp_path, fault_bucket):
    """SIGTERM while an object's PUT is held back: PALHM leaves it behind and
    rolls back the rest, keeping the copy's marker; the PUT lands after PALHM
    exited, and the next run removes it with the marker (without the marker,
    that object would be an unknown key PALHM never touches)."""
    bucket = fault_bucket
    direct = config(tmp_path, bucket, SMALL, "direct.jsonc")
    proc, stderr = _stop_while_held(tmp_path, bucket, "etc")
    assert not count_tracebacks(stderr), stderr
    assert proc.returncode == 143, stderr
    assert error_lines(stderr)[-1] == "palhm: stopped by SIGTERM", stderr
    assert any("the marker stays" in ln for ln in error_lines(stderr)), stderr
    (stopped,) = prefixes(bucket)
    assert prefixes(bucket)[stopped] == {"etc", MARKER_NAME}

    again = palhm("run", "backup", config=direct)
    assert again.returncode == 0, again.stderr
    copies = prefixes(bucket)
    assert stopped not in copies and len(copies) == 1, copies
    assert all(MANIFEST in n and MARKER_NAME not in n for n in copies.values()), copies
