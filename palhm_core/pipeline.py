"""Running one backup object: commands joined by OS pipes, the last one's
output streamed into the backend's sink while it is counted and hashed.

When the sink is a plain local file, the last command writes into it directly
and PALHM hashes the file as it grows, so the bytes never pass through Python.
Otherwise PALHM relays the last pipe (enlarged to 1 MiB) into the sink through
one reused buffer.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

from palhm_core.backend import Sink
from palhm_core.errors import BackendError, TaskError
from palhm_core.execs import Exec
from palhm_core.process import Children, describe_status, end_groups, kill_stragglers
from palhm_core.tail import StderrTail

PIPE_SIZE = 1 << 20
#: Writing a file directly, the last command's output is sent to disk every this
#: many bytes hashed (see :func:`_follow_file`).
WRITEBACK_STEP = 8 << 20
#: It is hashed through mappings of this many bytes, faulted in at once.
MAP_WINDOW = 16 << 20
MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


@dataclass
class Progress:
    """Bytes an object has produced so far, read by the progress display."""

    path: str
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class PipelineResult:
    size: int
    sha256: str
    seconds: float
    exit_codes: list[int]


def run_pipeline(
    execs: list[Exec],
    sink: Sink,
    children: Children,
    *,
    vl: int,
    block_size: int,
    progress: Progress,
) -> PipelineResult:
    """Run ``execs`` into ``sink``; raise TaskError naming the stage at fault."""
    started = time.monotonic()
    direct = sink.fileno()
    procs: list[subprocess.Popen] = []
    tails: list[StderrTail | None] = []
    read_fd = None
    try:
        for i, ex in enumerate(execs):
            last = i == len(execs) - 1
            if last and direct is not None:
                out_fd, next_read = direct, None
            else:
                next_read, out_fd = os.pipe2(os.O_CLOEXEC)
                if last:
                    _grow_pipe(out_fd)
            tail = None if vl >= ex.vl_stderr else StderrTail()
            tails.append(tail)
            try:
                procs.append(
                    children.spawn(
                        ex.argv,
                        stdin=read_fd if read_fd is not None else subprocess.DEVNULL,
                        stdout=out_fd,
                        stderr=None if tail is None else tail.fd,
                        env=ex.env_for_child(),
                    )
                )
            finally:
                if tail is not None:
                    tail.child_started()
                if out_fd != direct:
                    os.close(out_fd)
                if read_fd is not None:
                    os.close(read_fd)
                read_fd = next_read
        hasher = hashlib.sha256()
        if direct is not None:
            size = _follow_file(direct, procs[-1], hasher, block_size, progress)
        else:
            size = _relay(read_fd, sink, hasher, block_size, progress)
        codes = [children.wait(p) for p in procs]
    except BaseException:
        end_groups(procs, grace=2.0)
        for p in procs:
            children.forget(p)
        raise
    finally:
        if read_fd is not None:
            os.close(read_fd)
    kill_stragglers(procs)
    _check_exit_codes(execs, codes, tails)
    return PipelineResult(size, hasher.hexdigest(), time.monotonic() - started, codes)


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # above /proc/sys/fs/pipe-max-size for unprivileged users
        pass


def _relay(fd: int, sink: Sink, hasher, block_size: int, progress: Progress) -> int:
    buf = memoryview(bytearray(block_size))
    size = 0
    while True:
        n = os.readv(fd, [buf])
        if not n:
            return size
        chunk = buf[:n]
        hasher.update(chunk)
        try:
            sink.write(chunk)
        except OSError as e:
            raise BackendError(f"{progress.path}: {e.strerror or e}") from None
        size += n
        progress.bytes = size


def _follow_file(fd: int, writer: subprocess.Popen, hasher, block_size: int, progress) -> int:
    """Hash the file ``writer`` is writing through ``fd`` until it exits.

    The new bytes are mapped, not read: copying them out of the page cache
    costs about as much CPU as hashing them. A writer that truncates its own
    output while it is mapped gets PALHM killed by SIGBUS (the next run removes
    the staging directory, as after kill -9); one that rewrites what it wrote
    was never hashed right either way.

    Every :data:`WRITEBACK_STEP` bytes hashed, the kernel is told PALHM is done
    with them, so it starts writing them to disk now rather than at the final
    fsync, and can drop them from the page cache (not the server's own data)
    once they are clean.
    """
    size = 0
    advised = behind = 0
    pause = 0.001
    while True:
        done = writer.poll() is not None
        end = os.fstat(fd).st_size
        if end > size:
            before, size = size, _hash_more(fd, size, end, hasher, block_size)
            progress.bytes = size
            if size - before >= block_size:  # a trickle is hashed in bigger gulps
                pause = 0.001
            if size - advised >= WRITEBACK_STEP:
                # [behind, advised) was sent to disk a step ago: clean by now, dropped.
                _done_with(fd, behind, size)
                behind, advised = advised, size
        elif done:
            return size
        else:
            time.sleep(pause)
            pause = min(pause * 2, 0.02)


def _hash_more(fd: int, size: int, end: int, hasher, block_size: int) -> int:
    """Hash the file from ``size`` on, up to ``end``; the new size."""
    start = size - size % mmap.ALLOCATIONGRANULARITY
    stop = min(end, start + max(block_size, MAP_WINDOW))
    try:
        m = mmap.mmap(fd, stop - start, MAP_FLAGS, mmap.PROT_READ, offset=start)
    except OSError:  # a filesystem that cannot map files (some FUSE ones): read
        buf = bytearray(min(block_size, end - size))
        n = os.preadv(fd, [buf], size)
        hasher.update(memoryview(buf)[:n])
        return size + n
    with m, memoryview(m) as view, view[size - start :] as new:
        hasher.update(new)
    return stop


def _done_with(fd: int, start: int, end: int) -> None:
    """Start writeback of [start, end) and drop its clean pages: a hint only."""
    try:
        os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


def _check_exit_codes(execs: list[Exec], codes: list[int], tails) -> None:
    bad = [i for i, (ex, rc) in enumerate(zip(execs, codes, strict=True)) if rc not in ex.ec]
    if not bad:
        return
    n = len(execs)

    def stage(i: int) -> str:
        return f"stage {i + 1}/{n} {execs[i].label!r}"

    sigpipe = -signal.SIGPIPE
    culprit = next((i for i in bad if codes[i] != sigpipe), None)
    if culprit is None:
        # Only broken pipes: the stage after the last one stopped reading early.
        victim = bad[-1]
        reader = victim + 1
        why = f"{stage(victim)} {describe_status(codes[victim])}"
        if reader < n:
            why += f": {stage(reader)} stopped reading its input ({describe_status(codes[reader])})"
        raise TaskError(why + _said(tails, reader if reader < n else victim))
    rc = codes[culprit]
    msg = f"{stage(culprit)} {describe_status(rc)} (accepted: {execs[culprit].ec.text})"
    others = [i for i in bad if i != culprit]
    if others:
        msg += "; also " + ", ".join(f"{stage(i)} {describe_status(codes[i])}" for i in others)
    raise TaskError(msg + _said(tails, culprit))


def _said(tails, i: int) -> str:
    """What stage ``i`` wrote on its hidden stderr, to follow the error line."""
    tail = tails[i] if i < len(tails) else None
    text = tail.text() if tail is not None else ""
    return f"; its stderr ended with:\n{text}" if text else ""
