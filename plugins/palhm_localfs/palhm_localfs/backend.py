"""The localfs backend class."""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import stat

from palhm_core import Backend, BackendError, CopyInfo, PrefixExists, Sink
from palhm_core.config.values import parse_mode
from palhm_core.manifest import MANIFEST_NAME, parse_manifest

STAGING = ".palhm-partial."
DEFAULT_BLOCK_SIZE = 1 << 20
#: A :class:`FileSink` hands its new pages to writeback every this many bytes.
WRITEBACK_STEP = 8 << 20
#: ``os.splice`` errors meaning this file cannot take bytes from a pipe.
_NO_SPLICE = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


def _fail(what: str, path: str, e: OSError) -> BackendError:
    return BackendError(f"{what} {path}: {e.strerror or e}")


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


class LocalFsBackend(Backend):
    name = "localfs"
    description = "Copies as directories on a local or mounted filesystem."
    schema = {
        "properties": {
            "root": {
                "type": "string",
                "description": "The directory holding the copies (ROOT). Created if missing, "
                "its parent must exist. A relative path is taken from the working directory.",
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
        self.dmode = parse_mode(params.get("dmode", "750"), place / "dmode")
        self.fmode = parse_mode(params.get("fmode", "640"), place / "fmode")
        self.block_size = params.get("block-size", DEFAULT_BLOCK_SIZE)
        self.staging: str | None = None
        self.staging_fd = -1
        self.prefix: str | None = None
        self.committed: str | None = None
        self.dirs: list[str] = []

    def describe(self) -> str:
        return self.root

    # -- the root -------------------------------------------------------------

    def open(self) -> None:
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            parent = os.path.dirname(self.root)
            if not os.path.isdir(parent):
                raise BackendError(
                    f"backup root {self.root}: its parent directory {parent} does not exist"
                ) from None
            try:
                os.mkdir(self.root, self.dmode)
                os.chmod(self.root, self.dmode)
            except OSError as e:
                raise _fail("cannot create backup root", self.root, e) from None
            return
        except OSError as e:
            raise _fail("cannot use backup root", self.root, e) from None
        if not stat.S_ISDIR(st.st_mode):
            raise BackendError(f"backup root {self.root} is not a directory")

    def list_copies(self) -> list[CopyInfo]:
        copies = []
        try:
            entries = list(os.scandir(self.root))
        except OSError as e:
            raise _fail("cannot list backup root", self.root, e) from None
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            manifest = self._read_manifest(entry.path)
            if manifest is None:
                copies.append(CopyInfo(entry.name, False, 0))
            else:
                copies.append(
                    CopyInfo(
                        entry.name,
                        True,
                        int(manifest.get("size", 0)),
                        len(manifest["objects"]),
                        manifest,
                    )
                )
        return copies

    @staticmethod
    def _read_manifest(copy_dir: str):
        try:
            with open(os.path.join(copy_dir, MANIFEST_NAME), "rb") as f:
                return parse_manifest(f.read())
        except OSError:
            return None

    def clean_leftovers(self) -> list[str]:
        removed = []
        try:
            names = os.listdir(self.root)
        except OSError as e:
            raise _fail("cannot list backup root", self.root, e) from None
        for name in names:
            if not name.startswith(STAGING):
                continue
            path = os.path.join(self.root, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a running PALHM is writing it
                os.close(fd)
                continue
            try:
                self._rmtree(path)
                removed.append(f"leftover {path}")
            finally:
                os.close(fd)
        if removed:
            self._sync_dir(self.root)
        return removed

    # -- making a copy ---------------------------------------------------------

    def begin(self, prefix: str) -> None:
        final = os.path.join(self.root, prefix)
        if os.path.lexists(final):
            raise PrefixExists(f"{final} exists")
        staging = os.path.join(self.root, f"{STAGING}{prefix}.{secrets.token_hex(4)}")
        try:
            os.mkdir(staging, self.dmode)
            os.chmod(staging, self.dmode)
            self.staging_fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(self.staging_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise _fail("cannot create a copy in", self.root, e) from None
        self.staging, self.prefix, self.committed = staging, prefix, None
        self.dirs = [staging]

    def sink(self, path: str, alloc_size: int | None) -> Sink:
        assert self.staging is not None
        parts = path.split("/")
        here = self.staging
        for part in parts[:-1]:
            here = os.path.join(here, part)
            try:
                os.mkdir(here, self.dmode)
                os.chmod(here, self.dmode)
                self.dirs.append(here)
            except FileExistsError:
                pass
            except OSError as e:
                raise _fail("cannot create directory", here, e) from None
        target = os.path.join(here, parts[-1])
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(target, flags, self.fmode)
            os.fchmod(fd, self.fmode)
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

    def commit(self) -> None:
        assert self.staging is not None and self.prefix is not None
        final = os.path.join(self.root, self.prefix)
        try:
            for d in reversed(self.dirs):
                self._sync_dir(d)
            if os.path.lexists(final):
                raise PrefixExists(f"{final} appeared while the copy was made")
            os.rename(self.staging, final)
            self.committed = final
            self._sync_dir(self.root)
        except OSError as e:
            raise _fail("cannot commit copy", final, e) from None
        self._release()

    def rollback(self) -> None:
        for path in (self.committed, self.staging):
            if path and os.path.lexists(path):
                self._rmtree(path)
        self._release()
        try:
            self._sync_dir(self.root)
        except OSError:
            pass

    def _release(self) -> None:
        if self.staging_fd >= 0:
            os.close(self.staging_fd)  # drops the flock
            self.staging_fd = -1
        self.staging = self.committed = None

    # -- old copies ----------------------------------------------------------------

    def delete_copies(self, prefixes: list[str], deleted) -> None:
        """Rename every copy to a staging name, fsync ROOT once for all of
        them, then remove them: from the fsync on none is complete, and what
        a crash leaves is removed by the next run's leftover scan."""
        renamed: list[tuple[str, str]] = []
        failure = None
        for prefix in prefixes:
            path = os.path.join(self.root, prefix)
            doomed = os.path.join(self.root, f"{STAGING}{prefix}.{secrets.token_hex(4)}")
            try:
                os.rename(path, doomed)
            except OSError as e:
                failure = _fail("cannot delete copy", path, e)
                break
            renamed.append((prefix, doomed))
        if renamed:
            try:
                self._sync_dir(self.root)
            except OSError as e:
                raise _fail("cannot delete copies in", self.root, e) from None
        for prefix, doomed in renamed:
            self._rmtree(doomed)
            deleted(prefix)
        if failure is not None:
            raise failure

    def open_object(self, prefix: str, path: str):
        full = os.path.join(self.root, prefix, *path.split("/"))
        return open(full, "rb", buffering=self.block_size)

    # -- helpers --------------------------------------------------------------------

    def _rmtree(self, path: str) -> None:
        def onerror(func, p, exc_info):
            e = exc_info[1]
            if not isinstance(e, FileNotFoundError):
                raise _fail("cannot remove", p, e)

        shutil.rmtree(path, onerror=onerror)

    @staticmethod
    def _sync_dir(path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
