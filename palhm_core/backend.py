"""The storage backend contract.

A backend stores *copies*: ``ROOT/PREFIX/PATH`` for every object of one run of a
backup task. The core drives it so::

    backend.open()
    backend.clean_leftovers()              # what crashed runs left behind
    with backend.begin(prefix) as copy:    # raises PrefixExists if already there
        sink = copy.sink(path, alloc)      # one per object, and for the manifest
        ...                                # the core writes bytes, then sink.close()
        copy.commit()                      # the copy becomes complete in one step
    # leaving the with block without commit() calls copy.rollback()
    backend.list_copies(); backend.delete_copies(prefixes, deleted)   # rotation
    backend.close()

:meth:`Backend.begin` returns a :class:`CopyWriter`, which holds everything of
the copy being made: the backend object itself keeps no state of a copy.

Policy lives in the core, written once for every backend: the manifest and
SHA256SUMS files, hashing, scheduling and rotation. A backend only moves bytes
and lists what it holds, with the sizes its storage reports. A copy is
*complete* exactly when its manifest (:data:`palhm_core.manifest.MANIFEST_NAME`)
is present and :meth:`CopyWriter.commit` has returned: a backend that keeps a
marker of copies being made (S3's ``.palhm-partial``) lists a copy holding the
marker as incomplete even once its manifest is stored. A backend must make the
manifest visible last and never list a copy that is still being written as
complete. The core reads the manifests and decides which copies are the task's
own (see :class:`CopyInfo`): a backend deletes only the copies the core names.
Anything in the backend's root that PALHM did not make must be left alone.

The *size* of a copy is always the bytes of its objects as the storage reports
them: PALHM's own files (the manifest, ``SHA256SUMS``) and a backend's markers
are not counted. Rotation's ``root-size-limit`` compares the sum of these.

Threads: :meth:`CopyWriter.sink` is called from several threads at once (one
per object built in parallel), and each :class:`Sink` from one thread at a time
(see :meth:`Sink.read_back` for the one exception). :meth:`Backend.open_object`
and :meth:`Backend.list_copies` may run while other reads go on, from
:attr:`Backend.parallel_reads` threads. The other methods are called from one
thread at a time.

The required methods are abstract: a backend class missing one is refused when
the plugins load. Every storage error is raised as
:class:`palhm_core.BackendError` (one line for the administrator); a full
storage may be :class:`StorageFull`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, ClassVar

from palhm_core.errors import BackendError


class PrefixExists(BackendError):
    """:meth:`Backend.begin` was given a PREFIX the backend already holds."""


class StorageFull(BackendError):
    """The storage has no room left for the copy being made (a full disk, a
    quota). Raised by a sink or a commit; the core reports it like any other
    :class:`palhm_core.BackendError`."""


@dataclass(frozen=True)
class CopyInfo:
    """One copy as listed by a backend, then judged by the core.

    A backend fills in what its storage holds; it reads no manifest and
    trusts none. The core then reads each complete copy's manifest and sets
    ``state``, ``why``, ``manifest`` and ``future``.

    :param prefix: the copy's PREFIX.
    :param complete: its manifest is present and nothing marks it as still
        being written (its commit returned).
    :param size: the copy's size: the bytes the storage reports for its
        objects, the sum of ``files`` (the manifest, ``SHA256SUMS`` and the
        backend's markers are not counted). ``0`` when ``files`` is ``None``.
    :param objects: number of objects stored (``len(files)``), ``None`` when
        unknown.
    :param files: the size the storage reports for each object, by PATH
        (``/``-separated, relative to the copy; ``palhm-manifest.json``,
        ``SHA256SUMS`` and the backend's own marker files left out). Measured
        by the backend (``stat``, a listing), never read from the manifest.
        ``None`` when the backend cannot tell: such a complete copy is
        ``damaged``, so rotation never deletes it.
    :param finished: when the manifest was stored, if the backend knows it
        without reading the manifest (an S3 listing gives each key's time);
        ``palhm backups list`` shows the age from the manifest's own
        ``finished``, or from this.
    :param state: set by the core: ``complete`` (this task's, its manifest
        agrees with the storage), ``incomplete`` (no manifest: a copy being
        made or left by a crash), ``foreign`` (the manifest names another
        task, or another host) or ``damaged`` (the manifest is unreadable,
        malformed, or claims objects or sizes the storage does not hold).
        Only ``complete`` copies are counted, rotated, verified and
        ``latest``; ``foreign`` and ``damaged`` ones are never deleted.
    :param why: for ``foreign`` and ``damaged``: what the core found.
    :param manifest: the parsed manifest, set by the core for a
        ``complete`` copy and for a ``damaged`` one whose manifest is well
        formed and this task's (the storage disagrees with it).
    :param future: set by the core: the manifest says the copy finished
        later than now (beyond a tolerance of a few minutes) - the clock was
        wrong when it was made, or is wrong now. Such a copy is neither
        counted, rotated nor ``latest``.
    """

    prefix: str
    complete: bool
    size: int
    objects: int | None = None
    files: dict[str, int] | None = None
    finished: datetime | None = None
    state: str = ""
    why: str = ""
    manifest: dict[str, Any] | None = None
    future: bool = False


class Sink(ABC):
    """Where one object's bytes go.

    Only PALHM writes into a sink. The last process of a pipeline writes into
    a pipe, exactly as in a shell pipeline, and is never given the sink as its
    stdout: programs behave differently when their stdout is a regular file
    (``pg_dump -Fc`` seeks back to rewrite its header, ``echo ... >
    /dev/stdout`` truncates it, a background child can write after the copy
    was committed). The core moves the bytes from the pipe into the sink, in
    order, and hashes exactly what the sink stored.

    The core calls :meth:`write` with the pipeline's output in order (or, if
    the sink offers it, :meth:`splice` and :meth:`read_back`), then
    :meth:`close` on success or :meth:`abort` on failure (after which
    :meth:`CopyWriter.rollback` follows). A sink needs only :meth:`write`; a
    sink on a local file can let the kernel move the bytes with :meth:`splice`
    instead. One sink is used by one thread at a time, but the sinks of one
    copy are used by several threads at once.
    """

    @abstractmethod
    def write(self, data: memoryview) -> None:
        """Store the next bytes of the object. ``data`` is only valid during the
        call: copy it if it must be kept. Raise
        :class:`palhm_core.BackendError` for a storage error."""

    def splice(self, fd: int, size: int) -> int | None:
        """Optional fast path: move up to ``size`` bytes from the pipe ``fd``
        into storage without passing them through Python (``os.splice`` into
        a file), after the bytes stored so far.

        :returns: how many bytes were stored, ``0`` at the end of the pipe's
            data; ``None`` (the default) when this sink cannot take bytes from
            a pipe, before anything was moved: the core then reads the pipe
            itself and calls :meth:`write` for the rest of the object.

        The core hashes the bytes :meth:`splice` stored by reading them back
        with :meth:`read_back`, so a sink that splices must implement both.
        Raise :class:`palhm_core.BackendError` for a storage error.
        """
        return None

    def read_back(self, offset: int, buf: memoryview) -> int:
        """Read stored bytes from ``offset`` (from the object's start) into
        ``buf``; return how many (fewer only past the end of what was
        stored). Called only for bytes :meth:`splice` stored, in order, soon
        after it stored them, so they are normally still in the page cache:
        between two splices, or from one helper thread while :meth:`splice`
        goes on storing later bytes in the pipeline's thread (a sink must
        allow that). A sink may use the call as the hint that the core is
        done with the bytes before ``offset`` (to start writing them back to
        disk)."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional, nothing to do by default
        """All bytes are written: make them durable (``fsync`` a file), or raise
        :class:`palhm_core.BackendError`."""

    def abort(self) -> None:  # noqa: B027 - optional, nothing to do by default
        """The object failed: release resources, without raising; the copy's
        rollback removes the rest."""


class CopyWriter(ABC):
    """One copy being made, from :meth:`Backend.begin` to :meth:`commit` or
    :meth:`rollback`: it holds every piece of state of that copy (staging
    names, uploads under way), so the backend object holds none.

    Used as a context manager, leaving the ``with`` block calls
    :meth:`rollback`, which does nothing once :meth:`commit` has returned::

        with backend.begin(prefix) as copy:
            ...
            copy.commit()

    :meth:`sink` is called from several threads at once; :meth:`commit` and
    :meth:`rollback` from one thread, once every sink is closed or aborted.
    """

    def __enter__(self) -> CopyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.rollback()

    @abstractmethod
    def sink(self, path: str, alloc_size: int | None) -> Sink:
        """Open the sink for object ``path`` of this copy. ``path`` is
        relative, ``/``-separated and already checked by the core: no empty,
        ``.`` or ``..`` component, none of the backend's
        :attr:`Backend.reserved_names` first. ``alloc_size`` is the configured
        size hint in bytes, or ``None``. Called from several threads at once:
        guard shared state (a directory being created, a list of uploads)
        with a lock."""

    @abstractmethod
    def commit(self) -> None:
        """Every object and the manifest are written and their sinks closed:
        make the copy complete in one step (a rename, the removal of a
        marker). After this returns the copy must survive a power cut; until
        it has returned, :meth:`Backend.list_copies` must not show the copy
        complete. On failure raise :class:`palhm_core.BackendError`; the core
        then calls :meth:`rollback`."""

    @abstractmethod
    def rollback(self) -> None:
        """Remove everything of this copy. Must work at any point after
        :meth:`Backend.begin`, including after a :meth:`commit` that failed
        part-way, must not raise for things already gone, and must do nothing
        after a :meth:`commit` that returned (the copy stays). What it cannot
        remove is left for :meth:`Backend.clean_leftovers`."""


class Backend(ABC):
    """Base class of backends. Subclasses set ``name``, ``description`` and
    ``schema`` (see :func:`palhm_core.hookspecs.palhm_backends`) and implement
    every abstract method; a class missing one is refused when the plugins
    load. Optional class attributes the core reads:

    - ``parallel_reads``: how many manifests the core reads at once with
      :meth:`open_object` when it judges the copies (default 1; more for a
      backend whose every read is a round trip to a server: aws-s3 sets 8).
    - ``stores_nothing``: the backend keeps no copies (it discards the
      bytes); ``palhm run --dry-run`` writes into such a backend, and
      ``palhm backups`` has nothing to show for it. Default false.
    - ``reserved_names``: object paths the backend keeps for itself (a
      marker inside each copy); the core refuses an object whose path starts
      with one. Default none.

    ``block_size`` (an instance attribute, default 1 MiB) is how many bytes the
    core moves into a sink at a time; a backend may set it from a parameter.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    schema: ClassVar[dict[str, Any]] = {"properties": {}}
    parallel_reads: ClassVar[int] = 1
    stores_nothing: ClassVar[bool] = False
    reserved_names: ClassVar[frozenset[str]] = frozenset()
    block_size: int = 1 << 20

    def __init__(self, params: dict[str, Any], place) -> None:
        """Check ``params`` (the task's ``backend-param``, already valid
        against ``schema``) without touching the storage; raise
        ``(place / key).error("problem")`` for a bad value."""
        self.params = params

    def describe(self) -> str:
        """Where this backend stores copies, for messages (``/srv/backup``,
        ``s3://bucket/root``)."""
        return self.name

    def location(self) -> tuple[str, ...] | None:
        """Where this backend keeps copies, as names from the most general
        down (``("localfs", "srv", "backup")``, ``("aws-s3", ENDPOINT,
        BUCKET, "palhm", "db")``), computed from the parameters alone.
        ``palhm config check`` refuses two tasks of one config whose locations
        are equal or one inside the other: they would hold each other's
        copies. ``None`` (the default) when it cannot be told; not checked."""
        return None

    def open(self) -> None:  # noqa: B027 - optional, nothing to do by default
        """Connect and check that the root is usable. Import heavy libraries
        here, not at module import."""

    def close(self) -> None:  # noqa: B027 - optional, nothing to do by default
        """Release connections. Called after every :meth:`open`."""

    @abstractmethod
    def list_copies(self) -> list[CopyInfo]:
        """Every copy under the root, complete or not, in any order, with the
        sizes the storage reports (see :class:`CopyInfo`). Leftovers of
        crashed runs that :meth:`clean_leftovers` removes are not copies and
        are not listed. May be called while a copy is being made and from
        another thread than the one that opened the backend."""

    @abstractmethod
    def clean_leftovers(self) -> list[str]:
        """Remove what runs that crashed or were killed left behind (staging
        directories, partial objects, unfinished multipart uploads) and that
        no running PALHM still uses. Never touch a complete copy, nor anything
        PALHM did not make.

        :returns: a description of each thing removed, for the log.
        """

    @abstractmethod
    def begin(self, prefix: str) -> CopyWriter:
        """Start a new copy named ``prefix`` and return its writer. Nothing
        of it is complete until :meth:`CopyWriter.commit` returns.

        :raises PrefixExists: the backend already holds something named so.
        """

    @abstractmethod
    def delete_copies(self, prefixes: list[str], deleted: Callable[[str], None]) -> None:
        """Delete the complete copies ``prefixes`` (rotation, oldest first),
        calling ``deleted(prefix)`` as each one is gone. A backend whose
        storage deletes many things per request (S3's DeleteObjects) batches
        across copies.

        Every copy must stop being complete before anything else of it goes
        (rename it to a staging name, delete its manifest first), and a
        deletion cut short (a crash, a lost connection) must leave nothing
        that :meth:`list_copies` shows as complete with objects missing: what
        remains is for :meth:`clean_leftovers` to remove.
        """

    @abstractmethod
    def open_object(self, prefix: str, path: str) -> IO[bytes]:
        """Open ``ROOT/prefix/path`` for streamed reading (verify, cat and the
        manifest). Reads must be bounded in memory whatever the object's
        size. With :attr:`parallel_reads` above 1, it is called from that
        many threads at once.

        :raises FileNotFoundError: no such object.
        """
