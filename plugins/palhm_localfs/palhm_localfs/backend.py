"""The localfs backend class.

ROOT is opened once (:func:`palhm_localfs.rootdir.open_root`) and every step
after that works through its descriptor (``mkdir``, ``open``, ``rename``,
``unlink`` relative to it, ``O_NOFOLLOW`` inside copies): a path is never
resolved again, so a directory swapped for a symlink mid-run changes nothing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading

from palhm_core.api import (
    MANIFEST_NAME,
    SUMS_NAME,
    Backend,
    BackendError,
    CopyInfo,
    CopyWriter,
    PrefixExists,
    Sink,
    StorageFull,
)
from palhm_localfs.modes import parse_mode
from palhm_localfs.rootdir import open_root

STAGING = ".palhm-partial."
DEFAULT_BLOCK_SIZE = 1 << 20
#: A :class:`FileSink` hands its new pages to writeback every this many bytes.
WRITEBACK_STEP = 8 << 20
#: ``os.splice`` errors meaning this file cannot take bytes from a pipe.
_NO_SPLICE = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


def _fail(what: str, path: str, e: OSError) -> BackendError:
    error = StorageFull if e.errno in (errno.ENOSPC, errno.EDQUOT) else BackendError
    return error(f"{what} {path}: {e.strerror or e}")


class FileSink(Sink):
    """A new file in the staging directory.

    PALHM's bytes arrive through :meth:`splice` (``os.splice``: the kernel
    moves them from the pipeline's pipe into the file) or, on a filesystem
    that cannot splice, through :meth:`write`. Every :data:`WRITEBACK_STEP`
    bytes, the file's new pages are handed to writeback and the older ones,
    clean by then, dropped from the page cache: the final fsync has little
    left to do, and a backup does not push the server's own data out of
    memory. A preallocated file (``alloc-size``) is trimmed to what was
    written.
    """

    def __init__(self, fd: int, path: str, preallocated: bool):
        self.fd = fd
        self.path = path
        self.preallocated = preallocated
        self.written = 0
        self._advised = self._behind = 0

    def splice(self, fd: int, size: int) -> int | None:
        try:
            n = os.splice(fd, self.fd, size)
        except OSError as e:
            if self.written == 0 and e.errno in _NO_SPLICE:
                return None
            raise _fail("cannot write", self.path, e) from None
        self.written += n
        return n

    def read_back(self, offset: int, buf: memoryview) -> int:
        try:
            n = os.preadv(self.fd, [buf], offset)
        except OSError as e:
            raise _fail("cannot read back", self.path, e) from None
        self._done_up_to(offset + n)
        return n

    def write(self, data: memoryview) -> None:
        while data:
            try:
                n = os.write(self.fd, data)
            except OSError as e:
                raise _fail("cannot write", self.path, e) from None
            data = data[n:]
            self.written += n
        self._done_up_to(self.written)

    def _done_up_to(self, end: int) -> None:
        """PALHM is done with the bytes before ``end``: every
        :data:`WRITEBACK_STEP`, start writeback of the new ones and drop the
        ones sent a step before (a hint only: dirty pages are not dropped)."""
        if end - self._advised < WRITEBACK_STEP:
            return
        try:
            os.posix_fadvise(self.fd, self._behind, end - self._behind, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        self._behind, self._advised = self._advised, end

    def close(self) -> None:
        try:
            if self.preallocated:
                os.ftruncate(self.fd, self.written)
            os.fsync(self.fd)
        except OSError as e:
            raise _fail("cannot write", self.path, e) from None
        finally:
            self.abort()

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LocalFsCopy(CopyWriter):
    """A copy being made: the staging directory ``ROOT/.palhm-partial.PREFIX.XXXX``,
    locked with ``flock`` until the copy is committed or rolled back."""

    def __init__(self, backend: LocalFsBackend, prefix: str, staging: str, staging_fd: int):
        self.backend = backend
        self.prefix = prefix
        self.staging: str | None = staging  # relative to ROOT; None once done
        self.staging_fd = staging_fd
        self.committed: str | None = None  # the renamed copy, until commit() returns
        self.dirs: list[str] = []  # created, relative to the staging directory
        self._lock = threading.Lock()

    def sink(self, path: str, alloc_size: int | None) -> Sink:
        b = self.backend
        parts = path.split("/")
        for i in range(1, len(parts)):
            self._mkdir("/".join(parts[:i]))
        target = b._path(self.staging, path)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, b.fmode, dir_fd=self.staging_fd)
            os.fchmod(fd, b.fmode)
        except OSError as e:
            raise _fail("cannot create", target, e) from None
        if alloc_size:
            try:
                os.posix_fallocate(fd, 0, alloc_size)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    os.close(fd)
                    raise _fail("cannot allocate space for", target, e) from None
        return FileSink(fd, target, bool(alloc_size))

    def _mkdir(self, here: str) -> None:
        """Create the directory ``here`` of the copy unless it exists; sinks
        of several threads may ask for the same one."""
        with self._lock:
            if here in self.dirs:
                return
            try:
                os.mkdir(here, self.backend.dmode, dir_fd=self.staging_fd)
                os.chmod(here, self.backend.dmode, dir_fd=self.staging_fd)
            except FileExistsError:
                return
            except OSError as e:
                where = self.backend._path(self.staging, here)
                raise _fail("cannot create directory", where, e) from None
            self.dirs.append(here)

    def commit(self) -> None:
        b = self.backend
        final = b._path(self.prefix)
        try:
            for d in reversed(self.dirs):
                b._sync_dir(d, self.staging_fd)
            os.fsync(self.staging_fd)
            if b._exists(self.prefix):
                raise PrefixExists(f"{final} appeared while the copy was made")
            os.rename(self.staging, self.prefix, src_dir_fd=b.fd, dst_dir_fd=b.fd)
            self.committed = self.prefix
            os.fsync(b.fd)
        except OSError as e:
            raise _fail("cannot commit copy", final, e) from None
        self.committed = None
        self._release()

    def rollback(self) -> None:
        if self.staging is None:  # committed, or rolled back already
            return
        b = self.backend
        for name in (self.committed, self.staging):
            if name and b._exists(name):
                b._rmtree(name)
        self._release()
        try:
            os.fsync(b.fd)
        except OSError:
            pass

    def _release(self) -> None:
        if self.staging_fd >= 0:
            os.close(self.staging_fd)  # drops the flock
            self.staging_fd = -1
        self.staging = self.committed = None


class LocalFsBackend(Backend):
    name = "localfs"
    description = "Copies as directories on a local or mounted filesystem."
    schema = {
        "properties": {
            "root": {
                "type": "string",
                "description": "The directory holding the copies (ROOT). Created if missing, "
                "its parent must exist. A relative path is taken from the working directory. "
                "Every directory on the way must be owned by root or PALHM's user and "
                "writable by no other user (sticky directories such as /tmp excepted), and "
                "ROOT writable by no other user at all.",
            },
            "allow-unsafe-root": {
                "type": "boolean",
                "description": "Use ROOT even when another user can write it or a directory "
                "above it. Such a user can then swap ROOT for a symlink before a run, plant "
                "copies that look like this task's, or fill the disk. Default false.",
            },
            "dmode": {
                "type": "string",
                "description": 'Octal mode of the directories PALHM creates. Default "750".',
            },
            "fmode": {
                "type": "string",
                "description": 'Octal mode of the files PALHM creates. Default "640".',
            },
            "block-size": {
                "type": "integer",
                "minimum": 4096,
                "maximum": 1 << 30,
                "description": "Bytes read or written at a time. Default 1048576.",
            },
        },
        "required": ["root"],
    }

    def __init__(self, params, place):
        super().__init__(params, place)
        if "\0" in params["root"]:
            raise (place / "root").error(f"{params['root']!r} contains a NUL character")
        self.root = os.path.abspath(params["root"])
        self.strict = not params.get("allow-unsafe-root", False)
        self.dmode = parse_mode(params.get("dmode", "750"), place / "dmode")
        self.fmode = parse_mode(params.get("fmode", "640"), place / "fmode")
        self.block_size = params.get("block-size", DEFAULT_BLOCK_SIZE)
        self.fd = -1  # ROOT, from open() to close()

    def describe(self) -> str:
        return self.root

    def location(self) -> tuple[str, ...]:
        return ("localfs", *(p for p in self.root.split("/") if p))

    def _path(self, *names: str) -> str:
        """A path for messages only: nothing is opened by path."""
        return os.path.join(self.root, *names)

    # -- the root -------------------------------------------------------------

    def open(self) -> None:
        self.fd = open_root(self.root, self.dmode, strict=self.strict)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def list_copies(self) -> list[CopyInfo]:
        copies = []
        try:
            with os.scandir(self.fd) as it:
                entries = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        except OSError as e:
            raise _fail("cannot list backup root", self.root, e) from None
        for name in entries:
            # A staging directory: a copy being made or deleted, or the
            # leftover of a run that died; listed as an incomplete copy.
            staging = name.startswith(STAGING)
            if name.startswith(".") and not staging:
                continue
            try:
                fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=self.fd)
            except OSError:
                continue  # gone, or no longer a directory
            try:
                files = _measure(fd, "")
            except OSError:
                files = None
            finally:
                os.close(fd)
            complete = not staging and (files is None or MANIFEST_NAME in files)
            if files is not None:
                files = {p: n for p, n in files.items() if p not in (MANIFEST_NAME, SUMS_NAME)}
            copies.append(
                CopyInfo(
                    name[len(STAGING) :].rpartition(".")[0] if staging else name,
                    complete,
                    sum(files.values()) if files else 0,
                    None if files is None else len(files),
                    files,
                )
            )
        return copies

    def clean_leftovers(self) -> list[str]:
        removed = []
        try:
            names = os.listdir(self.fd)
        except OSError as e:
            raise _fail("cannot list backup root", self.root, e) from None
        for name in names:
            if not name.startswith(STAGING):
                continue
            try:
                fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=self.fd)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a running PALHM is writing it
                os.close(fd)
                continue
            try:
                self._rmtree(name)
                removed.append(f"leftover {self._path(name)}")
            finally:
                os.close(fd)
        if removed:
            os.fsync(self.fd)
        return removed

    # -- making a copy ---------------------------------------------------------

    def begin(self, prefix: str) -> LocalFsCopy:
        if self._exists(prefix):
            raise PrefixExists(f"{self._path(prefix)} exists")
        staging = f"{STAGING}{prefix}.{os.urandom(4).hex()}"
        try:
            os.mkdir(staging, self.dmode, dir_fd=self.fd)
            staging_fd = os.open(staging, _DIR | os.O_NOFOLLOW, dir_fd=self.fd)
        except OSError as e:
            raise _fail("cannot create a copy in", self.root, e) from None
        copy = LocalFsCopy(self, prefix, staging, staging_fd)
        try:
            os.fchmod(staging_fd, self.dmode)
            fcntl.flock(staging_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            copy.rollback()
            raise _fail("cannot create a copy in", self.root, e) from None
        return copy

    # -- old copies ----------------------------------------------------------------

    def delete_copies(self, prefixes: list[str], deleted) -> None:
        """Rename every copy to a staging name, fsync ROOT once for all of
        them, then remove them: from the fsync on none is complete, and what
        a crash leaves is removed by the next run's leftover scan."""
        renamed: list[tuple[str, str]] = []
        failure = None
        for prefix in prefixes:
            doomed = f"{STAGING}{prefix}.{os.urandom(4).hex()}"
            try:
                os.rename(prefix, doomed, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            except OSError as e:
                failure = _fail("cannot delete copy", self._path(prefix), e)
                break
            renamed.append((prefix, doomed))
        if renamed:
            try:
                os.fsync(self.fd)
            except OSError as e:
                raise _fail("cannot delete copies in", self.root, e) from None
        for prefix, doomed in renamed:
            self._rmtree(doomed)
            deleted(prefix)
        if failure is not None:
            raise failure

    def open_object(self, prefix: str, path: str):
        """The object, reached from ROOT's descriptor without following any
        symlink."""
        names = [prefix, *path.split("/")]
        fd = os.open(names[0], _DIR | os.O_NOFOLLOW, dir_fd=self.fd)
        try:
            for name in names[1:-1]:
                fd, parent = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=fd), fd
                os.close(parent)
            file_fd = os.open(names[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        finally:
            os.close(fd)
        return open(file_fd, "rb", buffering=self.block_size)

    # -- helpers --------------------------------------------------------------------

    def _exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _rmtree(self, name: str) -> None:
        """Remove ``ROOT/name`` through descriptors: no symlink is followed,
        no path resolved again (``os.fwalk``, deepest directories first)."""

        def remove(func, top: str, entry: str, dir_fd: int) -> None:
            try:
                func(entry, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise _fail("cannot remove", self._path(top, entry), e) from None

        def walk_error(e: OSError) -> None:
            if not isinstance(e, FileNotFoundError):
                raise _fail("cannot remove", self._path(name), e)

        for top, dirs, files, dir_fd in os.fwalk(
            name, topdown=False, onerror=walk_error, dir_fd=self.fd
        ):
            for entry in files:
                remove(os.unlink, top, entry, dir_fd)
            for entry in dirs:  # a symlink to a directory is listed here, not followed
                remove(_rmdir_or_unlink, top, entry, dir_fd)
        remove(os.rmdir, "", name, self.fd)

    @staticmethod
    def _sync_dir(name: str, dir_fd: int) -> None:
        fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _rmdir_or_unlink(name: str, dir_fd: int) -> None:
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except NotADirectoryError:
        os.unlink(name, dir_fd=dir_fd)


#: Directories inside a copy deeper than this make it unmeasurable (damaged).
MAX_DEPTH = 256


def _measure(dir_fd: int, base: str, depth: int = 0) -> dict[str, int]:
    """The size of every regular file under the directory ``dir_fd``, by
    ``/``-separated path; symlinks and other special files are not counted.

    :raises OSError: also for directories nested deeper than
        :data:`MAX_DEPTH`, which PALHM does not make.
    """
    if depth > MAX_DEPTH:
        raise OSError(errno.ELOOP, f"directories nested deeper than {MAX_DEPTH}")
    files = {}
    with os.scandir(dir_fd) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            fd = os.open(entry.name, _DIR | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                files.update(_measure(fd, f"{base}{entry.name}/", depth + 1))
            finally:
                os.close(fd)
        elif entry.is_file(follow_symlinks=False):
            files[base + entry.name] = entry.stat(follow_symlinks=False).st_size
    return files
