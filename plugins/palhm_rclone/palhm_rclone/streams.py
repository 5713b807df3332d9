"""An object's bytes into ``rclone rcat`` and out of ``rclone cat``, through
pipes, every wait bounded by the backend's ``timeout``."""

from __future__ import annotations

import fcntl
import io
import os
import select
import subprocess
from collections.abc import Callable

from palhm_core.api import BackendError, Sink
from palhm_rclone.command import NOT_FOUND, Command, Rclone

#: The size asked for the pipes to and from rclone (fewer wake-ups).
PIPE_SIZE = 1 << 20


def _grow(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # above /proc/sys/fs/pipe-max-size: the default is fine
        pass


def _wait_for(fd: int, events: int, cmd: Command, what: str, doing: str) -> None:
    poller = select.poll()
    poller.register(fd, events)
    if not poller.poll(int(cmd.timeout * 1000)):
        cmd.end()
        raise BackendError(f"{what}: {cmd.label} {doing} for {cmd.timeout:g} s")


class RcatSink(Sink):
    """One object streamed into ``rclone rcat PATH``, which stores it when
    its input ends."""

    def __init__(self, rclone: Rclone, path: str, where: str):
        self.where = f"cannot store {where}"
        self.cmd = rclone.start(["rcat", path], stdin=subprocess.PIPE)
        self.fd = self.cmd.proc.stdin.fileno()
        os.set_blocking(self.fd, False)
        _grow(self.fd)

    def write(self, data: memoryview) -> None:
        while len(data):
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                _wait_for(self.fd, select.POLLOUT, self.cmd, self.where, "took no bytes")
                continue
            except BrokenPipeError:
                self.cmd.wait(self.where)
                raise self.cmd.failure(self.where) from None
            data = data[n:]

    def close(self) -> None:
        try:
            self.cmd.proc.stdin.close()
            if self.cmd.wait(self.where) != 0:
                raise self.cmd.failure(self.where)
        finally:
            self.cmd.close()

    def abort(self) -> None:
        try:
            self.cmd.proc.stdin.close()
        except OSError:
            pass
        self.cmd.end()
        self.cmd.close()


class CatReader(io.RawIOBase):
    """``rclone cat PATH``'s output as a raw stream; its exit status is
    checked at the end: a failure is a :class:`BackendError`, a missing
    object :class:`FileNotFoundError`."""

    def __init__(self, rclone: Rclone, path: str, where: str, exists: Callable[[], bool]):
        super().__init__()
        self.where = where
        self.exists = exists
        self.cmd = rclone.start(["cat", path], stdout=subprocess.PIPE)
        self.fd = self.cmd.proc.stdout.fileno()
        _grow(self.fd)
        self._ended = False
        self._size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._ended:
            return 0
        what = f"cannot read {self.where}"
        _wait_for(self.fd, select.POLLIN | select.POLLHUP, self.cmd, what, "sent nothing")
        n = os.readv(self.fd, [b])
        if n == 0:
            self._ended = True
            rc = self.cmd.wait(what)
            if rc in NOT_FOUND:
                raise FileNotFoundError(self.where)
            if rc != 0:
                raise self.cmd.failure(what)
            # A bucket store's rclone cats a missing key as an empty directory.
            if self._size == 0 and not self.exists():
                raise FileNotFoundError(self.where)
        self._size += n
        return n

    def close(self) -> None:
        if not self.closed:
            self.cmd.proc.stdout.close()
            if not self._ended:
                self.cmd.end()
            self.cmd.close()
        super().close()


def open_cat(
    rclone: Rclone, path: str, where: str, exists: Callable[[], bool]
) -> io.BufferedReader:
    """``path`` opened for reading; :class:`FileNotFoundError` at once for a
    missing object (the first bytes, or the end, are waited for here;
    ``exists`` tells an empty object from a missing one)."""
    reader = io.BufferedReader(CatReader(rclone, path, where, exists), 1 << 20)
    try:
        reader.peek(1)
    except BaseException:
        reader.close()
        raise
    return reader
