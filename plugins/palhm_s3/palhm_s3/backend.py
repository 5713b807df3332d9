"""The aws-s3 backend class: copies as objects ``ROOT/PREFIX/PATH`` in a bucket.

The copy lifecycle (the ``.palhm-partial`` marker, the manifest last, the
rotation's journal, leftovers of killed runs) is
:class:`palhm_core.api.ObjectStoreBackend`'s; this module gives it S3's
primitives: a multipart upload streamed from the sink (:mod:`palhm_s3.upload`),
ListObjectsV2 pages (of keys, or of copy names alone), DeleteObjects of 1,000
keys, GetObject streamed. It also aborts the unfinished multipart uploads of
failed and killed runs and, with ``rot-storage-class``, moves a copy's objects
to that class before its marker goes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from typing import Any

from palhm_core.api import (
    JOURNAL_NAME,
    MARKER_NAME,
    BackendError,
    ObjectStoreBackend,
    Sink,
    StoredKey,
)
from palhm_s3.errors import NO_KEY, S3Errors, error_code
from palhm_s3.params import SCHEMA, Settings
from palhm_s3.schedule import PartSchedule

__all__ = ["JOURNAL_NAME", "MARKER_NAME", "S3Backend"]


class S3Backend(ObjectStoreBackend):
    name = "aws-s3"
    description = (
        "Copies as objects in an AWS S3 bucket or an S3-compatible store, streamed as "
        "multipart uploads with bounded memory."
    )
    schema = SCHEMA
    parallel_reads = 8
    delete_batch = 1000  # the most one DeleteObjects takes
    unfinished_name = "unfinished uploads"

    def __init__(self, params, place):
        super().__init__(params, place)
        self.settings = Settings.parse(params, place)
        self.bucket = self.settings.bucket
        self.base = f"{self.settings.root}/" if self.settings.root else ""
        self.errors = S3Errors()
        self.client: Any = None

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.settings.root}"
        if self.settings.endpoint_url:
            where += f" at {self.settings.endpoint_url}"
        return where

    def location(self) -> tuple[str, ...]:
        root = [p for p in self.settings.root.split("/") if p]
        return ("aws-s3", self.settings.endpoint_url or "", self.bucket, *root)

    def where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.base}{key}"

    # -- the connection --------------------------------------------------------

    def open(self) -> None:
        from palhm_s3.client import make_client

        pool = max(10, (os.cpu_count() or 2) * self.settings.max_concurrency + 4)
        self.client = make_client(self.settings, self.errors, pool, self.describe())
        try:
            with self.errors(f"cannot use {self.describe()}"):
                self.client.head_bucket(Bucket=self.bucket)
        except BackendError as e:
            if error_code(e.__cause__) in ("404", "NotFound"):  # HEAD has no error code
                raise BackendError(
                    f"cannot use {self.describe()}: the bucket does not exist"
                ) from e.__cause__
            raise

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    # -- the object store's primitives -------------------------------------------

    def put(self, key: str, alloc_size: int | None, *, own: bool) -> Sink:
        from palhm_s3.upload import UploadSink

        st = self.settings
        extra = st.sse_args()
        if not own and st.sink_storage_class:
            extra["StorageClass"] = st.sink_storage_class
        return UploadSink(
            self.client,
            self.bucket,
            f"{self.base}{key}",
            self.where(key),
            self.errors,
            schedule=PartSchedule.plan(st.part_size, st.part_growth_interval, alloc_size),
            max_concurrency=st.max_concurrency,
            extra=extra,
            checksum=st.checksum,
        )

    def list_keys(self, prefix: str) -> Iterator[StoredKey]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.base}{prefix}"
        )
        start = len(self.base)
        with self.errors(f"cannot list {self.where(prefix)}"):
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield StoredKey(obj["Key"][start:], obj["Size"], obj.get("LastModified"))

    def list_prefixes(self) -> Iterator[str]:
        """ListObjectsV2 with the delimiter ``/``: the common prefixes, one
        entry per copy, whatever the copies hold. rclone serve s3 reads every
        object it lists to answer its MD5: listing no object after the commit
        spares it reading the copy just made."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.base, Delimiter="/"
        )
        start = len(self.base)
        with self.errors(f"cannot list {self.where('')}"):
            for page in pages:
                for common in page.get("CommonPrefixes", ()):
                    yield common["Prefix"][start:].removesuffix("/")

    def delete_keys(self, keys: Sequence[str]) -> None:
        """One DeleteObjects; keys already gone are not an error."""
        if not keys:
            return
        with self.errors(f"cannot delete from {self.describe()}"):
            reply = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": f"{self.base}{k}"} for k in keys], "Quiet": True},
            )
        failed = [e for e in reply.get("Errors", ()) if e.get("Code") != "NoSuchKey"]
        if failed:
            first = failed[0]
            raise BackendError(
                f"cannot delete s3://{self.bucket}/{first.get('Key', '?')}"
                + (f" and {len(failed) - 1} more" if len(failed) > 1 else "")
                + f": {first.get('Code')}: {first.get('Message', '')}".rstrip(": ")
            )

    def open_key(self, key: str):
        where = self.where(key)
        try:
            with self.errors(f"cannot read {where}"):
                reply = self.client.get_object(Bucket=self.bucket, Key=f"{self.base}{key}")
        except BackendError as e:
            if error_code(e.__cause__) in NO_KEY:
                raise FileNotFoundError(where) from None
            raise
        return io.BufferedReader(_BodyReader(reply["Body"], self.errors, where), 1 << 20)

    # -- S3's own: unfinished uploads and storage classes ---------------------------

    def cancel_sink(self, sink) -> bool:
        return sink.cancel()

    def discard_unfinished(self, prefixes: Sequence[str], sinks: Sequence[Sink] = ()) -> list[str]:
        """Abort the multipart uploads the sinks started, then every other
        one under the copies ``prefixes`` (one listing: of the copy, or of
        ROOT for several)."""
        for sink in sinks:
            if sink.upload_id is not None:
                self._abort_upload(sink.key, sink.upload_id)
        wanted = set(prefixes)
        under = f"{prefixes[0]}/" if len(prefixes) == 1 else ""
        start = len(self.base)
        aborted = []
        for key, upload_id in self._list_uploads(f"{self.base}{under}"):
            if key[start:].partition("/")[0] in wanted:
                self._abort_upload(key, upload_id)
                aborted.append(key[start:])
        return aborted

    def finish_copy(self, prefix: str, stored: dict[str, int]) -> None:
        st = self.settings
        rot = st.rot_storage_class
        if not rot or rot == (st.sink_storage_class or "STANDARD"):
            return
        from palhm_s3.reclass import change_storage_class

        for path, size in sorted(stored.items()):
            change_storage_class(
                self.client,
                self.bucket,
                f"{self.base}{prefix}/{path}",
                size,
                rot,
                extra=st.sse_args(),
                errors=self.errors,
            )

    def _list_uploads(self, key_prefix: str) -> list[tuple[str, str]]:
        """``(key, upload id)`` of the unfinished multipart uploads under
        ``key_prefix``, all pages."""
        paginator = self.client.get_paginator("list_multipart_uploads")
        uploads = []
        try:
            with self.errors(
                f"cannot list the unfinished uploads of s3://{self.bucket}/{key_prefix}"
            ):
                for page in paginator.paginate(Bucket=self.bucket, Prefix=key_prefix):
                    uploads.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", ()))
        except BackendError as e:
            # rclone answers so when there are none.
            if error_code(e.__cause__) != "NoSuchUpload":
                raise
        return uploads

    def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            with self.errors(f"cannot abort the upload of s3://{self.bucket}/{key}"):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except BackendError as e:
            if error_code(e.__cause__) != "NoSuchUpload":
                raise


class _BodyReader(io.RawIOBase):
    """An object's body as a raw stream, read as it arrives."""

    def __init__(self, body, errors: S3Errors, where: str):
        super().__init__()
        self._body = body
        self._errors = errors
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        with self._errors(f"cannot read {self._where}"):
            data = self._body.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
