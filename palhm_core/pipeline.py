"""Running one backup object: commands joined by OS pipes, the last one's
output moved into the backend's sink by PALHM, counted and hashed.

Only PALHM writes into a sink. The last command writes into a pipe, exactly
as in a shell pipeline (``... | cat > file``), and never into the backup file
itself: programs behave differently when their stdout is a regular file
(``pg_dump -Fc`` seeks back to rewrite its header, ``echo ... > /dev/stdout``
truncates the file), and a background child could write into the file after
the copy was committed. PALHM moves the bytes from the pipe (enlarged to
1 MiB) into the sink and hashes exactly what the sink stored:

- a sink that can take bytes from a pipe (:meth:`Sink.splice`, a local file)
  has the kernel move them (``os.splice``), and PALHM hashes the range just
  stored, read back from the page cache into one reused buffer (measured
  faster than mapping the range: the buffer stays in the CPU's cache); once
  the hashing is what holds the producer back (:data:`BEHIND`), a helper
  thread hashes while this one moves the next bytes
  (:mod:`palhm_core.readback`);
- otherwise PALHM reads the pipe into one reused buffer, hashes it and
  writes it to the sink.

Every command's stderr is relayed by PALHM, line by line
(:mod:`palhm_core.tail`).

An exec's ``timeout`` bounds its stage, counted from the pipeline's start:
by then the stage's process must have exited and, for the last stage, its
output must have reached the end of the pipe (a background process holding
the pipe open is waited for only that long). Past it, every stage's process
group is ended (SIGTERM and SIGCONT, SIGKILL after :data:`GRACE` seconds) and
the object fails naming the stage. Exits are watched through pidfds, which
reap nothing, so no group is signalled after its leader was reaped
(:mod:`palhm_core.process`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field

from palhm_core.backend import Sink
from palhm_core.errors import BackendError, TaskError
from palhm_core.execs import Exec
from palhm_core.process import GRACE, MAX_POLL_MS, Child, Children, describe_status, end_groups
from palhm_core.readback import StoredHasher
from palhm_core.tail import StderrRelay

PIPE_SIZE = 1 << 20
#: PALHM hashes the bytes it stored in the thread that moves them until this
#: many splices in a row found a whole block waiting in the pipe (PALHM, not
#: the producer, is the slower side), and from then on in a helper thread
#: (:mod:`palhm_core.readback`). A slow producer (``zstd``) keeps the hashing
#: in one thread: a second one would only cost CPU time the producer needs.
BEHIND = 4
#: From this verbosity on (``-v``), relayed stderr lines start with the
#: command's name.
VL_PREFIX = 4


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


class _StageTimeout(TaskError):
    def __init__(self, message: str, stage: int):
        super().__init__(message)
        self.stage = stage


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
    procs: list[Child] = []
    relays: list[StderrRelay] = []
    read_fd = None
    try:
        read_fd = _start(execs, children, vl, procs, relays)
        watch = _Watch(execs, procs, started)
        size, digest = _store(read_fd, sink, block_size, progress, watch)
        watch.wait_exits()
        codes = [children.wait(p) for p in procs]
    except BaseException as e:
        end_groups(procs, grace=GRACE)
        for p in procs:
            children.forget(p)
        for relay in relays:
            relay.finish()
        if isinstance(e, _StageTimeout):
            raise TaskError(str(e) + _said(relays, e.stage)) from None
        raise
    finally:
        if read_fd is not None:
            os.close(read_fd)
    for relay in relays:
        relay.finish()
    _check_exit_codes(execs, codes, relays)
    return PipelineResult(size, digest, time.monotonic() - started, codes)


def _start(
    execs: list[Exec], children: Children, vl: int, procs: list[Child], relays: list[StderrRelay]
) -> int:
    """Start every stage, each reading the output of the one before; each
    process and stderr relay joins ``procs`` and ``relays`` as it starts (for
    the caller to end them on failure). Returns the read end of the last
    stage's output."""
    read_fd = None
    try:
        for i, ex in enumerate(execs):
            next_read, out_fd = os.pipe2(os.O_CLOEXEC)
            if i == len(execs) - 1:
                _grow_pipe(out_fd)
            relay = StderrRelay(ex.label, show=vl >= ex.vl_stderr, prefix=vl >= VL_PREFIX)
            relays.append(relay)
            try:
                procs.append(
                    children.spawn(
                        ex.argv,
                        stdin=read_fd if read_fd is not None else subprocess.DEVNULL,
                        stdout=out_fd,
                        stderr=relay.fd,
                        env=ex.env_for_child(),
                    )
                )
            finally:
                relay.child_started()
                os.close(out_fd)
                if read_fd is not None:
                    os.close(read_fd)
                read_fd = next_read
    except BaseException:
        if read_fd is not None:
            os.close(read_fd)
        raise
    return read_fd


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # above /proc/sys/fs/pipe-max-size for unprivileged users
        pass


class _Watch:
    """The stages still running, and their deadlines.

    A stage runs until its process exits; the last one also until its
    output reached the end of the pipe (:attr:`eof`)."""

    def __init__(self, execs: list[Exec], procs: list[Child], started: float):
        self.execs = execs
        self.deadlines = [None if ex.timeout is None else started + ex.timeout for ex in execs]
        #: pidfd -> stage, for the stages whose process has not exited yet.
        self.running = {p.pidfd: i for i, p in enumerate(procs)}
        self.eof = False

    def _pending(self) -> list[int]:
        stages = set(self.running.values())
        if not self.eof:
            stages.add(len(self.execs) - 1)
        return sorted(i for i in stages if self.deadlines[i] is not None)

    def poller(self) -> select.poll:
        poller = select.poll()
        for pidfd in self.running:
            poller.register(pidfd, select.POLLIN)
        return poller

    def wait_ms(self) -> int | None:
        """How long to wait for an event before a deadline passes (None:
        no deadline)."""
        pending = self._pending()
        if not pending:
            return None
        left = min(self.deadlines[i] for i in pending) - time.monotonic()
        return max(0, min(int(left * 1000) + 1, MAX_POLL_MS))

    def events(self, poller: select.poll, ready) -> None:
        """Note the stages whose process exited among ``ready`` pidfds."""
        for fd in ready:
            if fd in self.running:
                del self.running[fd]
                poller.unregister(fd)

    def check(self) -> None:
        """Raise for the first stage still running past its deadline."""
        pending = self._pending()
        if not pending:
            return
        now = time.monotonic()
        for i in pending:
            if now >= self.deadlines[i]:
                ex = self.execs[i]
                raise _StageTimeout(
                    f"stage {i + 1}/{len(self.execs)} {ex.label!r} timed out after "
                    f"{ex.timeout:g} s",
                    i,
                )

    def wait_exits(self) -> None:
        """After the end of the output: wait until every stage's process has
        exited (reaping none), up to the stages' deadlines."""
        poller = self.poller()
        while self.running:
            self.events(poller, [fd for fd, _ in poller.poll(self.wait_ms())])
            self.check()


def _store(
    fd: int, sink: Sink, block_size: int, progress: Progress, watch: _Watch
) -> tuple[int, str]:
    """Move the pipe's bytes into ``sink`` until its end; hash them; the size
    and the SHA-256."""
    buf = memoryview(bytearray(block_size))
    hasher = hashlib.sha256()
    poller = watch.poller()
    poller.register(fd, select.POLLIN)
    size = 0
    splicing = True
    full = 0  # splices in a row that found a whole block in the pipe
    stored = None  # the StoredHasher, once PALHM fell behind the producer
    try:
        while True:
            ready = [ev_fd for ev_fd, _ in poller.poll(watch.wait_ms())]
            watch.events(poller, ready)
            watch.check()
            if fd not in ready:
                continue
            if not splicing:
                n = os.readv(fd, [buf])
                if n:
                    hasher.update(buf[:n])
                    _write(sink, buf[:n], progress.path)
            else:
                n = sink.splice(fd, block_size)
                if n is None:  # this sink cannot: relay the rest through buf
                    splicing = False
                    continue
                full = full + 1 if n == block_size else 0
                if stored is None and full >= BEHIND:
                    stored = StoredHasher(sink, buf, progress.path, hasher, size)
                if stored is not None:
                    stored.stored(size + n)
                else:
                    _hash_stored(sink, size, n, buf, hasher, progress.path)
            if not n:
                watch.eof = True
                return size, stored.finish() if stored else hasher.hexdigest()
            size += n
            progress.bytes = size
    except BaseException:
        if stored is not None:
            stored.stop()
        raise


def _hash_stored(sink: Sink, offset: int, n: int, buf: memoryview, hasher, path: str) -> None:
    """Hash the ``n`` bytes ``sink`` stored at ``offset``, as it stored them."""
    end = offset + n
    while offset < end:
        got = sink.read_back(offset, buf[: min(len(buf), end - offset)])
        if not got:
            raise BackendError(f"{path}: the storage lost bytes it had just stored")
        hasher.update(buf[:got])
        offset += got


def _write(sink: Sink, data: memoryview, path: str) -> None:
    try:
        sink.write(data)
    except OSError as e:
        raise BackendError(f"{path}: {e.strerror or e}") from None


def _check_exit_codes(execs: list[Exec], codes: list[int], relays) -> None:
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
        raise TaskError(why + _said(relays, reader if reader < n else victim))
    rc = codes[culprit]
    msg = f"{stage(culprit)} {describe_status(rc)} (accepted: {execs[culprit].ec.text})"
    others = [i for i in bad if i != culprit]
    if others:
        msg += "; also " + ", ".join(f"{stage(i)} {describe_status(codes[i])}" for i in others)
    raise TaskError(msg + _said(relays, culprit))


def _said(relays: list[StderrRelay], i: int) -> str:
    """What stage ``i`` wrote on its hidden stderr, to follow the error line."""
    text = relays[i].text() if i < len(relays) else ""
    return f"; its stderr ended with:\n{text}" if text else ""
