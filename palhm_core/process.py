"""Starting child processes so that none outlives PALHM.

Every child is started in a session (and process group) of its own, so that
PALHM, not the terminal, decides when it stops, and ending the group also ends
whatever the child started. :class:`Children` keeps every group PALHM started;
:meth:`Children.stop` ends them all (SIGTERM, then SIGKILL after a grace
period) and refuses new ones, which is what rollback and signals use. When a
child exits, what it left running in its group is killed with it
(:meth:`Children.wait`), so a step cannot leave background jobs behind.

A command that starts a session of its own (a daemon, as an init script
started by an update routine) leaves PALHM's groups on purpose and is left
alone. Under systemd the unit's cgroup ends everything when the unit stops.

PALHM killed with SIGKILL (the OOM killer, ``kill -9``) cannot end its
children itself, so a small guardian process (:class:`_Guardian`), started
with the first child, does it: PALHM tells it each group it starts and ends
through a pipe, and when that pipe closes with groups still listed, PALHM is
gone and the guardian ends them (SIGTERM, SIGKILL after a grace period).
Otherwise a dump would run on after PALHM's death, holding its locks and
writing into a copy that no longer exists.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import weakref

from palhm_core.errors import Interrupted, TaskError


class Stopping(TaskError):
    """A child was about to start while PALHM is stopping after a failure."""

    def __init__(self):
        super().__init__("not starting another command: stopping after a failure")


class Children:
    def __init__(self):
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen] = set()
        self.stopping = False
        #: The stop signal that made PALHM stop, if one did.
        self.signum: int | None = None
        self._guardian: _Guardian | None = None

    def spawn(self, argv, *, stdin, stdout, stderr, env=None) -> subprocess.Popen:
        """Start ``argv`` (no shell) in a new process group."""
        with self._lock:
            if self.stopping:
                raise Interrupted(self.signum) if self.signum else Stopping()
            if self._guardian is None:
                self._guardian = _Guardian.start()
            try:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    env=env,
                    close_fds=True,
                    start_new_session=True,
                )
            except OSError as e:
                raise TaskError(f"cannot run {argv[0]!r}: {e.strerror or e}") from None
            self._live.add(proc)
            self._guardian.tell(b"+", proc.pid)
        return proc

    def wait(self, proc: subprocess.Popen) -> int:
        """Wait for ``proc``, kill what it left running in its group, and
        forget it."""
        rc = proc.wait()
        _killpg(proc.pid, signal.SIGKILL)
        self.forget(proc)
        return rc

    def forget(self, proc: subprocess.Popen) -> None:
        with self._lock:
            if proc in self._live and self._guardian is not None:
                self._guardian.tell(b"-", proc.pid)
            self._live.discard(proc)

    def stop(self, grace: float = 5.0, signum: int | None = None) -> None:
        """End every child's process group: SIGTERM, then SIGKILL after
        ``grace`` seconds. No child starts afterwards: :meth:`spawn` raises
        :class:`Interrupted` when ``signum`` (a stop signal) was given here or
        before, else :class:`Stopping`."""
        with self._lock:
            self.stopping = True
            if signum is not None and self.signum is None:
                self.signum = signum
            procs = list(self._live)
        end_groups(procs, grace)
        for proc in procs:
            self.forget(proc)


#: The guardian's program: read ``+PGID``/``-PGID`` lines until PALHM's end of
#: the pipe closes, then end the groups still listed.
_GUARDIAN = """
import os, signal, sys, time
groups = set()
for line in sys.stdin.buffer:
    (groups.add if line[:1] == b"+" else groups.discard)(int(line[1:]))
def alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False
for sig in (signal.SIGTERM, signal.SIGKILL):
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass
    deadline = time.monotonic() + float(sys.argv[1])
    while sig == signal.SIGTERM and any(map(alive, groups)) and time.monotonic() < deadline:
        time.sleep(0.05)
"""


class _Guardian:
    """The process that ends PALHM's children if PALHM dies without doing it
    (see the module's docstring). Best effort: if it cannot start or dies,
    PALHM runs on without it."""

    def __init__(self, fd: int | None, proc: subprocess.Popen | None):
        self.fd = fd
        self.proc = proc
        if fd is not None:
            # PALHM's end closes with PALHM, or when its Children object goes.
            weakref.finalize(self, os.close, fd)

    @classmethod
    def start(cls, grace: float = 2.0) -> _Guardian:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _GUARDIAN, str(grace)],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={},  # nothing of PALHM's environment is needed (or secret)
                close_fds=True,
                start_new_session=True,  # not ended with PALHM's own process group
            )
        except OSError:
            os.close(write_fd)
            return cls(None, None)
        finally:
            os.close(read_fd)
        return cls(write_fd, proc)

    def tell(self, op: bytes, pgid: int) -> None:
        """``+`` a group PALHM started, ``-`` one it ended."""
        if self.fd is None or self.proc is None:
            return
        try:
            os.write(self.fd, b"%s%d\n" % (op, pgid))
        except OSError:  # the guardian died: go on without it
            self.proc = None


def end_groups(procs, grace: float = 5.0) -> None:
    """SIGTERM the groups of ``procs``, SIGKILL what is left after ``grace``,
    and reap the leaders."""
    for proc in procs:
        _killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:
        _killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_stragglers(procs) -> None:
    """After a pipeline ended: kill what its stages left running in their
    groups (a leader that exited may leave background children)."""
    for proc in procs:
        _killpg(proc.pid, signal.SIGKILL)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def describe_status(rc: int) -> str:
    """``exited with status 1`` / ``killed by SIGPIPE``."""
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited with status {rc}"
