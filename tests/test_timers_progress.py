"""Progress on a terminal: bytes and rate of each running object, redrawn in
place on stderr when it is a terminal; nothing of it otherwise."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from types import SimpleNamespace

import pytest
from conftest import PALHM, backup_task, inline, write_config
from timers_util import GUARD, gate, palhm_env, wait_for

from palhm_core.pipeline import Progress
from palhm_core.progress import INTERVAL, ProgressDisplay, human

SIZE = 200_000  # 195.3 KiB


def gated_config(tmp_path):
    """Two objects whose commands write SIZE bytes, say so in a file
    (``PRODUCED-big.bin``...) and wait for ``GO``."""
    go = tmp_path / "GO"

    def produce(path):
        done = tmp_path / f"PRODUCED-{path}"
        return f'head -c {SIZE} /dev/zero; touch "{done}"; {" ".join(gate(go)[2:])}'

    task = backup_task(
        "b",
        objects=[
            {"path": "big.bin", "pipeline": [inline("sh", "-c", produce("big.bin"))]},
            {
                "path": "relayed.bin",
                "alloc-size": SIZE,
                "pipeline": [inline("sh", "-c", produce("relayed.bin"))],
            },
        ],
        root=str(tmp_path / "root"),
    )
    return write_config(tmp_path, {"tasks": [task]}), go


def wait_for_bytes_then_redraws(tmp_path, proc):
    """Wait until both commands wrote their bytes (more than a pipe holds, so
    PALHM has read most of them), then for a few redraw intervals: the time
    in which a progress display would have drawn them."""
    for path in ("big.bin", "relayed.bin"):
        wait_for((tmp_path / f"PRODUCED-{path}").exists, f"{path}'s bytes", proc=proc)
    time.sleep(4 * INTERVAL)


def read_until(fd, proc, needle: bytes, timeout=GUARD) -> bytes:
    """Read the pty master until ``needle`` shows up."""
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {needle!r} on the terminal; got {out!r}")
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: every writer closed
                chunk = b""
            if not chunk:
                raise AssertionError(f"terminal closed before {needle!r}; got {out!r}")
            out += chunk
    return out


def drain(fd) -> bytes:
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            return out
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return out
        if not chunk:
            return out
        out += chunk


def run_on_terminal(tmp_path, *options):
    config, go = gated_config(tmp_path)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    proc = subprocess.Popen(
        [PALHM, *options, "-f", str(config), "run", "b"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=palhm_env(tmp_path, TERM="xterm"),
    )
    os.close(slave)
    return proc, master, go


def test_progress_is_drawn_in_place_on_a_terminal(tmp_path):
    proc, master, go = run_on_terminal(tmp_path)
    try:
        seen = read_until(master, proc, b"relayed.bin 195.3 KiB")
        seen += read_until(master, proc, b"big.bin 195.3 KiB")
        go.touch()
        assert proc.wait(GUARD) == 0
        seen += drain(master)
    finally:
        os.close(master)
    text = seen.decode()
    status = [part for part in text.split("\r\x1b[K") if "KiB" in part]
    assert status, text
    for line in status:
        assert line.startswith("palhm: ") and "/s" in line and "\n" not in line
    # The last line drawn was erased again.
    assert "\r\x1b[K" in text.rsplit("/s", 1)[1]


def test_no_progress_with_quiet(tmp_path):
    proc, master, go = run_on_terminal(tmp_path, "-q")
    try:
        wait_for_bytes_then_redraws(tmp_path, proc)
        go.touch()
        assert proc.wait(GUARD) == 0
        seen = drain(master)
    finally:
        os.close(master)
    assert seen == b""


def test_no_progress_when_stderr_is_a_file(tmp_path):
    config, go = gated_config(tmp_path)
    err = tmp_path / "stderr"
    with open(err, "wb") as f:
        proc = subprocess.Popen(
            [PALHM, "-f", str(config), "run", "b"],
            stdout=subprocess.DEVNULL,
            stderr=f,
            env=palhm_env(tmp_path, TERM="xterm"),
        )
    wait_for_bytes_then_redraws(tmp_path, proc)
    go.touch()
    assert proc.wait(GUARD) == 0
    text = err.read_text()
    assert "complete" in text
    assert "\r" not in text and "\x1b" not in text and "/s" not in text


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 2**30, "5.0 GiB")]
)
def test_human_sizes(n, text):
    assert human(n) == text


def test_render_shows_running_objects_only():
    running, finished, waiting = Progress("db.sql"), Progress("old.tar"), Progress("later")
    finished.bytes = 10
    display = ProgressDisplay()
    display.palhm_objects_started(
        task=SimpleNamespace(id="b"), progress=[running, finished, waiting]
    )
    assert display.render(100.0) == "palhm: old.tar 10 B 0 B/s"
    running.bytes = 2048
    line = display.render(101.0)
    assert "db.sql 2.0 KiB 2.0 KiB/s" in line and "later" not in line
    running.bytes = 4096
    line = display.render(110.0)  # old.tar has not moved for 10 s
    assert "old.tar" not in line and "db.sql 4.0 KiB" in line
    assert display.render(120.0) == ""


def test_render_fits_the_terminal_width():
    objs = [Progress(f"some/rather/long/object/path-{i}.tar.zst") for i in range(10)]
    for p in objs:
        p.bytes = 5 * 2**20
    display = ProgressDisplay()
    display.palhm_objects_started(task=SimpleNamespace(id="b"), progress=objs)
    line = display.render(1.0)  # not a terminal: 80 columns
    assert len(line) == 79 and line.endswith("…")
