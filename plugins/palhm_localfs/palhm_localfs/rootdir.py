"""Opening ROOT once, safely: the path is resolved one name at a time from
``/`` with ``O_NOFOLLOW``, every directory on the way is checked as it is
opened, and the backend then works only through the descriptor of ROOT, so
nothing can swap a directory on the path for a symlink between two steps.

The check mirrors OpenSSH's StrictModes: a directory on the way must be owned
by root or by PALHM's own user, and writable by no one else (group and other
write bits clear), except that a directory with the sticky bit (``/tmp``) may
be writable by all, since no one can then rename what PALHM's user owns in
it. ROOT itself must be writable by no one else at all. A symlink on the way
is followed only when the directory holding it passed the check.
"""

from __future__ import annotations

import os
import stat

from palhm_core.api import BackendError

MAX_LINKS = 40
_SEARCH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def open_root(root: str, dmode: int, *, strict: bool) -> int:
    """A descriptor of the directory ``root`` (absolute), opened for
    reading; ROOT is created with ``dmode`` if it is missing and its parent
    exists. With ``strict``, refuse a path another user could change."""
    # (name, named by a symlink): ROOT is created only where the config names
    # it, never at the target of a dangling symlink.
    parts = [(p, False) for p in root.split("/") if p]
    euid = os.geteuid()
    fd = os.open("/", _SEARCH | os.O_DIRECTORY)
    where = "/"
    links = 0
    try:
        _check(root, where, os.fstat(fd), euid, strict, final=not parts)
        while parts:
            name, linked = parts.pop(0)
            if name == ".":
                continue
            nfd = _open_or_create(root, fd, where, name, dmode, last=not parts, linked=linked)
            st = os.fstat(nfd)
            if stat.S_ISLNK(st.st_mode):
                os.close(nfd)
                links += 1
                if links > MAX_LINKS:
                    raise BackendError(f"backup root {root}: too many symbolic links")
                target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):
                    os.close(fd)
                    fd, where = os.open("/", _SEARCH | os.O_DIRECTORY), "/"
                parts[:0] = [(p, True) for p in target.split("/") if p]
                continue
            os.close(fd)
            fd, where = nfd, os.path.normpath(os.path.join(where, name))
            if not stat.S_ISDIR(st.st_mode):
                raise BackendError(f"backup root {root}: {where} is not a directory")
            _check(root, where, st, euid, strict, final=not parts)
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    except OSError as e:
        raise BackendError(f"cannot use backup root {root}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def _open_or_create(
    root: str, fd: int, where: str, name: str, dmode: int, *, last: bool, linked: bool
) -> int:
    try:
        return os.open(name, _SEARCH, dir_fd=fd)
    except FileNotFoundError:
        missing = os.path.join(where, name)
        if not last:
            raise BackendError(
                f"backup root {root}: its parent directory {missing} does not exist"
            ) from None
        if linked:
            raise BackendError(
                f"backup root {root}: {missing}, where a symbolic link points, does not exist"
            ) from None
    try:
        os.mkdir(name, dmode, dir_fd=fd)
    except OSError as e:
        raise BackendError(f"cannot create backup root {root}: {e.strerror or e}") from None
    new = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    try:
        os.fchmod(new, dmode)  # whatever the umask
        return os.open(".", _SEARCH | os.O_DIRECTORY, dir_fd=new)
    finally:
        os.close(new)


def _check(root: str, where: str, st: os.stat_result, euid: int, strict: bool, final: bool):
    if not strict:
        return
    if st.st_uid not in (0, euid):
        problem = f"is owned by uid {st.st_uid}, neither root nor PALHM's user"
    elif st.st_mode & 0o022 and (final or not st.st_mode & stat.S_ISVTX):
        problem = f"is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
    else:
        return
    what = "ROOT" if final else "a directory above ROOT"
    raise BackendError(
        f"backup root {root}: {where} ({what}) {problem}: another user could replace or "
        "fill the backup root; fix its owner or mode, or set allow-unsafe-root to accept the risk"
    )
