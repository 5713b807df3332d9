"""Hashing the bytes a sink stored with :meth:`Sink.splice`, read back from
storage, on a helper thread while the pipeline's thread keeps moving bytes.

The pipeline's thread only publishes how far the object is stored
(:meth:`StoredHasher.stored`); the hashing thread reads back and hashes
every range before that end, in order, through one reused buffer. The two
meet only every :data:`STEP` bytes (one wake-up per step, not per read), and
the pipeline's thread waits when the hashing is :data:`MAX_LAG` bytes behind,
so the bytes are still in the page cache when they are read back. The run's
time is then about the longer of moving and hashing, not their sum.
"""

from __future__ import annotations

import threading
import time

from palhm_core.backend import Sink
from palhm_core.errors import BackendError
from palhm_core.signals import FINISH_WAIT, start_helper_thread

#: The hashing thread is woken when at least this many new bytes are stored.
STEP = 8 << 20
#: The pipeline's thread waits while the hashing is this far behind.
MAX_LAG = 64 << 20
#: Reading back that makes no progress for this many seconds fails the object.
STALL = 60.0
#: How long one wait lasts before the waiting side looks again.
POLL = 0.1


class StoredHasher:
    """The hash of what ``sink`` stored, computed on a helper thread.

    The pipeline's thread calls :meth:`stored` after each splice and
    :meth:`finish` at the end of the pipe (which returns the digest once every
    stored byte was hashed), or :meth:`stop` when the object fails. An error
    of the hashing thread is raised in the pipeline's thread by a later call.
    """

    def __init__(self, sink: Sink, buf: memoryview, path: str, hasher, hashed: int):
        """Go on hashing into ``hasher``, which holds the first ``hashed``
        bytes, reading back through ``buf`` (the thread's alone from now)."""
        self._sink = sink
        self._buf = buf
        self._path = path
        self._hash = hasher
        self._cond = threading.Condition()
        self._end = hashed  # stored so far
        self._woken_at = hashed  # self._end when the hashing thread was last woken
        self._hashed = hashed
        self._last = False  # no bytes after self._end
        self._stopping = False
        self._error: BaseException | None = None
        self._thread = start_helper_thread(self._run, "palhm-hash")

    def stored(self, end: int) -> None:
        """The sink now holds the object's first ``end`` bytes. Waits (each
        wait bounded by :data:`POLL`) while the hashing is far behind."""
        self._end = end
        if end - self._woken_at < STEP:
            return
        with self._cond:
            self._woken_at = end
            self._cond.notify_all()
            while end - self._hashed > MAX_LAG and self._error is None:
                self._wait_progress()
        self._raise()

    def finish(self) -> str:
        """No more bytes: wait until every stored byte is hashed; the digest."""
        with self._cond:
            self._last = True
            self._cond.notify_all()
            while self._hashed < self._end and self._error is None:
                self._wait_progress()
        self._raise()
        return self._hash.hexdigest()

    def stop(self) -> None:
        """The object failed: end the hashing thread (waiting up to
        :data:`palhm_core.signals.FINISH_WAIT` seconds)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(FINISH_WAIT)

    def _wait_progress(self) -> None:
        """Wait (holding the lock) for the hashing thread to move on; raise
        if it made no progress for :data:`STALL` seconds."""
        before = self._hashed
        give_up = time.monotonic() + STALL
        while self._hashed == before and self._error is None:
            if not self._thread.is_alive():
                raise BackendError(f"{self._path}: the hashing of stored bytes stopped")
            if time.monotonic() >= give_up:
                self._stopping = True
                self._cond.notify_all()
                raise BackendError(
                    f"{self._path}: reading back stored bytes made no progress for {STALL:g} s"
                )
            self._cond.wait(POLL)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            while (todo := self._next_range()) is not None:
                self._hash_range(*todo)
                if self._stopping:
                    return
                with self._cond:
                    self._hashed = todo[1]
                    self._cond.notify_all()
        except BaseException as e:
            with self._cond:
                self._error = e
                self._cond.notify_all()

    def _next_range(self) -> tuple[int, int] | None:
        """Wait for a range to hash: :data:`STEP` bytes or more, or the
        rest; None when there is none left or the hashing stops."""
        with self._cond:
            while not self._stopping:
                behind = self._end - self._hashed
                if behind >= STEP or (self._last and behind):
                    return self._hashed, self._end
                if self._last:
                    return None
                self._cond.wait(POLL)
            return None

    def _hash_range(self, offset: int, end: int) -> None:
        buf = self._buf
        while offset < end and not self._stopping:
            got = self._sink.read_back(offset, buf[: min(len(buf), end - offset)])
            if not got:
                raise BackendError(f"{self._path}: the storage lost bytes it had just stored")
            self._hash.update(buf[:got])
            offset += got
