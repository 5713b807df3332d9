"""Helpers of the fault suite: the figures it reports, a seeded random for
each test, palhm runs that count tracebacks, a book of good copies, and what
a kill -9 may leave running."""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest
from conftest import PALHM, run_palhm

HERE = Path(__file__).resolve().parent
GEN = str(HERE / "tools" / "gen.py")
PY = sys.executable
MANIFEST = "palhm-manifest.json"
STAGING = ".palhm-partial."
TRACEBACK = "Traceback (most recent call last)"
#: The variable that marks every process a trial starts (see :func:`survivors`).
TOKEN_VAR = "PALHM_FAULT_TOKEN"


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


#: Everything random in the suite derives from this; PALHM_FAULTS_SEED repeats a run.
SEED = _int_env("PALHM_FAULTS_SEED", random.SystemRandom().randrange(1 << 32))
#: kill -9 trials per backend: a few by default, 20 in ``nox -s faults``.
TRIALS = _int_env("PALHM_FAULTS_TRIALS", 4)
#: Config mutations tried in-process (one in twenty also as real processes,
#: and a twentieth as many valid changes): 100 by default, 500 in ``nox -s faults``.
FUZZ_CASES = _int_env("PALHM_FAULTS_FUZZ", 100)


@dataclass
class Figures:
    """What the suite did and found, printed at the end of the session."""

    trials: int = 0  # runs with a fault injected (kill -9, full disk, dead server ...)
    kills: int = 0
    copies_checked: int = 0
    copies_lost: int = 0
    tracebacks: int = 0
    orphans: int = 0  # processes a killed run left running
    leftovers_cleaned: int = 0
    palhm_runs: int = 0
    fuzz_cases: int = 0
    fuzz_processes: int = 0
    path_checks: int = 0  # hostile object paths through config check, in-process
    fuzz_exits: Counter = field(default_factory=Counter)
    kill_phases: Counter = field(default_factory=Counter)
    rotation_runs: int = 0  # runs on a root two tasks share, between tamperings
    tampered: Counter = field(default_factory=Counter)  # copies tampered with, by how
    clock_runs: int = 0  # runs with the clock years ahead or back
    future_copies: int = 0  # copies made with the clock ahead
    kept_lost: int = 0  # tampered or future-dated copies rotation deleted
    newer_lost: int = 0  # copies a run with the clock set back deleted
    notes: list[str] = field(default_factory=list)

    def state(self) -> dict:
        """The figures as plain values (to send from an xdist worker)."""
        return {
            f.name: dict(v) if isinstance(v := getattr(self, f.name), Counter) else v
            for f in fields(self)
        }

    def add(self, state: dict) -> None:
        """Add the figures of another process (its :meth:`state`)."""
        for f in fields(self):
            mine = getattr(self, f.name)
            if isinstance(mine, Counter):
                mine.update(state[f.name])
            elif isinstance(mine, list):
                mine.extend(state[f.name])
            else:
                setattr(self, f.name, mine + state[f.name])

    def lines(self) -> list[str]:
        out = [
            f"seed: {SEED} (repeat with PALHM_FAULTS_SEED={SEED})",
            f"trials run: {self.trials} ({self.kills} of them kill -9)",
            f"copies lost: {self.copies_lost} (of {self.copies_checked} checks of good copies)",
            f"tracebacks: {self.tracebacks} (in {self.palhm_runs} palhm runs, "
            f"{self.fuzz_cases} in-process fuzz cases and {self.path_checks} in-process "
            "checks of hostile object paths)",
            f"processes left running by a killed palhm: {self.orphans}",
            f"leftovers of killed runs removed by the next run: {self.leftovers_cleaned}",
            f"fuzz cases tried: {self.fuzz_cases} in-process, {self.fuzz_processes} as processes"
            + (
                f"; exits {', '.join(f'{k}: {v}' for k, v in sorted(self.fuzz_exits.items()))}"
                if self.fuzz_exits
                else ""
            ),
        ]
        if self.rotation_runs or self.clock_runs:
            out.append(
                f"rotation cases: {self.rotation_runs} runs on a root two tasks share, "
                f"{sum(self.tampered.values())} copies tampered with ("
                + ", ".join(f"{k}: {v}" for k, v in sorted(self.tampered.items()))
                + f"); tampered or future-dated copies deleted: {self.kept_lost}"
            )
            out.append(
                f"clock cases: {self.clock_runs} runs with the clock years ahead or back, "
                f"{self.future_copies} future-dated copies made; copies deleted by a run "
                f"with the clock set back: {self.newer_lost}"
            )
        if self.kill_phases:
            out.append(
                "kill -9 landed: "
                + ", ".join(f"{k}: {v}" for k, v in sorted(self.kill_phases.items()))
            )
        out.extend(self.notes)
        return out


FIGURES = Figures()


def rng(name: str) -> random.Random:
    """The random of one test, derived from :data:`SEED`."""
    return random.Random(f"{SEED}/{name}")


def count_tracebacks(text: str) -> int:
    n = text.count(TRACEBACK)
    FIGURES.tracebacks += n
    return n


def palhm(*args, config=None, env=None, timeout=180, input=None, cwd=None):
    """Run palhm like :func:`conftest.run_palhm`, counting its tracebacks."""
    result = run_palhm(*args, config=config, env=env, timeout=timeout, input=input, cwd=cwd)
    FIGURES.palhm_runs += 1
    assert not count_tracebacks(result.stderr), f"traceback from palhm {args}:\n{result.stderr}"
    return result


def error_lines(stderr: str) -> list[str]:
    """PALHM's own lines on stderr (the fault configs set ``vl`` 2, so info
    lines are not printed: what is left are warnings and errors); the
    output of the commands PALHM ran is left out."""
    return [line for line in stderr.splitlines() if line.startswith("palhm: ")]


def one_error_line(stderr: str) -> str:
    """The one error line of a failed run; fails if there is not exactly one."""
    lines = error_lines(stderr)
    assert len(lines) == 1, f"expected one error line, got {lines!r} in:\n{stderr}"
    return lines[0]


def snapshot(top: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every entry under ``top`` (not under ``skip``): type, mode, size and
    content hash. What a test compares to prove nothing was written."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        d = Path(dirpath)
        if skip is not None and (d == skip or skip in d.parents):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = d / name
            if skip is not None and p == skip:
                out[str(p.relative_to(top))] = ("skipped",)
                continue
            st = p.lstat()
            digest = None
            if p.is_file() and not p.is_symlink():
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p.relative_to(top))] = (st.st_mode, st.st_size, digest)
    return out


# -- good copies ------------------------------------------------------------------


class CopyBook:
    """The copies known to be good, each with a fingerprint of every stored
    byte, to prove later that none was lost or changed."""

    def __init__(self, fingerprint):
        #: ``fingerprint(prefix)`` -> a dict of what the copy holds, or None if gone.
        self.fingerprint = fingerprint
        self.good: dict[str, dict] = {}

    def add(self, prefix: str) -> None:
        fp = self.fingerprint(prefix)
        assert fp is not None, f"copy {prefix} is not there"
        self.good[prefix] = fp

    def check(self, allowed_gone: set[str] = frozenset()) -> list[str]:
        """Every good copy still there and unchanged, except those in
        ``allowed_gone`` (rotated away); the lost ones, counted."""
        lost = []
        for prefix, fp in list(self.good.items()):
            FIGURES.copies_checked += 1
            now = self.fingerprint(prefix)
            if now is None and prefix in allowed_gone:
                del self.good[prefix]
                continue
            if now != fp:
                lost.append(prefix)
        FIGURES.copies_lost += len(lost)
        return lost


def localfs_fingerprint(root: Path):
    def fingerprint(prefix: str):
        base = root / prefix
        if not (base / MANIFEST).is_file():
            return None
        return snapshot(base)

    return fingerprint


def allowed_rotation(good: list[str], new: str | None, limit: int) -> set[str]:
    """The good copies a run that made ``new`` may have rotated away: the
    oldest, while more than ``limit`` would remain."""
    if new is None:
        return set()
    ordered = sorted([*good, new])
    excess = max(0, len(ordered) - limit)
    return set(ordered[:excess]) - {new}


# -- processes ------------------------------------------------------------------


def new_token() -> str:
    return secrets.token_hex(8)


def survivors(token: str) -> list[tuple[int, str]]:
    """Live processes whose environment carries ``TOKEN_VAR=token``: the
    pid and command line of each."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            if needle not in env:
                continue
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state == b"Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        found.append((int(entry), cmd))
    return found


def wait_no_survivors(token: str, timeout: float = 3.0) -> list[tuple[int, str]]:
    """Wait for every process of ``token`` to be gone; those still there
    after ``timeout`` (killed then, and counted)."""
    deadline = time.monotonic() + timeout
    while True:
        left = survivors(token)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid, _ in left:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    FIGURES.orphans += len(left)
    return left


def start_palhm(*args, config, env=None, stderr=None) -> subprocess.Popen:
    argv = [PALHM, "-f", str(config), *[str(a) for a in args]]
    full_env = dict(os.environ)
    full_env.pop("PALHM_CONFIG", None)
    full_env.update(env or {})
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=full_env
    )


def kill9_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL ``proc`` after ``delay`` seconds; False if it ended before."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        pass
    proc.kill()
    proc.wait()
    FIGURES.kills += 1
    return True


# -- mounts -----------------------------------------------------------------------


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (mount); not root here")


@contextmanager
def mounted(target: Path, *mount_args: str, what: str = "a mount"):
    """``mount ARGS TARGET`` for the block; skipped with the reason when not
    root or when mounting is refused (a container without CAP_SYS_ADMIN)."""
    _need_root(what)
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *mount_args, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"{what}: mount {' '.join(mount_args)} refused: {done.stderr.strip()}")
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def tmpfs(target: Path, size: str, *, ro: bool = False):
    opts = f"size={size},mode=0755" + (",ro" if ro else "")
    return mounted(target, "-t", "tmpfs", "-o", opts, "palhm-faults", what=f"tmpfs of {size}")


@contextmanager
def read_only_bind(target: Path):
    """``target`` bind-mounted on itself, read-only."""
    with mounted(target, "--bind", str(target), what="a read-only bind mount"):
        done = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(target)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"remount read-only refused: {done.stderr.strip()}")
        yield target


# -- S3 ---------------------------------------------------------------------------


class FaultBucket:
    """A bucket on a test server, looked into with boto3 (the suite's own
    helpers, so that it does not depend on the aws-s3 tests' ones)."""

    def __init__(self, server, name: str):
        self.server = server
        self.name = name
        self.client = server.client()

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def create(self) -> FaultBucket:
        self.client.create_bucket(Bucket=self.name)
        return self

    def objects(self, prefix: str = "") -> dict[str, tuple[int, str]]:
        """key -> (size, ETag) of every object under ``prefix``."""
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        ):
            for o in page.get("Contents", ()):
                found[o["Key"]] = (o["Size"], o["ETag"])
        return found

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(self.objects(prefix))

    def uploads(self, prefix: str = "") -> list[tuple[str, str]]:
        """(key, upload id) of every unfinished multipart upload under ``prefix``."""
        from botocore.exceptions import ClientError

        found = []
        try:
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.name, Prefix=prefix
            ):
                found.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", ()))
        except ClientError as e:
            # rclone serve s3 answers an empty listing with NoSuchUpload.
            if e.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise
        return sorted(found)

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()


# -- the CLI in-process -------------------------------------------------------------


def palhm_in_process(*argv: str) -> tuple[int | str, str]:
    """``palhm ARGV`` called as a function (fast, for fuzzing): the exit
    status and stderr. An exception that escapes ``main`` is a traceback:
    counted, and returned as the status ``"traceback"``."""
    import io
    import traceback
    from contextlib import redirect_stderr, redirect_stdout

    from palhm_core.cli import main

    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        try:
            rc: int | str = main(list(argv))
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001 - what the fuzzing looks for
            FIGURES.tracebacks += 1
            rc = "traceback"
            err.write(traceback.format_exc())
    return rc, err.getvalue()
