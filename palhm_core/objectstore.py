"""A base class for backends that store copies in a key-value store.

S3, an rclone remote, GCS, Azure Blob, B2, Swift, SFTP or WebDAV all offer
the same few operations: store a stream at a key, list the keys under a
prefix with their sizes, delete keys, read a key. :class:`ObjectStoreBackend`
builds the whole copy lifecycle of :mod:`palhm_core.backend` on these, so a
backend for such a store implements only them (see "Writing a backend for a
key-value store" in doc/plugins.md). Keys are relative to the backend's
root: ``PREFIX/PATH`` for an object of a copy, ``NAME`` right in the root.

How a copy is kept safe, written once here:

- :meth:`ObjectStoreBackend.begin` refuses a PREFIX under which any key
  exists, then stores a marker, ``PREFIX/.palhm-partial``. The objects, then
  ``SHA256SUMS``, then the manifest are stored; :meth:`ObjectCopy.commit`
  then deletes the marker. A copy is complete when it holds its manifest and
  no marker. So a PREFIX with the marker is what a run still writing or a
  killed run left (the next run removes it, manifest or not), and a PREFIX
  with neither marker nor manifest was not made by PALHM and is never touched.
- Rollback deletes the manifest first, then the other keys, the marker last:
  whatever a failure part-way leaves still holds the marker.
- Rotation stores a journal, ``.palhm-rotation`` right in the root, naming
  the copies it deletes and how many keys each holds; then deletes every
  manifest before the other keys, :attr:`~ObjectStoreBackend.delete_batch`
  keys a request across copies; then the journal. A rotation cut short
  leaves the journal, and the next run removes what remains of the copies it
  names that lost their manifest or any key (a store may delete the keys of
  one request in any order).
- Sizes are the listing's: PALHM's own files (manifest, ``SHA256SUMS``,
  marker) are not counted.
- A backup run lists every key of the root once, before the copy is begun
  (the leftover scan). After the commit, a store that lists copy names alone
  (:meth:`ObjectStoreBackend.list_prefixes`) is asked only for them, and the
  keys of each copy are those of the scan (see
  :meth:`ObjectStoreBackend.list_copies` for why they still hold); any name
  the scan did not see makes it list every key again.
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, ClassVar

from palhm_core.backend import Backend, CopyInfo, CopyWriter, PrefixExists, Sink
from palhm_core.errors import BackendError
from palhm_core.manifest import MANIFEST_NAME, SUMS_NAME

log = logging.getLogger("palhm")

#: The marker of a copy that is being written (or that a killed run left).
MARKER_NAME = ".palhm-partial"
MARKER_TEXT = (
    b"PALHM is writing this copy, or a run that did was interrupted: it is not complete "
    b"until palhm-manifest.json is present.\n"
)
#: The journal of a rotation under way, right in the root: the PREFIXes it deletes.
JOURNAL_NAME = ".palhm-rotation"
JOURNAL_HEAD = "# PALHM is deleting these copies; a run that finds this file finishes the job.\n"
#: Files of a copy that are PALHM's own, not backup objects.
OWN_FILES = frozenset({MANIFEST_NAME, SUMS_NAME, MARKER_NAME})


@dataclass(frozen=True)
class StoredKey:
    """One key as a listing gives it.

    :param key: relative to the backend's root (``PREFIX/PATH``).
    :param size: its size in bytes, as the store reports it.
    :param modified: when it was stored, if the listing says (timezone-aware).
    """

    key: str
    size: int
    modified: datetime | None = None


@dataclass
class _Prefix:
    """What one listing of the root found under one PREFIX."""

    keys: list[str] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)  # backup objects' sizes by PATH
    manifest: bool = False
    marker: bool = False
    finished: datetime | None = None  # when the manifest was stored


class ObjectCopy(CopyWriter):
    """A copy being made: ``PREFIX/`` holds the marker until :meth:`commit`
    has deleted it. Keeps the sinks of this copy and the sizes of the keys
    they stored, which sinks in several threads report under a lock."""

    def __init__(self, backend: ObjectStoreBackend, prefix: str):
        self.backend = backend
        self.prefix = prefix
        self.key_prefix = f"{prefix}/"
        self.done = False  # committed or rolled back
        self._lock = threading.Lock()
        self._sinks: list[Sink] = []  # as the backend's put() returned them
        self._stored: dict[str, int] = {}  # PATH -> size, once its sink closed

    def sink(self, path: str, alloc_size: int | None) -> Sink:
        key = f"{self.key_prefix}{path}"
        sink = self.backend.put(key, alloc_size, own=path in OWN_FILES)
        with self._lock:
            self._sinks.append(sink)
        return _Counted(sink, lambda size: self._closed(path, size))

    def _closed(self, path: str, size: int) -> None:
        with self._lock:
            self._stored[path] = size

    def commit(self) -> None:
        b = self.backend
        if MANIFEST_NAME not in self._stored:
            raise BackendError(
                f"{b.where(self.key_prefix)}: commit before the manifest was written"
            )
        b.finish_copy(self.prefix, {p: s for p, s in self._stored.items() if p not in OWN_FILES})
        # The marker's removal makes the copy complete: until then it lists
        # as incomplete, and a failure here leaves it to rollback.
        b.delete_keys([f"{self.key_prefix}{MARKER_NAME}"])
        self.done = True
        b._committed(self.prefix, dict(self._stored))

    def rollback(self) -> None:
        if self.done:
            return
        b = self.backend
        # From here on no sink of this copy starts a request.
        with self._lock:
            sinks = list(self._sinks)
        busy = sum(b.cancel_sink(sink) for sink in sinks)
        # No longer complete first, then the rest; the marker goes last so
        # that whatever a failure here leaves is removed by the next run.
        b.delete_keys([f"{self.key_prefix}{MANIFEST_NAME}"])
        if b.unfinished_name:
            b.discard_unfinished([self.prefix], sinks)
        keys = [k.key for k in b.list_keys(self.key_prefix)]
        if busy:
            # A stopped run left these requests behind, and one may still
            # land: with the marker kept, the next run removes what it adds.
            log.warning(
                "%s: %d writes were left under way; the marker stays, so that the next run "
                "removes what they may still store",
                b.where(self.key_prefix),
                busy,
            )
        b._delete_copy_keys(self.prefix, keys, keep_marker=bool(busy))
        self.done = True


class _Counted(Sink):
    """A backend's sink, counting the bytes it stored and telling the copy
    their number once it is closed."""

    def __init__(self, sink: Sink, closed: Callable[[int], None]):
        self.sink = sink
        self.size = 0
        self._closed = closed

    def write(self, data: memoryview) -> None:
        self.sink.write(data)
        self.size += len(data)

    def splice(self, fd: int, size: int) -> int | None:
        n = self.sink.splice(fd, size)
        self.size += n or 0
        return n

    def read_back(self, offset: int, buf: memoryview) -> int:
        return self.sink.read_back(offset, buf)

    def close(self) -> None:
        self.sink.close()
        self._closed(self.size)

    def abort(self) -> None:
        self.sink.abort()


class ObjectStoreBackend(Backend):
    """Base class of backends over a key-value store: implement :meth:`put`,
    :meth:`list_keys`, :meth:`delete_keys` and :meth:`open_key` (and
    :meth:`where` for messages); everything else of the backend contract is
    done here, in the layout described in this module's docstring.

    Every primitive raises :class:`palhm_core.BackendError` (one line: what,
    where, why) for a storage error. Class attributes a subclass may set:

    - ``delete_batch``: most keys one :meth:`delete_keys` call is given
      (S3's DeleteObjects takes 1,000). Default 1.
    - ``unfinished_name``: what the store calls the partial writes it keeps
      apart from keys (``"unfinished uploads"`` for S3's multipart uploads),
      when it keeps any: then :meth:`discard_unfinished` is called. Default
      ``None``.
    - ``parallel_reads`` (see :class:`~palhm_core.backend.Backend`): a store
      reached over a network usually wants more than 1.
    """

    reserved_names = frozenset({MARKER_NAME})
    delete_batch: ClassVar[int] = 1
    unfinished_name: ClassVar[str | None] = None

    def __init__(self, params, place) -> None:
        super().__init__(params, place)
        self._listed: dict[str, _Prefix] = {}  # what list_copies last found
        self._journal = False  # the last scan found a rotation's journal
        #: What the leftover scan left in the root (complete copies and
        #: PREFIXes not PALHM's) and the copies committed since; None when
        #: there was no scan in this session, or once list_copies used it.
        self._known: dict[str, _Prefix] | None = None

    # -- the primitives a store provides -------------------------------------------

    @abstractmethod
    def put(self, key: str, alloc_size: int | None, *, own: bool) -> Sink:
        """A sink that stores the bytes written into it at ``key``, whole
        once :meth:`Sink.close` returns. A store may show the key earlier, or
        in part (a file being written over SFTP): the marker keeps the copy
        incomplete until commit, and rollback and the next run's leftover
        cleaning delete whatever the key holds. ``own`` is true for PALHM's
        own small files (marker, journal, manifest, ``SHA256SUMS``), which a
        backend may store differently (a readable storage class). Called
        from several threads at once."""

    @abstractmethod
    def list_keys(self, prefix: str) -> Iterable[StoredKey]:
        """Every key under ``prefix`` (``""`` for the whole root, else
        ``PREFIX/``), at any depth, in any order; an iterator may fetch pages
        as it is consumed (the base sometimes stops after the first key).
        Nothing under ``prefix`` is an empty listing, not an error."""

    @abstractmethod
    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (at most :attr:`delete_batch` of them, in one
        request where the store can); keys already gone are not an error."""

    @abstractmethod
    def open_key(self, key: str) -> IO[bytes]:
        """``key`` opened for streamed reading, bounded in memory whatever its
        size; errors while reading are :class:`BackendError` too.

        :raises FileNotFoundError: no such key.
        """

    def where(self, key: str) -> str:
        """The address of ``key`` for messages (``s3://bucket/root/key``)."""
        return f"{self.describe()}/{key}"

    # -- optional hooks ------------------------------------------------------------

    def list_prefixes(self) -> Iterable[str] | None:
        """The first-level names under the root (each ``NAME`` for which a
        key ``NAME/...`` exists), in any order, listing none of the keys under
        them: S3's ListObjectsV2 with the delimiter ``/`` (its common
        prefixes). A backup run asks for them after its commit, where the
        keys of each copy are known already (see :meth:`list_copies`); an
        iterator may fetch pages as it is consumed. Default: None, the store
        cannot list names alone, and the base lists every key instead
        (:meth:`list_keys`)."""
        return None

    def cancel_sink(self, sink: Sink) -> bool:
        """The copy is being rolled back: make ``sink`` (one :meth:`put`
        returned) start no more requests. True if one is still under way and
        may yet store something: the copy's marker is then kept for the next
        run. Default: nothing to do, False."""
        return False

    def discard_unfinished(self, prefixes: Sequence[str], sinks: Sequence[Sink] = ()) -> list[str]:
        """Only with :attr:`unfinished_name`: discard the partial writes under
        the copies ``prefixes`` (S3: abort their multipart uploads), those of
        ``sinks`` first. Returns the keys they were for."""
        return []

    def finish_copy(self, prefix: str, stored: dict[str, int]) -> None:  # noqa: B027
        """Called by commit once every object and the manifest are stored,
        before the marker goes: ``stored`` is each backup object's size by
        PATH. S3 moves the objects to another storage class here. Default:
        nothing."""

    def tidy(self, prefixes: Sequence[str]) -> None:  # noqa: B027
        """Every key of the copies ``prefixes`` is gone (rotation, rollback,
        leftovers): a store with real directories (a filesystem, SFTP,
        WebDAV) removes what is left of the copies' directories here, and
        nothing else. Default: nothing."""

    # -- the backend contract, built on the primitives ---------------------------------

    def begin(self, prefix: str) -> ObjectCopy:
        key_prefix = f"{prefix}/"
        if next(iter(self.list_keys(key_prefix)), None) is not None:
            raise PrefixExists(f"{self.where(key_prefix)} exists")
        self._put_small(f"{key_prefix}{MARKER_NAME}", MARKER_TEXT)
        return ObjectCopy(self, prefix)

    def list_copies(self) -> list[CopyInfo]:
        """Every copy, from a listing of every key; or, the first time after
        the leftover scan of this session (a backup run's rotation, after its
        commit), from a listing of the names alone (:meth:`list_prefixes`),
        with the keys of each copy as the scan found them, or as the commit
        stored them for the copy just made. What is reused still holds:

        - the scan removed every copy with a marker, so each name it left is
          a complete copy or a PREFIX that PALHM did not make;
        - PALHM never changes a complete copy; only rotation and ``palhm
          backups prune`` delete one, manifest first, and both hold the
          task's lock, which this run holds. A copy deleted since (by hand,
          another host) is not listed; one that lost its manifest since is
          judged incomplete when its manifest is read (never counted or
          rotated). A key another writer adds to a complete copy meanwhile
          is not seen: a manifest rewritten to name it disagrees with the
          keys known, so the copy is judged damaged and kept whole;
          otherwise a rotation deletes the keys it knows, and what is left,
          with neither manifest nor marker, is never touched;
        - a PREFIX that PALHM did not make never becomes a copy of PALHM's:
          :meth:`begin` refuses a PREFIX that holds a key. It stays left alone;
        - a name the scan did not see (a copy another writer made meanwhile,
          an incomplete copy) is unknown: then every key is listed, and every
          copy is judged from that fresh listing."""
        known, self._known = self._known, None
        names = None if known is None else self.list_prefixes()
        if names is None:
            self._listed = self._scan()
        else:
            fresh = {n for n in names if n}
            if fresh <= known.keys():
                self._listed = {p: e for p, e in known.items() if p in fresh}
            else:
                log.debug("%s: copies unknown to the scan; listing every key", self.describe())
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
        ours = sorted(p for p, e in scan.items() if e.marker or e.manifest)
        unfinished: dict[str, list[str]] = {}
        if self.unfinished_name and ours:
            for key in self.discard_unfinished(ours):
                unfinished.setdefault(key.partition("/")[0], []).append(key)
        for prefix in ours:
            entry = scan[prefix]
            if not entry.marker:  # complete: only what unfinished writes left
                removed += [
                    f"{self.unfinished_name} of {self.where(k)}" for k in unfinished.get(prefix, ())
                ]
                continue
            self._delete_copy_keys(prefix, entry.keys)
            detail = f"{len(entry.keys)} objects"
            if self.unfinished_name:
                detail += f", {len(unfinished.get(prefix, ()))} {self.unfinished_name}"
            removed.append(f"incomplete copy {self.where(prefix + '/')} ({detail})")
            del scan[prefix]
        self._known = scan
        return removed

    def delete_copies(self, prefixes: list[str], deleted: Callable[[str], None]) -> None:
        """Delete the copies with one journal write, ceil(keys / batch)
        deletions and one deletion of the journal.
        The keys are those :meth:`list_copies` found: a complete copy does
        not change."""
        keys = {
            p: self._listed[p].keys
            if p in self._listed
            else [k.key for k in self.list_keys(f"{p}/")]
            for p in prefixes
        }
        text = JOURNAL_HEAD + "".join(f"{p}\t{len(keys[p])}\n" for p in prefixes)
        self._put_small(JOURNAL_NAME, text.encode())
        # Every manifest first. A store may delete one request's keys in any
        # order: a copy that loses objects but keeps its manifest when the
        # rotation is cut short has fewer keys than the journal says.
        manifests = [f"{p}/{MANIFEST_NAME}" for p in prefixes]
        first = set(manifests)
        batches = self._batches(
            manifests + [k for p in prefixes for k in keys[p] if k not in first]
        )
        position = {k: i for i, batch in enumerate(batches) for k in batch}
        gone_after: dict[int, list[str]] = {}
        for p, m in zip(prefixes, manifests, strict=True):
            last = max(position[k] for k in [m, *keys[p]])
            gone_after.setdefault(last, []).append(p)
        for i, batch in enumerate(batches):
            self.delete_keys(batch)
            for p in gone_after.get(i, ()):
                deleted(p)
        self.tidy(prefixes)
        self.delete_keys([JOURNAL_NAME])
        for p in prefixes:
            self._listed.pop(p, None)

    def open_object(self, prefix: str, path: str) -> IO[bytes]:
        return self.open_key(f"{prefix}/{path}")

    # -- helpers -------------------------------------------------------------------

    def _committed(self, prefix: str, stored: dict[str, int]) -> None:
        """The copy ``prefix`` is complete, holding ``stored`` (size by
        PATH, PALHM's own files included): known to the next
        :meth:`list_copies` as a listing would show it."""
        if self._known is None:
            return
        self._known[prefix] = _Prefix(
            keys=[f"{prefix}/{path}" for path in stored],
            files={p: n for p, n in stored.items() if p not in OWN_FILES},
            manifest=True,
        )

    def _batches(self, keys: list[str]) -> list[list[str]]:
        n = max(1, self.delete_batch)
        return [keys[i : i + n] for i in range(0, len(keys), n)]

    def _put_small(self, key: str, data: bytes) -> None:
        """Store a small file of PALHM's own (the marker, the journal)."""
        sink = self.put(key, len(data), own=True)
        try:
            sink.write(memoryview(data))
            sink.close()
        except BaseException:
            sink.abort()
            raise

    def _scan(self) -> dict[str, _Prefix]:
        """Every first-level PREFIX under the root with what it holds; keys
        right in the root are not PALHM's and are left out, but for the
        rotation's journal, whose presence is noted in ``self._journal``."""
        found: dict[str, _Prefix] = {}
        self._journal = False
        for item in self.list_keys(""):
            prefix, sep, path = item.key.partition("/")
            if not sep or not prefix:
                self._journal = self._journal or item.key == JOURNAL_NAME
                continue
            entry = found.setdefault(prefix, _Prefix())
            entry.keys.append(item.key)
            if path == MANIFEST_NAME:
                entry.manifest = True
                entry.finished = item.modified
            elif path == MARKER_NAME:
                entry.marker = True
            elif path != SUMS_NAME:
                entry.files[path] = item.size
        return found

    def _finish_rotation(self, scan: dict[str, _Prefix]) -> list[str]:
        """Remove what a rotation cut short left of the copies its journal
        names (``PREFIX<TAB>KEYS`` lines): those that lost their manifest or
        any key. Then the journal. A journal listed but gone (a listing
        that lags behind a deletion) is nothing to finish."""
        try:
            with self.open_key(JOURNAL_NAME) as f:
                text = f.read(1 << 24)
        except FileNotFoundError:
            return []
        removed = []
        for line in text.decode(errors="replace").splitlines():
            prefix, tab, count = line.rpartition("\t")
            if not tab:  # a journal without counts
                prefix, count = line, ""
            entry = scan.get(prefix)
            if line.startswith("#") or entry is None:
                continue
            if entry.manifest and not (count.isdigit() and len(entry.keys) < int(count)):
                continue
            self._delete_copy_keys(prefix, entry.keys)
            del scan[prefix]
            removed.append(
                f"what rotation left of {self.where(prefix + '/')} ({len(entry.keys)} objects)"
            )
        self.delete_keys([JOURNAL_NAME])
        return removed

    def _delete_copy_keys(self, prefix: str, keys: list[str], keep_marker: bool = False) -> None:
        """Delete a copy's ``keys``, the manifest first and the marker last
        (unless ``keep_marker``)."""
        manifest = f"{prefix}/{MANIFEST_NAME}"
        marker = f"{prefix}/{MARKER_NAME}"
        rest = [k for k in keys if k not in (manifest, marker)]
        if manifest in keys:
            self.delete_keys([manifest])
        for batch in self._batches(rest):
            self.delete_keys(batch)
        if not keep_marker:
            self.delete_keys([marker])
            self.tidy([prefix])
