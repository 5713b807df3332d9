"""The backend conformance suite: what every PALHM backend must pass.

A backend's author runs it with pytest (which this module needs) against real
storage: subclass :class:`BackendConformance` in a test module and give it a
``storage`` fixture that says how to build the backend::

    import pytest
    from palhm_core.testing import BackendConformance, Storage
    from palhm_mystore import MyStoreBackend


    class TestMyStore(BackendConformance):
        @pytest.fixture
        def storage(self, tmp_path):
            params = {"dir": str(tmp_path / "copies")}
            return Storage(lambda: MyStoreBackend(params, Storage.place()))

Every test of the class then runs against that storage: the copy lifecycle
(begin, sinks, commit; sizes as the bytes of the objects), rollback at every
step, leftovers of a process killed with SIGKILL mid-copy, rotation by count
and by size through the core's own rotation, streamed reads (verify and cat),
unrelated data left untouched (when the fixture can plant some), hostile
object paths and PREFIXes, sinks written from several threads at once, and
:class:`~palhm_core.backend.PrefixExists`. A backend that declares
``stores_nothing`` runs only the tests that apply to it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from palhm_core.backend import Backend, CopyInfo, CopyWriter, PrefixExists
from palhm_core.config.place import Place
from palhm_core.copies import judge_copies
from palhm_core.manifest import (
    MANIFEST_NAME,
    SUMS_NAME,
    make_manifest,
    manifest_bytes,
    sums_bytes,
)
from palhm_core.rotation import decide

__all__ = ["BackendConformance", "Storage"]

#: The task id the suite's copies carry in their manifests.
TASK = "conformance"
#: Bytes of the object the streamed-read test writes (several read chunks).
BIG = 3 << 20
#: Seconds a child process may take to reach the middle of its copy.
CHILD_DEADLINE = 60.0

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass
class Storage:
    """How the suite reaches the storage under test.

    :param make: builds a new, unopened backend over the storage; called
        several times (a second instance must see what the first stored), and
        in a child process the suite kills.
    :param plant: optional: stores data PALHM did not make where the backend
        keeps its copies (a file in ROOT, a key beside the copies) and returns
        a function that asserts it is still there, unchanged. Without it the
        "unrelated data" test is skipped.
    """

    make: Callable[[], Backend]
    plant: Callable[[], Callable[[], None]] | None = None
    opened: list[Backend] = field(default_factory=list)

    @staticmethod
    def place() -> Place:
        """A config place for the backend's constructor."""
        return Place("conformance", ("backend-param",))

    def open(self) -> Backend:
        backend = self.make()
        backend.open()
        self.opened.append(backend)
        return backend

    def close(self) -> None:
        while self.opened:
            self.opened.pop().close()


def prefix_at(n: int) -> str:
    """PREFIXes that sort in the order of ``n``, as the core's own do."""
    return (T0 + timedelta(hours=n)).isoformat()


def write_object(copy: CopyWriter, path: str, data: bytes, chunk: int = 1 << 16) -> None:
    sink = copy.sink(path, None)
    try:
        view = memoryview(data)
        for start in range(0, len(data), chunk):
            sink.write(view[start : start + chunk])
        sink.close()
    except BaseException:
        sink.abort()
        raise


def write_manifest(copy: CopyWriter, prefix: str, objects: dict[str, bytes]) -> None:
    """SHA256SUMS and the manifest, as the core writes them last."""
    import hashlib

    entries = [
        {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for p, d in objects.items()
    ]
    stamp = datetime.now(timezone.utc).isoformat()
    manifest = make_manifest(
        task=TASK, prefix=prefix, version="0", started=stamp, finished=stamp, objects=entries
    )
    write_object(copy, SUMS_NAME, sums_bytes(entries))
    write_object(copy, MANIFEST_NAME, manifest_bytes(manifest))


def make_copy(backend: Backend, prefix: str, objects: dict[str, bytes]) -> None:
    """One complete copy holding ``objects``."""
    with backend.begin(prefix) as copy:
        for path, data in objects.items():
            write_object(copy, path, data)
        write_manifest(copy, prefix, objects)
        copy.commit()


def listed(backend: Backend) -> dict[str, CopyInfo]:
    return {c.prefix: c for c in backend.list_copies()}


def read_all(backend: Backend, prefix: str, path: str) -> bytes:
    with backend.open_object(prefix, path) as f:
        chunks = []
        while chunk := f.read(1 << 16):
            assert len(chunk) <= 1 << 16
            chunks.append(chunk)
    return b"".join(chunks)


def _kill_target(make: Callable[[], Backend], prefix: str, step: str, ready) -> None:
    """In the child: start a copy, store part of an object (or, ``step``
    "after the manifest", all of it and the manifest, but not commit), say
    so, wait to be killed."""
    backend = make()
    backend.open()
    copy = backend.begin(prefix)
    write_object(copy, "done", b"finished object\n")
    if step == "after the manifest":
        write_manifest(copy, prefix, {"done": b"finished object\n"})
    else:
        sink = copy.sink("half", None)
        sink.write(memoryview(os.urandom(1 << 20)))
    ready.send(True)
    threading.Event().wait(CHILD_DEADLINE)


class BackendConformance:
    """The conformance tests; subclass with a ``storage`` fixture returning a
    :class:`Storage`."""

    @pytest.fixture
    def storage(self) -> Storage:
        raise NotImplementedError("give the subclass a `storage` fixture returning a Storage")

    @pytest.fixture
    def backend(self, storage: Storage):
        """The backend, opened, with no leftovers; closed after the test."""
        backend = storage.open()
        backend.clean_leftovers()
        yield backend
        storage.close()

    @pytest.fixture
    def keeping(self, backend: Backend) -> Backend:
        """The backend, for the tests of a backend that keeps copies."""
        if backend.stores_nothing:
            pytest.skip(f"the {backend.name} backend declares stores_nothing: it keeps no copies")
        return backend

    # -- the class itself ----------------------------------------------------------

    def test_the_class_implements_the_contract(self, storage: Storage):
        import inspect

        cls = type(storage.make())
        assert not inspect.isabstract(cls), sorted(getattr(cls, "__abstractmethods__", ()))
        assert isinstance(cls.name, str) and cls.name
        assert isinstance(cls.reserved_names, frozenset)
        assert cls.parallel_reads >= 1

    def test_a_backend_that_stores_nothing_lists_nothing(self, backend: Backend):
        if not backend.stores_nothing:
            pytest.skip(f"the {backend.name} backend keeps copies")
        make_copy(backend, prefix_at(0), {"a": b"data\n"})
        assert backend.list_copies() == []

    # -- the lifecycle ---------------------------------------------------------------

    def test_a_committed_copy_is_complete_and_its_size_is_its_objects(
        self, keeping: Backend, storage: Storage
    ):
        objects = {"a": b"alpha\n", "dir/b": os.urandom(70_000), "empty": b""}
        prefix = prefix_at(0)
        make_copy(keeping, prefix, objects)
        for backend in (keeping, storage.open()):  # a second instance sees it too
            (copy,) = backend.list_copies()
            assert (copy.prefix, copy.complete) == (prefix, True)
            assert copy.files == {p: len(d) for p, d in objects.items()}
            assert copy.size == sum(len(d) for d in objects.values())
            assert copy.objects == len(objects)
            (judged,) = judge_copies(backend, TASK)
            assert judged.state == "complete", judged.why
            for path, data in objects.items():
                assert read_all(backend, prefix, path) == data

    def test_a_copy_is_not_complete_before_its_commit_returns(
        self, keeping: Backend, storage: Storage
    ):
        prefix = prefix_at(0)
        with keeping.begin(prefix) as copy:
            write_object(copy, "a", b"alpha\n")
            write_manifest(copy, prefix, {"a": b"alpha\n"})
            for backend in (keeping, storage.open()):
                assert not any(c.complete for c in backend.list_copies())
                assert [c.state for c in judge_copies(backend, TASK)] in ([], ["incomplete"])
            copy.commit()
        assert listed(keeping)[prefix].complete

    def test_an_existing_prefix_is_refused(self, keeping: Backend):
        prefix = prefix_at(0)
        make_copy(keeping, prefix, {"a": b"1"})
        with pytest.raises(PrefixExists):
            keeping.begin(prefix)
        assert listed(keeping)[prefix].complete

    # -- rollback ------------------------------------------------------------------------

    @pytest.mark.parametrize("step", ["after begin", "mid-sink", "after the manifest"])
    def test_rollback_removes_everything_of_the_copy(self, keeping: Backend, step: str):
        kept = prefix_at(0)
        make_copy(keeping, kept, {"old": b"old\n"})
        prefix = prefix_at(1)
        with keeping.begin(prefix) as copy:
            if step == "mid-sink":
                write_object(copy, "done", b"done\n")
                sink = copy.sink("half", None)
                sink.write(memoryview(b"x" * 100_000))
                sink.abort()
            elif step == "after the manifest":
                write_object(copy, "a", b"alpha\n")
                write_manifest(copy, prefix, {"a": b"alpha\n"})
            copy.rollback()
            copy.rollback()  # twice: nothing left to remove is not an error
        assert list(listed(keeping)) == [kept]
        make_copy(keeping, prefix, {"again": b"again\n"})  # the PREFIX is free again
        assert listed(keeping)[prefix].complete

    def test_leaving_the_with_block_without_commit_rolls_back(self, keeping: Backend):
        prefix = prefix_at(0)
        with pytest.raises(RuntimeError), keeping.begin(prefix) as copy:
            write_object(copy, "a", b"alpha\n")
            raise RuntimeError("a pipeline failed")
        assert listed(keeping) == {}

    def test_rollback_after_a_commit_keeps_the_copy(self, keeping: Backend):
        prefix = prefix_at(0)
        with keeping.begin(prefix) as copy:
            write_object(copy, "a", b"alpha\n")
            write_manifest(copy, prefix, {"a": b"alpha\n"})
            copy.commit()
            copy.rollback()
        assert listed(keeping)[prefix].complete

    @pytest.mark.parametrize("step", ["mid-object", "after the manifest"])
    def test_a_copy_killed_mid_write_is_removed_by_the_next_run(
        self, keeping: Backend, storage: Storage, step: str
    ):
        kept = prefix_at(0)
        make_copy(keeping, kept, {"old": b"old\n"})
        prefix = prefix_at(1)
        fork = multiprocessing.get_context("fork")
        receive, send = fork.Pipe(duplex=False)
        child = fork.Process(target=_kill_target, args=(storage.make, prefix, step, send))
        child.start()
        try:
            assert receive.poll(CHILD_DEADLINE), "the child never reached the middle of its copy"
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.join(CHILD_DEADLINE)
        assert child.exitcode == -signal.SIGKILL
        after = storage.open()
        assert not listed(after).get(prefix, CopyInfo(prefix, False, 0)).complete
        assert after.clean_leftovers()
        assert list(listed(after)) == [kept]
        assert after.clean_leftovers() == []
        assert read_all(after, kept, "old") == b"old\n"

    # -- rotation -------------------------------------------------------------------------

    @pytest.mark.parametrize("limit", ["nb-copy-limit", "root-size-limit"])
    def test_rotation_deletes_the_oldest_copies(self, keeping: Backend, limit: str):
        for n in range(4):
            make_copy(keeping, prefix_at(n), {"obj": bytes(1000), "more": bytes(n)})
        newest = prefix_at(3)
        limits = {"nb_copy_limit": None, "root_size_limit": None}
        limits["nb_copy_limit" if limit == "nb-copy-limit" else "root_size_limit"] = (
            2 if limit == "nb-copy-limit" else 1002 + 1003
        )
        rotation = decide(judge_copies(keeping, TASK), keep=newest, **limits)
        doomed = [c.prefix for c in rotation.deleted]
        assert doomed == [prefix_at(0), prefix_at(1)]
        told = []
        keeping.delete_copies(doomed, told.append)
        assert told == doomed
        assert sorted(listed(keeping)) == [prefix_at(2), prefix_at(3)]
        assert read_all(keeping, prefix_at(2), "more") == bytes(2)

    # -- reading -------------------------------------------------------------------------

    def test_objects_are_streamed_back_and_a_missing_one_is_file_not_found(self, keeping: Backend):
        data = os.urandom(BIG)
        prefix = prefix_at(0)
        make_copy(keeping, prefix, {"big": data})
        assert read_all(keeping, prefix, "big") == data
        with pytest.raises(FileNotFoundError):
            keeping.open_object(prefix, "absent")

    def test_verify_passes_on_a_copy_and_cat_gives_its_bytes(self, keeping: Backend):
        from palhm_core.verify import stream, verify_copy

        objects = {"a": os.urandom(300_000), "sub/b": b"bee\n"}
        prefix = prefix_at(0)
        make_copy(keeping, prefix, objects)
        (judged,) = judge_copies(keeping, TASK)
        assert verify_copy(keeping, judged) == (2, [])
        out: list[bytes] = []
        assert stream(keeping, prefix, "a", out.append)[0] == len(objects["a"])
        assert b"".join(out) == objects["a"]

    def test_parallel_reads_work_from_several_threads(self, keeping: Backend):
        from concurrent.futures import ThreadPoolExecutor

        objects = {f"o{i}": os.urandom(50_000) for i in range(8)}
        prefix = prefix_at(0)
        make_copy(keeping, prefix, objects)
        with ThreadPoolExecutor(max(2, keeping.parallel_reads)) as pool:
            got = dict(pool.map(lambda p: (p, read_all(keeping, prefix, p)), objects))
        assert got == objects

    # -- what the backend must leave alone, and hostile names ------------------------------

    def test_unrelated_data_is_left_untouched(self, keeping: Backend, storage: Storage):
        if storage.plant is None:
            pytest.skip("the storage fixture cannot plant unrelated data (Storage.plant)")
        intact = storage.plant()
        keeping.clean_leftovers()
        for n in range(3):
            make_copy(keeping, prefix_at(n), {"a": bytes(n)})
        rotation = decide(
            judge_copies(keeping, TASK), keep=prefix_at(2), nb_copy_limit=1, root_size_limit=None
        )
        keeping.delete_copies([c.prefix for c in rotation.deleted], lambda p: None)
        with keeping.begin(prefix_at(3)) as copy:
            write_object(copy, "a", b"rolled back")
        keeping.clean_leftovers()
        intact()

    def test_hostile_paths_and_prefixes_are_stored_as_given(self, keeping: Backend):
        objects = {
            "with spaces/and more spaces": b"1",
            "ünïcødé/日本語": b"2",
            "-leading-dash": b"3",
            "--": b"4",
            "a" * 200: b"5",
            "d/" * 20 + "deep": b"6",
            "quote'\"$(x)`;|&": b"7",
        }
        prefix = "-2026 01 01 ünï"
        make_copy(keeping, prefix, objects)
        (copy,) = keeping.list_copies()
        assert (copy.prefix, copy.complete) == (prefix, True)
        assert copy.files == {p: len(d) for p, d in objects.items()}
        for path, data in objects.items():
            assert read_all(keeping, prefix, path) == data

    def test_sinks_are_written_from_several_threads_at_once(self, keeping: Backend):
        nb = 8
        start = threading.Barrier(nb)
        objects = {f"shared/dir/o{i}": os.urandom(200_000 + i) for i in range(nb)}
        prefix = prefix_at(0)
        errors: list[BaseException] = []
        with keeping.begin(prefix) as copy:

            def build(path: str) -> None:
                try:
                    start.wait(CHILD_DEADLINE)
                    write_object(copy, path, objects[path], chunk=4096)
                except BaseException as e:  # reported below, in the test's thread
                    errors.append(e)

            threads = [threading.Thread(target=build, args=(p,)) for p in objects]
            for t in threads:
                t.start()
            for t in threads:
                t.join(CHILD_DEADLINE)
            assert not errors, errors
            write_manifest(copy, prefix, objects)
            copy.commit()
        (judged,) = judge_copies(keeping, TASK)
        assert judged.state == "complete", judged.why
        for path, data in objects.items():
            assert read_all(keeping, prefix, path) == data
