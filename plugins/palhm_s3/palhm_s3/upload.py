"""Streaming one object into S3 from the sink's ``splice()`` (or ``write()``)
calls.

Bytes are gathered in part-sized buffers. A stream that ends within the first
part is one PUT. Otherwise a multipart upload starts and each full buffer is
sent as a part by a small thread pool while the next one fills; at most
``max_concurrency`` parts are in flight, so memory is ``(max_concurrency + 1)
× part size`` whatever the object's size, allocated when the multipart upload
starts. Part sizes follow a :class:`~palhm_s3.schedule.PartSchedule`. A part's
body is its buffer itself, never a copy.

The core hands the sink the pipe (:meth:`UploadSink.splice`): the pipe is
read straight into the part buffer, and the core hashes the bytes by reading
them back (:meth:`UploadSink.read_back`), on a helper thread once the
producer is faster than PALHM. So reading the pipe, hashing the object (for
the manifest) and hashing each part (for its checksum) run on three threads
instead of the first two one after the other. A buffer is reused only once
its part was sent and its bytes were read back. Parts smaller than 8 MiB
(``part-size`` 5-7 MiB) take the bytes through :meth:`UploadSink.write`
instead, hashed by the core before they are copied in.

The part threads are PALHM helper threads (daemons, stop signals blocked), and
every wait for them is polled: a run that is stopping leaves behind a part
stuck on a server that stopped answering, instead of waiting for it.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from palhm_core.api import READ_BACK_STEP, BackendError, Sink, start_helper_thread
from palhm_s3.errors import S3Errors
from palhm_s3.schedule import MAX_PARTS, PartSchedule

log = logging.getLogger("palhm")

#: How long a wait for a part thread lasts before looking for errors.
_POLL = 0.5
#: A splice that waits this many seconds for the core to read back a part
#: already sent (the core's hashing stopped) fails the object.
READ_STALL = 60.0


def part_body(buf: bytearray, length: int) -> bytearray:
    """The request body of a part: its buffer itself, cut to ``length``
    first when the part is the last and shorter. botocore and http.client
    take a bytearray whole: one checksum update and one ``sendall``, where a
    file-like body is read back in 16 KiB pieces."""
    if length < len(buf):
        del buf[length:]
    return buf


@dataclass(eq=False)
class _Part:
    """A part buffer and what became of its bytes."""

    start: int  # the offset in the object of the buffer's first byte
    buf: bytearray
    length: int = 0  # bytes in the buffer
    queued: bool = False  # full (or the last): handed to the part threads
    sent: bool = False  # the part threads are done with it
    read: bool = False  # the core read every byte back (or had no need to)

    @property
    def end(self) -> int:
        return self.start + self.length


class UploadSink(Sink):
    """One object of the copy being made, streamed to ``key``.

    :param client: the botocore S3 client.
    :param extra: arguments of PutObject/CreateMultipartUpload (storage
        class, server-side encryption).
    :param checksum: the checksum algorithm (``SHA256``) or ``None``.
    :param on_start: told ``(key, upload_id)`` when a multipart upload begins.
    :param on_done: told ``(key, size)`` when the object is stored.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        where: str,
        errors: S3Errors,
        *,
        schedule: PartSchedule,
        max_concurrency: int,
        extra: dict[str, str],
        checksum: str | None,
        on_start: Callable[[str, str], None] = lambda key, upload_id: None,
        on_done: Callable[[str, int], None] = lambda key, size: None,
    ):
        self.client = client
        self.bucket = bucket
        self.key = key
        self.where = where
        self.errors = errors
        self.schedule = schedule
        self.max_concurrency = max_concurrency
        self.extra = extra
        self.checksum = checksum
        self.on_start = on_start
        self.on_done = on_done
        self.upload_id: str | None = None
        self.size = 0
        self._part: _Part | None = None  # the one being filled
        self._number = 0  # parts sent so far
        self._parts: dict[int, dict[str, str]] = {}
        #: Buffers for the next parts; with those of the parts under way,
        #: never more than max_concurrency + 1 in all (``_buffers``).
        self._free: list[bytearray] = []
        self._buffers = 0
        #: The spliced parts whose bytes the core has not read back yet, in order.
        self._unread: collections.deque[_Part] = collections.deque()
        self._read_to = 0  # the core read back every byte before this offset
        self._read_at = time.monotonic()  # when the core last read bytes back
        self._slots = threading.Semaphore(max_concurrency)
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        #: Parts for the part threads to send; None ends a thread.
        self._jobs: queue.SimpleQueue | None = None
        self._error: BaseException | None = None
        self._finished = False
        self._requests = 0  # under way
        self._cancelled = False

    # -- the Sink contract ---------------------------------------------------

    def write(self, data: memoryview) -> None:
        self._raise_failure()
        while len(data):
            part = self._part
            if part is None:
                part = self._part = self._new_part(self._number + 1, read=True)
            elif part.length == len(part.buf):
                # More bytes after a full part: it cannot be the only one.
                self._send_part(part)
                self._part = None
                continue
            n = min(len(data), len(part.buf) - part.length)
            part.buf[part.length : part.length + n] = data[:n]
            part.length += n
            self.size += n
            data = data[n:]

    def splice(self, fd: int, size: int) -> int | None:
        """Read up to ``size`` bytes of the pipe ``fd`` straight into the part
        buffer; 0 at the end of the pipe's data. None (the core then calls
        :meth:`write`) for parts smaller than the steps in which the core's
        hashing thread reads back (8 MiB): a splice waiting for a buffer
        until the core reads it back could then wait for good."""
        if self.schedule.first < READ_BACK_STEP:
            return None
        self._raise_failure()
        part = self._part
        if part is None:
            part = self._part = self._new_part(self._number + 1, read=False)
        elif part.length == len(part.buf):
            # A full part is sent once more bytes follow: it cannot be the only one.
            nxt = self._new_part(self._number + 2, read=False)
            n = self._read_pipe(fd, nxt, size)
            if not n:
                self._forget(nxt)
                return 0
            self._send_part(part)
            self._part = nxt
            return n
        return self._read_pipe(fd, part, size)

    def read_back(self, offset: int, buf: memoryview) -> int:
        """Copy spliced bytes from their part buffers. The core reads in
        order: a part read to its end is left to the part threads, whose
        buffer is then free once sent."""
        got = 0
        with self._lock:
            self._read_at = time.monotonic()
            for part in self._unread:
                if got == len(buf):
                    break
                at = offset + got
                if not part.start <= at < part.end:
                    continue
                n = min(len(buf) - got, part.end - at)
                with memoryview(part.buf) as view:
                    buf[got : got + n] = view[at - part.start : at - part.start + n]
                got += n
            self._read_to = max(self._read_to, offset + got)
            self._drop_read()
        return got

    def close(self) -> None:
        self._raise_failure()
        with self._lock:  # the core has read back every byte it hashes
            while self._unread:
                done = self._unread.popleft()
                done.read = True
                if done.sent:
                    self._give_back(done.buf)
        part = self._part
        if self.upload_id is None:
            self._put_whole(part)
        else:
            if part is not None and part.length:
                self._send_part(part)
            self._part = None
            self._wait_all()
            self._raise_failure()
            parts = [self._parts[n] for n in sorted(self._parts)]
            with self._request(f"cannot complete the upload of {self.where}"):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": parts},
                )
            log.debug("%s: %d bytes in %d parts", self.where, self.size, len(parts))
        self._finished = True
        self._release()
        self.on_done(self.key, self.size)

    def abort(self) -> None:
        """Stop sending parts, wait for the ones in flight and abort the
        multipart upload; rollback deletes whatever else remains."""
        if self._error is None:
            self._error = BackendError(f"{self.where}: upload aborted")
        self._wait_all()
        self._release()
        if self.upload_id is not None and not self._finished:
            try:
                with self._request(f"cannot abort the upload of {self.where}"):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                    )
            except BackendError as e:  # rollback tries again
                log.debug("%s", e)

    def cancel(self) -> bool:
        """The copy is being rolled back: no request of this sink starts any
        more. True if one is still under way (a stopped run left it behind),
        which may yet store something."""
        with self._lock:
            self._cancelled = True
            return self._requests > 0

    # -- internals -----------------------------------------------------------

    @contextmanager
    def _request(self, what: str):
        """A request to the server, counted while under way; refused once
        the sink was cancelled."""
        with self._lock:
            if self._cancelled:
                raise BackendError(f"{what}: the copy is being rolled back")
            self._requests += 1
        try:
            with self.errors(what):
                yield
        finally:
            with self._lock:
                self._requests -= 1

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _read_pipe(self, fd: int, part: _Part, size: int) -> int:
        n = min(size, len(part.buf) - part.length)
        with memoryview(part.buf) as view:
            try:
                n = os.readv(fd, [view[part.length : part.length + n]])
            except OSError as e:
                raise BackendError(f"{self.where}: cannot read the pipe: {e.strerror}") from None
        part.length += n
        self.size += n
        return n

    def _new_part(self, number: int, *, read: bool) -> _Part:
        """Part ``number``, starting at ``self.size``; waits while every
        buffer is under way or not read back yet. ``read``: the core hashed
        the bytes before storing them (:meth:`write`)."""
        size = self.schedule.size(number)
        with self._lock:
            while True:
                while self._free:
                    buf = self._free.pop()
                    if len(buf) == size:
                        break
                    self._buffers -= 1  # a size no part has any more
                else:
                    if self._buffers > self.max_concurrency:
                        self._freed.wait(_POLL)
                        self._check_waiting()
                        continue
                    self._buffers += 1
                    buf = bytearray(size)
                break
            part = _Part(self.size, buf, read=read)
            if not read:
                self._unread.append(part)
        return part

    def _check_waiting(self) -> None:
        """Raise if a wait for a buffer must end: the sink failed or is
        cancelled, or a sent part is not read back for :data:`READ_STALL`
        seconds (the caller holds the lock)."""
        self._raise_failure()
        if self._cancelled:
            raise BackendError(f"{self.where}: the copy is being rolled back")
        unread_sent = any(p.sent for p in self._unread)
        if unread_sent and time.monotonic() - self._read_at > READ_STALL:
            raise BackendError(
                f"{self.where}: the bytes stored were not read back for {READ_STALL:g} s"
            )

    def _drop_read(self) -> None:
        """Parts handed to the part threads and read back to their end are
        read: their buffers are free once sent (the caller holds the lock)."""
        while self._unread and self._unread[0].queued and self._unread[0].end <= self._read_to:
            part = self._unread.popleft()
            part.read = True
            if part.sent:
                self._give_back(part.buf)

    def _forget(self, part: _Part) -> None:
        """An unused part: its buffer is free again."""
        with self._lock:
            self._unread.remove(part)
            self._give_back(part.buf)

    def _give_back(self, buf: bytearray) -> None:
        """A buffer is free (the caller holds the lock)."""
        if not self._finished and len(self._free) <= self.max_concurrency:
            self._free.append(buf)
        else:
            self._buffers -= 1
        self._freed.notify()

    def _put_whole(self, part: _Part | None) -> None:
        body = bytearray() if part is None else part_body(part.buf, part.length)
        kwargs = dict(self.extra)
        if self.checksum:
            kwargs["ChecksumAlgorithm"] = self.checksum
        with self._request(f"cannot store {self.where}"):
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, **kwargs)
        log.debug("%s: %d bytes in one PUT", self.where, self.size)

    def _start(self) -> None:
        kwargs = dict(self.extra)
        if self.checksum:
            kwargs["ChecksumAlgorithm"] = self.checksum
        with self._request(f"cannot start the upload of {self.where}"):
            reply = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key, **kwargs)
        self.upload_id = reply["UploadId"]
        self.on_start(self.key, self.upload_id)
        # The whole working set at once (part 1's buffer is the one being
        # sent, and a spliced part 2 may hold one already): memory then does
        # not depend on how fast the server takes parts, so it is the same
        # from one run to the next.
        with self._lock:
            more = self.max_concurrency + 1 - self._buffers
            self._free += [bytearray(self.schedule.size(2)) for _ in range(more)]
            self._buffers += more
        self._jobs = queue.SimpleQueue()
        for n in range(self.max_concurrency):
            start_helper_thread(self._part_thread, f"palhm-s3-part-{n}")

    def _send_part(self, part: _Part) -> None:
        if self._number >= MAX_PARTS:
            raise BackendError(
                f"{self.where}: more than {self.schedule.capacity()} bytes, the most "
                f"{MAX_PARTS} parts hold with part-size {self.schedule.first} "
                "(raise part-size or let parts grow)"
            )
        if self.upload_id is None:
            self._start()
        while not self._slots.acquire(timeout=_POLL):
            self._raise_failure()
        self._raise_failure_releasing()
        self._number += 1
        number = self._number
        log.debug("%s: part %d, %d bytes", self.where, number, part.length)
        with self._lock:
            part.queued = True
            self._drop_read()  # read back before it was full
        assert self._jobs is not None
        self._jobs.put((number, part))

    def _raise_failure_releasing(self) -> None:
        if self._error is not None:
            self._slots.release()
            raise self._error

    def _part_thread(self) -> None:
        jobs = self._jobs
        assert jobs is not None
        while (job := jobs.get()) is not None:  # idle until the next part or the end
            self._upload_part(*job)

    def _upload_part(self, number: int, part: _Part) -> None:
        """Send one part; a failure is kept as the sink's error."""
        try:
            if self._error is not None:
                return
            # Only the last part is shorter, sent once the core read every byte.
            body = part_body(part.buf, part.length)
            kwargs = {"ChecksumAlgorithm": self.checksum} if self.checksum else {}
            with self._request(f"cannot upload part {number} of {self.where}"):
                reply = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=body,
                    **kwargs,
                )
            entry = {"ETag": reply["ETag"], "PartNumber": number}
            if self.checksum:
                # Servers that do not keep checksums do not echo them: then
                # the completion must not name them either.
                value = reply.get(f"Checksum{self.checksum}")
                if value:
                    entry[f"Checksum{self.checksum}"] = value
            with self._lock:
                self._parts[number] = entry
        except BaseException as e:  # noqa: BLE001 - raised by the writing thread
            if not isinstance(e, BackendError):  # an answer botocore did not check
                e = BackendError(f"cannot upload part {number} of {self.where}: {e!r}")
            if self._error is None:
                self._error = e
        finally:
            with self._lock:
                part.sent = True
                if part.read:
                    self._give_back(part.buf)
            self._slots.release()

    def _wait_all(self) -> None:
        """Wait until no part is in flight: every slot is free. Each part's
        requests are bounded by the client's timeouts and attempts."""
        taken = 0
        while taken < self.max_concurrency:
            taken += self._slots.acquire(timeout=_POLL)
        for _ in range(taken):
            self._slots.release()

    def _release(self) -> None:
        if self._jobs is not None:
            for _ in range(self.max_concurrency):
                self._jobs.put(None)
            self._jobs = None
        with self._lock:
            self._free.clear()
            self._unread.clear()
        self._part = None
