"""Feeding stored objects back to commands, hash-checked as they stream.

``palhm restore`` runs an object's ``restore`` pipeline (``zstd -d |
pg_restore -d DB``) on the object read back from the backend, or writes the
object into a directory (``--to DIR``); ``palhm backups verify --deep`` runs
its ``check`` pipeline (``zstd -t``). In both, PALHM reads the object once,
hashing every byte it passes on, and the pipeline's first command reads them
on its stdin.

The SHA-256 of an object is known only at its end, so a restore pipeline
gets its end of input only once the object matched its manifest: on a
mismatch (or more bytes than the manifest says, found as soon as they
come) its process groups are ended instead (SIGTERM, SIGKILL after a grace
period), so that it sees a failure, never a clean end of a wrong input, and
PALHM exits 1. Then every exit code is checked against the command's ``ec``,
as for a backup pipeline, except that a command killed by SIGPIPE is not at
fault when the command reading its output succeeded (it stopped reading
because it had what it needed, as ``pg_restore --list`` does); PALHM itself
still reads and hashes the whole object. A command's ``timeout`` bounds its
stage from the start of the pipeline.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Callable

from palhm_core.errors import PalhmError, TaskError
from palhm_core.execs import Exec
from palhm_core.pipeline import VL_PREFIX, _check_exit_codes
from palhm_core.process import GRACE, MAX_POLL_MS, Child, Children, TimedOut, end_groups
from palhm_core.tail import StderrRelay
from palhm_core.verify import stream

#: The start of the name of the file a restore into a directory writes
#: before the object matched (the rest is random).
PARTIAL_PREFIX = ".palhm-partial."
#: Names tried for it before giving up (a name taken is a one in 2**64 chance).
PARTIAL_TRIES = 3


class Mismatch(TaskError):
    """The bytes read back are not the ones the manifest names."""


def pipeline_text(execs: list[Exec]) -> str:
    """``zstd -d | pg_restore -d db``: how a shell would write it."""
    return " | ".join(ex.shell_line() for ex in execs)


class Feed:
    """Commands joined by pipes; the first reads what :meth:`write` is given.

    The last command's stdout is PALHM's when the verbosity is at least its
    ``vl-stdout`` and ``stdout_vl`` (a check's listing is shown only with
    ``-v``), else discarded. End with :meth:`finish` (the input was
    right: close it, wait, check exit codes) or :meth:`kill`.
    """

    def __init__(self, execs: list[Exec], children: Children, *, vl: int, stdout_vl: int = 0):
        self.execs = execs
        self.children = children
        self.started = time.monotonic()
        self.deadlines = [None if ex.timeout is None else self.started + ex.timeout for ex in execs]
        self.procs: list[Child] = []
        self.relays: list[StderrRelay] = []
        #: The reader stopped reading (it exited): what is left is dropped,
        #: and its exit code tells what happened.
        self.closed = False
        read_fd, self.fd = os.pipe2(os.O_CLOEXEC)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        try:
            for i, ex in enumerate(execs):
                last = i == len(execs) - 1
                if last:
                    shown = vl >= max(ex.vl_stdout, stdout_vl)
                    out_fd, next_read = (1 if shown else None), None
                else:
                    next_read, out_fd = os.pipe2(os.O_CLOEXEC)
                relay = StderrRelay(ex.label, show=vl >= ex.vl_stderr, prefix=vl >= VL_PREFIX)
                self.relays.append(relay)
                try:
                    self.procs.append(
                        children.spawn(
                            ex.argv,
                            stdin=read_fd,
                            stdout=subprocess.DEVNULL if out_fd is None else out_fd,
                            stderr=relay.fd,
                            env=ex.env_for_child(),
                        )
                    )
                finally:
                    relay.child_started()
                    os.close(read_fd)
                    if out_fd not in (None, 1):
                        os.close(out_fd)
                    read_fd = next_read
        except BaseException:
            if read_fd is not None:
                os.close(read_fd)
            self.kill()
            raise

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        while view and not self.closed:
            try:
                n = os.write(self.fd, view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError:
                self.closed = True
                return
            poller.poll(self._wait_ms())
            self._check_deadlines()

    def _wait_ms(self) -> int:
        pending = [d for d in self.deadlines if d is not None]
        if not pending:
            return MAX_POLL_MS
        return max(0, min(int((min(pending) - time.monotonic()) * 1000) + 1, MAX_POLL_MS))

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for i, (ex, deadline) in enumerate(zip(self.execs, self.deadlines, strict=True)):
            if deadline is not None and now >= deadline and not self.procs[i].exited():
                raise TaskError(
                    f"stage {i + 1}/{len(self.execs)} {ex.label!r} timed out after {ex.timeout:g} s"
                )

    def finish(self) -> None:
        """The input was whole and right: close it, wait for every command
        (up to its deadline) and check the exit codes; TaskError naming the
        stage at fault."""
        self._close()
        codes = []
        for i, (child, deadline) in enumerate(zip(self.procs, self.deadlines, strict=True)):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                codes.append(self.children.wait(child, left))
            except TimedOut:
                self.kill()
                ex = self.execs[i]
                raise TaskError(
                    f"stage {i + 1}/{len(self.execs)} {ex.label!r} timed out after {ex.timeout:g} s"
                ) from None
        for relay in self.relays:
            relay.finish()
        # A reader that stopped early and succeeded had read what it needed
        # (pg_restore --list reads only the table of contents): the broken
        # pipe of the stage before it is no failure, as in a shell.
        for i in range(len(codes) - 2, -1, -1):
            if codes[i] == -signal.SIGPIPE and codes[i + 1] in self.execs[i + 1].ec:
                codes[i] = self.execs[i].ec.low  # counted as a success
        _check_exit_codes(self.execs, codes, self.relays)

    def kill(self) -> None:
        """End every command's process group, before its input ended."""
        end_groups(self.procs, grace=GRACE)
        for p in self.procs:
            self.children.forget(p)
        for relay in self.relays:
            relay.finish()
        self._close()

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _checked(write: Callable[[bytes], object] | None, entry: dict, where: str):
    """``write`` that raises :class:`Mismatch` as soon as more bytes come
    than the manifest names."""
    size = 0

    def out(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)
        if size > entry["size"]:
            raise Mismatch(f"{where}: longer than the {entry['size']} bytes its manifest names")
        if write is not None:
            write(chunk)

    return out


def _read(backend, prefix: str, entry: dict, out) -> None:
    """Stream one object into ``out``; Mismatch unless it is the one the
    manifest names."""
    where = f"{prefix}/{entry['path']}"
    try:
        size, digest = stream(backend, prefix, entry["path"], _checked(out, entry, where))
    except FileNotFoundError:
        raise Mismatch(f"{where}: missing") from None
    if size != entry["size"]:
        raise Mismatch(f"{where}: {size} bytes, its manifest says {entry['size']}")
    if digest != entry["sha256"]:
        raise Mismatch(f"{where}: SHA-256 {digest}, its manifest says {entry['sha256']}")


def feed_object(
    backend, prefix: str, entry: dict, execs: list[Exec], children, *, vl, stdout_vl: int = 0
) -> None:
    """Stream one object through ``execs``; the input ends only if the
    object matches its manifest, else the commands are ended first.
    Raises :class:`Mismatch` or TaskError (a command failed)."""
    feed = Feed(execs, children, vl=vl, stdout_vl=stdout_vl)
    try:
        _read(backend, prefix, entry, feed.write)
    except BaseException:
        feed.kill()
        raise
    feed.finish()


def check_object(backend, prefix: str, entry: dict, execs: list[Exec], children, *, vl):
    """Deep verify: the problem with one object (its SHA-256, or its
    ``check`` when ``execs`` are given), or None."""
    try:
        if execs:
            feed_object(backend, prefix, entry, execs, children, vl=vl, stdout_vl=VL_PREFIX)
        else:
            _read(backend, prefix, entry, None)
    except Mismatch as e:
        return str(e).removeprefix(f"{prefix}/{entry['path']}: ")
    except TaskError as e:
        return f"check `{pipeline_text(execs)}` failed: {e}"
    return None


def write_object(backend, prefix: str, entry: dict, top: str, *, force: bool) -> str:
    """Write one object to ``top/PATH`` (directories made as needed, mode
    0700; the file 0600): first under a new name of its own
    (``.palhm-partial.XXXXXXXXXXXXXXXX`` in the same directory), put in place
    once it matched its manifest. An existing file stays unless ``force``;
    no path leaves ``top`` (symbolic links are not followed); no file but
    its own partial one is ever removed. Returns where."""
    parts = entry["path"].split("/")
    target = os.path.join(top, *parts)
    dfd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o700, dir_fd=dfd)
            except FileExistsError:
                pass
            sub = _open_dir(part, dfd, os.path.join(top, part))
            os.close(dfd)
            dfd = sub
        name = parts[-1]
        if not force and _exists(name, dfd):
            raise PalhmError(f"{target} exists (give --force to replace it)")
        partial, fd = _new_partial(dfd)
        try:
            with open(fd, "wb", closefd=True) as f:
                _read(backend, prefix, entry, f.write)
                f.flush()
                os.fsync(f.fileno())
            if force:
                os.rename(partial, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            else:
                os.link(partial, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
                os.unlink(partial, dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(partial, dir_fd=dfd)
            except OSError:
                pass
            raise
        return target
    except FileExistsError:
        raise PalhmError(f"{target} exists (give --force to replace it)") from None
    except OSError as e:
        raise PalhmError(f"cannot write {target}: {e.strerror or e}") from None
    finally:
        os.close(dfd)


def _new_partial(dfd: int) -> tuple[str, int]:
    """A file of a new name in the directory ``dfd``, open for writing: its
    name and descriptor. The name is PALHM's own for this object (an object
    of the copy may have any name: none is ever replaced or removed)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(PARTIAL_TRIES):
        name = PARTIAL_PREFIX + secrets.token_hex(8)
        try:
            return name, os.open(name, flags, 0o600, dir_fd=dfd)
        except FileExistsError:
            pass
    raise PalhmError(f"cannot find a new name {PARTIAL_PREFIX}XXXXXXXXXXXXXXXX to write")


def _open_dir(name: str, dfd: int, shown: str) -> int:
    try:
        return os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd
        )
    except OSError as e:
        if e.errno in (errno.ENOTDIR, errno.ELOOP):
            raise PalhmError(f"{shown} is not a directory") from None
        raise


def _exists(name: str, dfd: int) -> bool:
    try:
        os.stat(name, dir_fd=dfd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False
