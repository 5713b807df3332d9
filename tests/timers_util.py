"""Helpers for the tests of running from timers (tests/test_timers_*.py):
PALHM started in the background, waiting for what it does, and finding every
process it started in /proc."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from pathlib import Path

from conftest import PALHM

#: Every process PALHM starts inherits its environment, so this variable
#: (with a value unique to a test) finds them all in /proc/*/environ.
MARKER_VAR = "PALHM_TEST_MARKER"
#: A guard against hanging forever, not a measure of speed.
GUARD = 60.0


def new_marker() -> str:
    return f"palhm-test-{uuid.uuid4().hex}"


def palhm_env(tmp_path: Path, marker: str | None = None, **extra) -> dict[str, str]:
    """The environment for a PALHM under test: its own lock directory."""
    env = dict(os.environ)
    env.pop("PALHM_CONFIG", None)
    env.pop("JOURNAL_STREAM", None)
    env["PALHM_LOCK_DIR"] = str(tmp_path / "locks")
    if marker:
        env[MARKER_VAR] = marker
    env.update(extra)
    return env


def start_palhm(*args, config, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw):
    """Start ``palhm -f CONFIG ARGS`` in the background."""
    argv = [PALHM, "-f", str(config), *map(str, args)]
    return subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env, text=True, **kw)


def wait_for(predicate, what: str, timeout: float = GUARD, proc=None):
    """Poll ``predicate`` until it returns something true; fail after
    ``timeout`` seconds, or at once if ``proc`` exited meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"palhm exited ({proc.returncode}) before {what}:\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def marked_processes(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process carrying ``marker`` in its
    environment or its command line."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone, or not ours to read
            continue
        if state in ("Z", "X"):  # exited; only its parent's wait is missing
            continue
        needle = marker.encode()
        if needle in cmdline or needle in environ:
            found.append((int(entry), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


def assert_none_left(marker: str, timeout: float = GUARD) -> None:
    """Fail unless every process carrying ``marker`` is gone within
    ``timeout`` seconds: one PALHM killed as it exited may not have run to
    its end yet, so /proc is watched, not read once."""
    deadline = time.monotonic() + timeout
    while left := marked_processes(marker):
        if time.monotonic() > deadline:
            raise AssertionError(f"still running {timeout:.0f} s after PALHM ended: {left}")
        time.sleep(0.02)


def kill_marked(marker: str) -> None:
    """Clean up after a test that failed halfway."""
    import signal

    for pid, _ in marked_processes(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything under ``root`` (root included): type, mode, size, mtime
    and the contents' SHA-256, to compare byte for byte."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            digest = None
            if path.is_file() and not path.is_symlink():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            rel = os.path.normpath(os.path.relpath(path, root))
            result[rel] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid, digest)
    return result


def gate(path: Path) -> list[str]:
    """An exec-inline step that waits until ``path`` exists."""
    return ["sh", "-c", f'while [ ! -e "{path}" ]; do sleep 0.02; done']


class LineReader:
    """Lines of a child's pipe, read by a thread, so a test can wait for one
    without blocking forever."""

    def __init__(self, stream):
        import queue
        import threading

        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def next(self, timeout: float = GUARD) -> str:
        """The next line ("" at end of file); fail after ``timeout`` seconds."""
        import queue

        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout}s; so far: {self.seen}") from None
        if line is None:
            self.lines.put(None)
            return ""
        self.seen.append(line)
        return line

    def rest(self) -> str:
        """Everything up to end of file (call once the process ended)."""
        self._thread.join(GUARD)
        out = []
        while (line := self.next()) != "":
            out.append(line)
        return "".join(out)
