"""The aws-s3 backend class: copies as objects ``ROOT/PREFIX/PATH`` in a bucket.

A copy being written holds a marker object, ``ROOT/PREFIX/.palhm-partial``,
from :meth:`S3Backend.begin` until :meth:`S3Copy.commit` removes it, after the
manifest (written last) is stored: a copy is complete when it has its manifest
and no marker. So a prefix with the marker is what a run still writing or a
crashed run left (the next run removes it, manifest or not), and a prefix with
neither marker nor manifest was not made by PALHM and is never touched.

Rotation deletes many copies with few requests: it writes a journal,
``ROOT/.palhm-rotation``, naming the copies it deletes, then deletes their
manifests before any other key, 1,000 keys per DeleteObjects across copies,
and removes the journal last. A rotation cut short leaves the journal, and the
next run removes what remains of the copies it names that are no longer
complete.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from palhm_core.api import (
    MANIFEST_NAME,
    SUMS_NAME,
    Backend,
    BackendError,
    CopyInfo,
    CopyWriter,
    PrefixExists,
    Sink,
)
from palhm_s3.errors import NO_KEY, S3Errors, error_code
from palhm_s3.params import SCHEMA, Settings
from palhm_s3.schedule import PartSchedule

log = logging.getLogger("palhm")

#: The marker of a copy that is being written (or that a crashed run left).
MARKER_NAME = ".palhm-partial"
MARKER_TEXT = (
    b"PALHM is writing this copy, or a run that did was interrupted: it is not complete "
    b"until palhm-manifest.json is present.\n"
)
#: The journal of a rotation under way, right in ROOT: the PREFIXes it deletes.
JOURNAL_NAME = ".palhm-rotation"
JOURNAL_HEAD = "# PALHM is deleting these copies; a run that finds this file finishes the job.\n"
#: Files of a copy that are PALHM's own, not backup objects.
OWN_FILES = frozenset({MANIFEST_NAME, SUMS_NAME, MARKER_NAME})
#: Keys per DeleteObjects request, the most S3 takes.
DELETE_BATCH = 1000


@dataclass
class _Prefix:
    """What one listing of ROOT found under one PREFIX."""

    keys: list[str] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)  # backup objects' sizes by PATH
    manifest: bool = False
    marker: bool = False
    finished: datetime | None = None  # when the manifest was stored


class S3Copy(CopyWriter):
    """A copy being made: ``ROOT/PREFIX/`` holds the marker until
    :meth:`commit` has removed it. Keeps the uploads, sinks and stored keys of
    this copy, which sinks in several threads report under a lock."""

    def __init__(self, backend: S3Backend, prefix: str):
        self.b = backend
        self.prefix: str | None = prefix  # None once committed or rolled back
        self.copy_key = backend._copy_key(prefix)
        self._lock = threading.Lock()
        self._uploads: dict[str, str] = {}  # upload id -> key
        self._stored: dict[str, int] = {}  # key -> size
        self._sinks: list = []  # the UploadSinks

    def sink(self, path: str, alloc_size: int | None) -> Sink:
        from palhm_s3.upload import UploadSink

        b = self.b
        key = f"{self.copy_key}{path}"
        extra = b.settings.sse_args()
        if path not in OWN_FILES and b.settings.sink_storage_class:
            extra["StorageClass"] = b.settings.sink_storage_class
        st = b.settings
        sink = UploadSink(
            b.client,
            b.bucket,
            key,
            b._url(key),
            b.errors,
            schedule=PartSchedule.plan(st.part_size, st.part_growth_interval, alloc_size),
            max_concurrency=st.max_concurrency,
            extra=extra,
            checksum=st.checksum,
            on_start=self._upload_started,
            on_done=self._stored_object,
        )
        with self._lock:
            self._sinks.append(sink)
        return sink

    def _upload_started(self, key: str, upload_id: str) -> None:
        with self._lock:
            self._uploads[upload_id] = key

    def _stored_object(self, key: str, size: int) -> None:
        with self._lock:
            self._stored[key] = size

    def commit(self) -> None:
        b = self.b
        if f"{self.copy_key}{MANIFEST_NAME}" not in self._stored:
            raise BackendError(f"{b._url(self.copy_key)}: commit before the manifest was written")
        rot = b.settings.rot_storage_class
        if rot and rot != (b.settings.sink_storage_class or "STANDARD"):
            self._reclass(rot)
        # The marker's removal makes the copy complete: until then it lists
        # as incomplete, and a failure here leaves it to rollback.
        b._delete_keys([f"{self.copy_key}{MARKER_NAME}"])
        self.prefix = None

    def _reclass(self, storage_class: str) -> None:
        from palhm_s3.reclass import change_storage_class

        b = self.b
        for key, size in sorted(self._stored.items()):
            if key[len(self.copy_key) :] in OWN_FILES:
                continue
            change_storage_class(
                b.client,
                b.bucket,
                key,
                size,
                storage_class,
                extra=b.settings.sse_args(),
                errors=b.errors,
                on_start=self._upload_started,
            )

    def rollback(self) -> None:
        prefix = self.prefix
        if prefix is None:
            return
        b = self.b
        # From here on no upload of this copy starts a request.
        with self._lock:
            sinks = list(self._sinks)
        busy = sum(sink.cancel() for sink in sinks)
        # No longer complete first, then the rest; the marker goes last so
        # that whatever a failure here leaves is removed by the next run.
        b._delete_keys([f"{self.copy_key}{MANIFEST_NAME}"])
        with self._lock:
            uploads = dict(self._uploads)
        for upload_id, key in uploads.items():
            b._abort_upload(key, upload_id)
        b._abort_uploads(self.copy_key)
        keys = b._list_keys(self.copy_key)
        if busy:
            # A stopped run left these requests behind, and one may still
            # land: with the marker kept, the next run removes what it adds.
            log.warning(
                "%s: %d uploads were left under way; the marker stays, so that the next run "
                "removes what they may still store",
                b._url(self.copy_key),
                busy,
            )
        b._delete_copy_keys(prefix, keys, keep_marker=bool(busy))
        self.prefix = None


class S3Backend(Backend):
    name = "aws-s3"
    description = (
        "Copies as objects in an AWS S3 bucket or an S3-compatible store, streamed as "
        "multipart uploads with bounded memory."
    )
    schema = SCHEMA
    parallel_reads = 8
    reserved_names = frozenset({MARKER_NAME})

    def __init__(self, params, place):
        super().__init__(params, place)
        self.settings = Settings.parse(params, place)
        self.bucket = self.settings.bucket
        self.base = f"{self.settings.root}/" if self.settings.root else ""
        self.errors = S3Errors()
        self.client: Any = None
        self._listed: dict[str, _Prefix] = {}  # what list_copies last found
        self._journal = False  # the last listing found a rotation's journal

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.settings.root}"
        if self.settings.endpoint_url:
            where += f" at {self.settings.endpoint_url}"
        return where

    def location(self) -> tuple[str, ...]:
        root = [p for p in self.settings.root.split("/") if p]
        return ("aws-s3", self.settings.endpoint_url or "", self.bucket, *root)

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _copy_key(self, prefix: str) -> str:
        return f"{self.base}{prefix}/"

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

    # -- what ROOT holds -------------------------------------------------------

    def _scan(self) -> dict[str, _Prefix]:
        """Every first-level PREFIX under ROOT with what it holds; keys right
        in ROOT are not PALHM's and are left out, but for the rotation's
        journal, whose presence is noted in ``self._journal``."""
        found: dict[str, _Prefix] = {}
        self._journal = False
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.base
        )
        with self.errors(f"cannot list {self.describe()}"):
            for page in pages:
                for obj in page.get("Contents", ()):
                    rest = obj["Key"][len(self.base) :]
                    prefix, sep, path = rest.partition("/")
                    if not sep or not prefix:
                        self._journal = self._journal or rest == JOURNAL_NAME
                        continue
                    entry = found.setdefault(prefix, _Prefix())
                    entry.keys.append(obj["Key"])
                    if path == MANIFEST_NAME:
                        entry.manifest = True
                        entry.finished = obj.get("LastModified")
                    elif path == MARKER_NAME:
                        entry.marker = True
                    elif path != SUMS_NAME:
                        entry.files[path] = obj["Size"]
        return found

    def list_copies(self) -> list[CopyInfo]:
        self._listed = self._scan()
        return [
            CopyInfo(
                prefix,
                entry.manifest and not entry.marker,
                sum(entry.files.values()),
                len(entry.files),
                dict(entry.files),
                finished=entry.finished,
            )
            for prefix, entry in self._listed.items()
            if entry.manifest or entry.marker
        ]

    def clean_leftovers(self) -> list[str]:
        scan = self._scan()
        removed = self._finish_rotation(scan) if self._journal else []
        for prefix, entry in sorted(scan.items()):
            if not entry.marker:  # complete, or not PALHM's
                continue
            aborted = self._abort_uploads(self._copy_key(prefix))
            self._delete_copy_keys(prefix, entry.keys)
            removed.append(
                f"incomplete copy {self._url(self._copy_key(prefix))} ({len(entry.keys)} "
                f"objects, {aborted} unfinished uploads)"
            )
        ours = {p for p, e in scan.items() if e.marker or e.manifest}
        stale = []
        for key, upload_id in self._list_uploads(self.base):
            prefix, sep, _ = key[len(self.base) :].partition("/")
            if sep and prefix in ours:
                stale.append((key, upload_id))
        for key, upload_id in stale:
            self._abort_upload(key, upload_id)
            removed.append(f"unfinished upload of {self._url(key)}")
        return removed

    # -- making a copy ----------------------------------------------------------

    def begin(self, prefix: str) -> S3Copy:
        copy_key = self._copy_key(prefix)
        with self.errors(f"cannot use {self.describe()}"):
            reply = self.client.list_objects_v2(Bucket=self.bucket, Prefix=copy_key, MaxKeys=1)
        if reply.get("KeyCount", len(reply.get("Contents", ()))):
            raise PrefixExists(f"{self._url(copy_key)} exists")
        key = f"{copy_key}{MARKER_NAME}"
        with self.errors(f"cannot create {self._url(key)}"):
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=MARKER_TEXT, **self.settings.sse_args()
            )
        return S3Copy(self, prefix)

    # -- old copies --------------------------------------------------------------

    def delete_copies(self, prefixes: list[str], deleted) -> None:
        """Delete the copies with one journal PUT, ceil(keys / 1,000)
        DeleteObjects and one DELETE of the journal. The keys are those
        :meth:`list_copies` found: a complete copy does not change."""
        keys = {
            p: self._listed[p].keys if p in self._listed else self._list_keys(self._copy_key(p))
            for p in prefixes
        }
        journal = f"{self.base}{JOURNAL_NAME}"
        text = JOURNAL_HEAD + "".join(f"{p}\n" for p in prefixes)
        with self.errors(f"cannot create {self._url(journal)}"):
            self.client.put_object(
                Bucket=self.bucket, Key=journal, Body=text.encode(), **self.settings.sse_args()
            )
        # Every manifest first: no copy is complete while it loses objects.
        manifests = [f"{self._copy_key(p)}{MANIFEST_NAME}" for p in prefixes]
        first = set(manifests)
        order = manifests + [k for p in prefixes for k in keys[p] if k not in first]
        position = {k: i for i, k in enumerate(order)}
        gone_after = {
            max((position[k] for k in keys[p]), default=position[m]): p
            for p, m in zip(prefixes, manifests, strict=True)
        }
        for start in range(0, len(order), DELETE_BATCH):
            batch = order[start : start + DELETE_BATCH]
            self._delete_keys(batch)
            for i in range(start, start + len(batch)):
                if i in gone_after:
                    deleted(gone_after[i])
        self._delete_keys([journal])
        for p in prefixes:
            self._listed.pop(p, None)

    def _finish_rotation(self, scan: dict[str, _Prefix]) -> list[str]:
        """Remove what a rotation cut short left of the copies its journal
        names: those no longer complete. Then the journal."""
        journal = f"{self.base}{JOURNAL_NAME}"
        with self.errors(f"cannot read {self._url(journal)}"):
            text = self.client.get_object(Bucket=self.bucket, Key=journal)["Body"].read()
        removed = []
        for prefix in text.decode(errors="replace").splitlines():
            entry = scan.get(prefix)
            if prefix.startswith("#") or entry is None or entry.manifest:
                continue
            self._delete_copy_keys(prefix, entry.keys)
            del scan[prefix]
            removed.append(
                f"what rotation left of {self._url(self._copy_key(prefix))} "
                f"({len(entry.keys)} objects)"
            )
        self._delete_keys([journal])
        return removed

    def open_object(self, prefix: str, path: str):
        key = f"{self._copy_key(prefix)}{path}"
        try:
            with self.errors(f"cannot read {self._url(key)}"):
                reply = self.client.get_object(Bucket=self.bucket, Key=key)
        except BackendError as e:
            if error_code(e.__cause__) in NO_KEY:
                raise FileNotFoundError(self._url(key)) from None
            raise
        return io.BufferedReader(_BodyReader(reply["Body"], self.errors, self._url(key)), 1 << 20)

    # -- helpers -------------------------------------------------------------------

    def _list_keys(self, key_prefix: str) -> list[str]:
        keys = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=key_prefix
        )
        with self.errors(f"cannot list {self._url(key_prefix)}"):
            for page in pages:
                keys.extend(obj["Key"] for obj in page.get("Contents", ()))
        return keys

    def _delete_copy_keys(self, prefix: str, keys: list[str], keep_marker: bool = False) -> None:
        """Delete a copy's ``keys``, the manifest first and the marker last
        (unless ``keep_marker``)."""
        copy_key = self._copy_key(prefix)
        manifest = f"{copy_key}{MANIFEST_NAME}"
        marker = f"{copy_key}{MARKER_NAME}"
        rest = [k for k in keys if k not in (manifest, marker)]
        if manifest in keys:
            self._delete_keys([manifest])
        self._delete_keys(rest)
        if not keep_marker:
            self._delete_keys([marker])

    def _delete_keys(self, keys: list[str]) -> None:
        """DeleteObjects, :data:`DELETE_BATCH` keys a request; keys already
        gone are not an error."""
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            with self.errors(f"cannot delete from {self.describe()}"):
                reply = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            failed = [e for e in reply.get("Errors", ()) if e.get("Code") != "NoSuchKey"]
            if failed:
                first = failed[0]
                raise BackendError(
                    f"cannot delete {self._url(first.get('Key', '?'))}"
                    + (f" and {len(failed) - 1} more" if len(failed) > 1 else "")
                    + f": {first.get('Code')}: {first.get('Message', '')}".rstrip(": ")
                )

    def _abort_uploads(self, key_prefix: str) -> int:
        """Abort every unfinished multipart upload under ``key_prefix``;
        how many there were."""
        uploads = self._list_uploads(key_prefix)
        for key, upload_id in uploads:
            self._abort_upload(key, upload_id)
        return len(uploads)

    def _list_uploads(self, key_prefix: str) -> list[tuple[str, str]]:
        """``(key, upload id)`` of the unfinished multipart uploads under
        ``key_prefix``, all pages."""
        paginator = self.client.get_paginator("list_multipart_uploads")
        uploads = []
        try:
            with self.errors(f"cannot list the unfinished uploads of {self._url(key_prefix)}"):
                for page in paginator.paginate(Bucket=self.bucket, Prefix=key_prefix):
                    uploads.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", ()))
        except BackendError as e:
            # rclone answers so when there are none.
            if error_code(e.__cause__) != "NoSuchUpload":
                raise
        return uploads

    def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            with self.errors(f"cannot abort the upload of {self._url(key)}"):
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
