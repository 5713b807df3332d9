"""Keeping two runs of one task from overlapping.

A run holds ``flock(2)`` locks, which the kernel drops when PALHM dies however
it dies, so a lock is never stale and there is nothing to clean up:

- an exclusive lock on ``LOCKDIR/TASK.HASH.lock``, HASH naming the config
  file's real path and the task id, so the same task id in two configs does
  not collide. PALHM writes its PID into the file for the run that finds it
  taken;
- a shared lock on the config file itself, opened read-only.

When no lock directory can be used (a read-only sandbox such as
``systemd-run -p ProtectSystem=strict -p ReadOnlyPaths=/ palhm run TASK``, or a
user without ``$XDG_RUNTIME_DIR``), the run takes an *exclusive* lock on the
config file instead: such a run then excludes every other run of the same
config, not only runs of the same task. Shared and exclusive locks on the
same file keep both kinds of runs honest with each other. A lock file that
already exists is still used read-only (per task), only without the PID.

The lock directory is, first found: ``--lock-dir``, ``$PALHM_LOCK_DIR``,
``/run/lock/palhm`` for root, ``$XDG_RUNTIME_DIR/palhm`` for other users. It
must belong to the user running PALHM (or root) and be writable by no one else.

The run that finds a lock taken names the holder: from ``/proc/locks``, else
the PID written in the lock file, else "another process".
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
from collections.abc import Mapping

from palhm_core.errors import LockBusy

log = logging.getLogger("palhm")

ROOT_LOCK_DIR = "/run/lock/palhm"
ENV_LOCK_DIR = "PALHM_LOCK_DIR"
#: Seconds between attempts while waiting (``--wait``).
POLL = 0.2

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.@+-]")


def default_lock_dir(environ: Mapping[str, str] | None = None, euid: int | None = None):
    """Where lock files go when ``--lock-dir`` is not given; None when there
    is no such place (the config file is locked instead)."""
    environ = os.environ if environ is None else environ
    euid = os.geteuid() if euid is None else euid
    if environ.get(ENV_LOCK_DIR):
        return environ[ENV_LOCK_DIR]
    if euid == 0:
        return ROOT_LOCK_DIR
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        return os.path.join(runtime, "palhm")
    return None


def lock_name(config_path: str, task_id: str) -> str:
    """``TASK.HASH.lock``: readable, and unique per (config, task)."""
    digest = hashlib.sha256(f"{config_path}\0{task_id}".encode()).hexdigest()[:16]
    readable = _UNSAFE_NAME.sub("_", task_id)[:64].lstrip(".") or "task"
    return f"{readable}.{digest}.lock"


class RunLock:
    """The locks of one run of ``task_id`` from the config at ``config_path``.

    Use :meth:`acquire`, then :meth:`release` (or let the process end).
    """

    def __init__(self, config_path: str, task_id: str, lock_dir: str | None = None):
        self.config = os.path.realpath(config_path)
        self.task_id = task_id
        self.lock_dir = lock_dir if lock_dir is not None else default_lock_dir()
        self.path: str | None = None  # the task's lock file, when there is one
        self._task_fd = -1
        self._config_fd = -1
        self._writable = False
        self.held = False
        self._config_locked = False

    # -- opening --------------------------------------------------------------

    def _open(self) -> None:
        if self._config_fd < 0:
            try:
                self._config_fd = os.open(self.config, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                log.warning("cannot open %s to lock it: %s", self.config, e.strerror or e)
        if self._task_fd < 0 and self.lock_dir:
            self._open_task_file()

    def _open_task_file(self) -> None:
        directory = os.path.abspath(self.lock_dir)
        path = os.path.join(directory, lock_name(self.config, self.task_id))
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        except OSError as e:
            if not os.path.isdir(directory):
                log.debug("lock directory %s: %s; locking the config file", directory, e)
                return
        problem = _unsafe_dir(directory)
        if problem:
            log.warning(
                "not using lock directory %s: %s; locking the config file instead",
                directory,
                problem,
            )
            return
        flags = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY
        try:
            fd = os.open(path, flags | os.O_RDWR | os.O_CREAT, 0o644)
            writable = True
        except OSError as e:
            # A read-only filesystem may still hold the file from an earlier run.
            try:
                fd = os.open(path, flags | os.O_RDONLY)
                writable = False
            except OSError:
                log.debug("lock file %s: %s; locking the config file", path, e.strerror or e)
                return
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (os.geteuid(), 0) or st.st_nlink != 1:
            os.close(fd)
            log.warning(
                "not using lock file %s: not a plain file of this user; "
                "locking the config file instead",
                path,
            )
            return
        self._task_fd, self._writable, self.path = fd, writable, path

    @property
    def per_config(self) -> bool:
        """True when the run locks the whole config (no lock directory)."""
        return self._task_fd < 0

    # -- locking --------------------------------------------------------------

    def try_acquire(self) -> bool:
        """One attempt; True if this run now holds the lock."""
        self._open()
        if self.per_config:
            if self._config_fd < 0:
                log.warning(
                    "task %r runs without a lock: no lock directory and "
                    "the config file cannot be opened",
                    self.task_id,
                )
                self.held = True
                return True
            if not _flock(self._config_fd, fcntl.LOCK_EX, self.config):
                return False
            self._config_locked = True
            self.held = True
            return True
        if self._config_fd >= 0:
            if not _flock(self._config_fd, fcntl.LOCK_SH, self.config):
                return False
            self._config_locked = True
        if not _flock(self._task_fd, fcntl.LOCK_EX, self.path):
            self._unlock_config()
            return False
        if self._writable:
            try:
                os.ftruncate(self._task_fd, 0)
                os.pwrite(self._task_fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass
        self.held = True
        return True

    def acquire(self, wait: float | None = None, signals=None) -> None:
        """Take the lock now, or within ``wait`` seconds (``math.inf``: no
        limit); raise :class:`LockBusy` naming the holder. A stop signal
        while waiting raises :class:`palhm_core.errors.Interrupted`."""
        if self.try_acquire():
            return
        if wait is None:
            raise LockBusy(
                f"{self._what()} is already running ({self.holder()}); "
                "not starting another run (--wait waits for it)"
            )
        log.info(
            "%s is running (%s); waiting%s",
            self._what(),
            self.holder(),
            "" if math.isinf(wait) else f" up to {wait:g}s",
        )
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockBusy(
                    f"{self._what()} is still running ({self.holder()}) after "
                    f"waiting {wait:g}s; not starting another run"
                )
            pause = min(POLL, left)
            if signals is not None:
                signals.wait(pause)
                signals.check()
            else:
                time.sleep(pause)
            if self.try_acquire():
                log.debug("%s: lock taken", self.task_id)
                return

    def _what(self) -> str:
        if self.per_config:
            return f"a task of {self.config}"
        return f"task {self.task_id!r} of {self.config}"

    def _unlock_config(self) -> None:
        if self._config_locked:
            fcntl.flock(self._config_fd, fcntl.LOCK_UN)
            self._config_locked = False

    def release(self) -> None:
        """Drop the locks and close the files (the lock file stays: removing
        it would let a waiting run and a new one lock different files)."""
        if self._task_fd >= 0:
            if self.held and self._writable:
                try:
                    os.ftruncate(self._task_fd, 0)
                except OSError:
                    pass
            os.close(self._task_fd)
            self._task_fd = -1
        if self._config_fd >= 0:
            os.close(self._config_fd)
            self._config_fd = -1
        self._config_locked = False
        self.held = False

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- who holds it ---------------------------------------------------------

    def holder(self) -> str:
        """``PID 1234`` (or ``PIDs 12, 34``), else ``another process``."""
        fd = self._config_fd if self.per_config else self._task_fd
        pids: list[int] = []
        if fd >= 0:
            st = os.fstat(fd)
            pids = [p for p in flock_holders(st.st_dev, st.st_ino) if p != os.getpid()]
            if not pids and not self.per_config:
                pids = _pid_in_file(fd)
        if not pids:
            return "another process"
        if len(pids) == 1:
            return f"PID {pids[0]}"
        return "PIDs " + ", ".join(map(str, pids))


def _flock(fd: int, how: int, path: str | None) -> bool:
    """Non-blocking flock; False when someone else holds it."""
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        # ENOLCK, EOPNOTSUPP, EBADF (NFS emulates flock with fcntl locks, which
        # need a writable file): better an unlocked backup than none.
        log.warning("cannot lock %s: %s; going on without that lock", path, e.strerror or e)
        return True


def _unsafe_dir(directory: str) -> str | None:
    try:
        st = os.lstat(directory)
    except OSError as e:
        return e.strerror or str(e)
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if st.st_uid not in (os.geteuid(), 0):
        return f"owned by uid {st.st_uid}"
    if st.st_mode & 0o022:
        return "writable by other users"
    return None


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
