"""Keeping two runs of one task from overlapping.

A run holds ``flock(2)`` locks, which the kernel drops when PALHM dies however
it dies, so a lock is never stale and there is nothing to clean up. Every lock
is on a file in a *lock directory* that only PALHM's user can write, so that no
other user can hold a lock and block the runs (PALHM never locks the config
file, which other users may be able to read):

- a shared lock on the lock directory itself;
- an exclusive lock on ``LOCKDIR/TASK.HASH.lock`` for the task and for every
  task it runs, HASH naming the config file's real path and the task id, so
  the same task id in two configs does not collide. PALHM writes its PID into
  the file for the run that finds it taken.

The lock directory is, first found: ``--lock-dir``, ``$PALHM_LOCK_DIR``,
``/run/palhm`` for root, ``$XDG_RUNTIME_DIR/palhm`` for other users, and for a
user without a runtime directory (a plain user crontab)
``$XDG_STATE_HOME/palhm/locks`` (``~/.local/state/palhm/locks``). PALHM
creates it with mode 0700 and refuses, with exit status 2, one that is not a
directory of its own user or that the group or others can write, and a lock
file that is not a plain file of its own user with mode 0600 (or stricter).

A read-only sandbox (``systemd-run -p ProtectSystem=strict -p
ReadOnlyPaths=/ palhm run TASK``) can still lock: the lock directory must
exist (``RuntimeDirectory=palhm`` makes it, writable even under
``ProtectSystem=strict``); a lock file that exists is locked read-only, and
when one is missing and cannot be made, the run takes an *exclusive* lock on
the lock directory instead, so that it excludes every other run using that
directory while it goes on.

The locks of one run are taken once, in task-id order, through one object
(:class:`RunLocks`): a run never waits for a lock it holds itself. A lock
file that cannot be opened for a reason other than a read-only file system
(too many open files, for one) is an error, never taken for a busy lock.

The run that finds a lock taken names the holder and the lock file: the PIDs
from ``/proc/locks``, else the PID written in the lock file, else "another
process".
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import math
import os
import re
import stat
import time
from collections.abc import Iterable, Mapping

from palhm_core.errors import LockBusy, PalhmError

log = logging.getLogger("palhm")

ROOT_LOCK_DIR = "/run/palhm"
ENV_LOCK_DIR = "PALHM_LOCK_DIR"
#: Seconds between attempts while waiting (``--wait``).
POLL = 0.2
#: Errors that say a lock file cannot be made here, not that something is wrong.
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.@+-]")


class LockDirError(PalhmError):
    """No lock directory PALHM may use: the run does not start."""

    exit_status = 2


def default_lock_dir(environ: Mapping[str, str] | None = None, euid: int | None = None):
    """Where lock files go when ``--lock-dir`` is not given; None when there
    is no such place (a non-root user without a runtime directory or a home)."""
    environ = os.environ if environ is None else environ
    euid = os.geteuid() if euid is None else euid
    if environ.get(ENV_LOCK_DIR):
        return environ[ENV_LOCK_DIR]
    if euid == 0:
        return ROOT_LOCK_DIR
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        return os.path.join(runtime, "palhm")
    state = environ.get("XDG_STATE_HOME", "")
    if os.path.isabs(state):
        return os.path.join(state, "palhm", "locks")
    home = environ.get("HOME", "")
    if os.path.isabs(home) and home != "/":
        return os.path.join(home, ".local", "state", "palhm", "locks")
    return None


def lock_name(config_path: str, task_id: str) -> str:
    """``TASK.HASH.lock``: readable, and unique per (config, task)."""
    digest = hashlib.sha256(f"{config_path}\0{task_id}".encode()).hexdigest()[:16]
    readable = _UNSAFE_NAME.sub("_", task_id)[:64].lstrip(".") or "task"
    return f"{readable}.{digest}.lock"


class _Lock:
    """One open file to flock: the directory or a task's lock file."""

    def __init__(self, fd: int, path: str, task_id: str | None, writable: bool):
        self.fd, self.path, self.task_id, self.writable = fd, path, task_id, writable
        self.held = False


class RunLocks:
    """The locks of one run of ``task_ids`` (a task and every task it runs)
    of the config at ``config_path``.

    Use :meth:`acquire`, then :meth:`release` (or let the process end).
    """

    def __init__(self, config_path: str, task_ids: Iterable[str], lock_dir: str | None = None):
        self.config = os.path.realpath(config_path)
        self.task_ids = sorted(set(task_ids))
        self.lock_dir = lock_dir or default_lock_dir()
        self._dir: _Lock | None = None
        self._tasks: list[_Lock] = []
        self.exclusive_dir = False  # True in a read-only sandbox missing a lock file

    # -- opening --------------------------------------------------------------

    def _open(self) -> None:
        if self._dir is not None:
            return
        if not self.lock_dir:
            raise LockDirError(
                "no lock directory: neither $XDG_RUNTIME_DIR nor $HOME is set; give "
                f"--lock-dir DIR or set {ENV_LOCK_DIR} to a directory only this user can write"
            )
        directory = os.path.abspath(self.lock_dir)
        dfd = _open_dir(directory)
        self._dir = _Lock(dfd, directory, None, False)
        missing = False
        for task_id in self.task_ids:
            lock = _open_lock_file(dfd, directory, lock_name(self.config, task_id), task_id)
            if lock is None:
                missing = True
            else:
                self._tasks.append(lock)
        if missing:
            self.exclusive_dir = True
            log.debug("lock directory %s is read-only: locking all of it", directory)

    # -- locking --------------------------------------------------------------

    def acquire(self, wait: float | None = None, signals=None) -> None:
        """Take every lock now, or within ``wait`` seconds (``math.inf``: no
        limit); raise :class:`LockBusy` naming the holder and the lock file. A
        stop signal while waiting raises :class:`palhm_core.errors.Interrupted`."""
        try:
            self._open()
            deadline = None if wait is None else time.monotonic() + wait
            self._take(self._dir, wait, deadline, signals)
            for lock in self._tasks:
                self._take(lock, wait, deadline, signals)
        except BaseException:
            self.release()
            raise

    def _take(self, lock: _Lock, wait, deadline, signals) -> None:
        how = fcntl.LOCK_EX if lock.task_id is not None or self.exclusive_dir else fcntl.LOCK_SH
        if _flock(lock, how):
            self._mark(lock)
            return
        if wait is None:
            raise LockBusy(
                f"{self._what(lock)} is already running ({self._holder(lock)}); "
                "not starting another run (--wait waits for it)"
            )
        log.info(
            "%s is running (%s); waiting%s",
            self._what(lock),
            self._holder(lock),
            "" if math.isinf(wait) else f" up to {wait:g}s",
        )
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockBusy(
                    f"{self._what(lock)} is still running ({self._holder(lock)}) after "
                    f"waiting {wait:g}s; not starting another run"
                )
            pause = min(POLL, left)
            if signals is not None:
                signals.wait(pause)
                signals.check()
            else:
                time.sleep(pause)
            if _flock(lock, how):
                log.debug("%s: lock taken", lock.path)
                self._mark(lock)
                return

    def _mark(self, lock: _Lock) -> None:
        lock.held = True
        if lock.writable:
            try:
                os.ftruncate(lock.fd, 0)
                os.pwrite(lock.fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass

    def _what(self, lock: _Lock) -> str:
        if lock.task_id is not None:
            return f"task {lock.task_id!r} of {self.config}"
        return "another PALHM run"

    def _holder(self, lock: _Lock) -> str:
        """``PID 1234, lock FILE`` (or ``PIDs 12, 34, ...``)."""
        st = os.fstat(lock.fd)
        pids = [p for p in flock_holders(st.st_dev, st.st_ino) if p != os.getpid()]
        if not pids and lock.task_id is not None:
            pids = _pid_in_file(lock.fd)
        if not pids:
            who = "another process"
        elif len(pids) == 1:
            who = f"PID {pids[0]}"
        else:
            who = "PIDs " + ", ".join(map(str, pids))
        return f"{who}, lock {lock.path}"

    def release(self) -> None:
        """Drop the locks and close the files (the lock files stay: removing
        one would let a waiting run and a new one lock different files)."""
        for lock in self._tasks:
            if lock.held and lock.writable:
                try:
                    os.ftruncate(lock.fd, 0)
                except OSError:
                    pass
            os.close(lock.fd)
        self._tasks = []
        if self._dir is not None:
            os.close(self._dir.fd)
            self._dir = None

    def __enter__(self) -> RunLocks:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _open_dir(directory: str) -> int:
    """The lock directory, made if missing (mode 0700), opened and checked."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as e:
        if not os.path.isdir(directory):
            raise LockDirError(
                f"lock directory {directory}: cannot create it: {e.strerror or e} "
                "(give --lock-dir DIR, or make it writable: RuntimeDirectory=palhm)"
            ) from None
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise LockDirError(f"lock directory {directory}: {e.strerror or e}") from None
    st = os.fstat(dfd)
    problem = None
    if st.st_uid != os.geteuid():
        problem = f"owned by uid {st.st_uid}, not by uid {os.geteuid()} running PALHM"
    elif st.st_mode & 0o022:
        problem = f"writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    if problem:
        os.close(dfd)
        raise LockDirError(
            f"lock directory {directory}: {problem}; another user could hold PALHM's locks "
            "(use a directory only this user can write: chmod 700, or --lock-dir DIR)"
        )
    return dfd


def _open_lock_file(dfd: int, directory: str, name: str, task_id: str) -> _Lock | None:
    """The task's lock file in the directory ``dfd``, made if missing (mode
    0600); None when it is missing and cannot be made (read-only)."""
    path = os.path.join(directory, name)
    flags = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK
    try:
        fd = os.open(name, flags | os.O_RDWR | os.O_CREAT, 0o600, dir_fd=dfd)
        writable = True
    except OSError as e:
        if e.errno not in _READ_ONLY:
            raise _open_error(path, e) from None
        try:
            fd = os.open(name, flags | os.O_RDONLY, dir_fd=dfd)
            writable = False
        except FileNotFoundError:
            return None
        except OSError as e2:
            raise _open_error(path, e2) from None
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        problem = "not a plain file"
    elif st.st_uid != os.geteuid():
        problem = f"owned by uid {st.st_uid}"
    elif st.st_mode & 0o077:
        problem = f"other users can open it (mode {stat.S_IMODE(st.st_mode):04o}; chmod 600 it)"
    if problem:
        os.close(fd)
        raise LockDirError(f"lock file {path}: {problem}")
    return _Lock(fd, path, task_id, writable)


def _open_error(path: str, e: OSError) -> PalhmError:
    return PalhmError(f"cannot open lock file {path}: {e.strerror or e}")


def _flock(lock: _Lock, how: int) -> bool:
    """Non-blocking flock; False when another process holds it."""
    try:
        fcntl.flock(lock.fd, how | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        # ENOLCK, EOPNOTSUPP (NFS without lock support): better an unlocked
        # backup than none, said loudly.
        log.warning("cannot lock %s: %s; going on without that lock", lock.path, e.strerror or e)
        return True


def flock_holders(dev: int, ino: int, proc_locks: str = "/proc/locks") -> list[int]:
    """PIDs holding a flock on the file (dev, ino), from ``/proc/locks``."""
    key = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    pids: list[int] = []
    try:
        with open(proc_locks) as f:
            lines = f.readlines()
    except OSError:
        return pids
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 7653 fe:00:612 0 EOF"; waiters carry "->".
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[5] != key:
            continue
        try:
            pid = int(fields[4])
        except ValueError:
            continue
        if pid > 0 and pid not in pids:
            pids.append(pid)
    return pids


def _pid_in_file(fd: int) -> list[int]:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        pid = int(text)
    except (OSError, ValueError):
        return []
    return [pid] if pid > 0 and os.path.exists(f"/proc/{pid}") else []
