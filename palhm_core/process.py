"""Starting child processes so that none outlives PALHM.

Every child is started in a process group of its own, so that PALHM, not the
terminal, decides when it stops (a terminal's Ctrl-C reaches PALHM's own group
only), and ending the group also ends whatever the child started. The groups
stay in PALHM's session: a session of its own per command would also be a
scheduling group of its own where the kernel groups sessions (autogroup), and
a pipeline's commands, each in a group competing with every other session,
were measured to run up to twice slower than the same shell pipeline on a busy
machine. (So a command that reads the terminal in an interactive run is
stopped by SIGTTIN, as a background job is, until its ``timeout`` or a
Ctrl-C.) :class:`Children` keeps every group PALHM started;
:meth:`Children.stop` ends them all (SIGTERM, then SIGKILL after a grace
period) and refuses new ones, which is what rollback and signals use. When a
child exits, what it left running in its group is killed with it
(:meth:`Children.wait`), so a step cannot leave background jobs behind.
A group is signalled only while its leader is not yet reaped (exits are
watched through a pidfd, which reaps nothing): a reaped leader's PID, and so
its group's ID, may already belong to someone else.

A command that starts a session or process group of its own (a daemon, as an
init script started by an update routine) leaves PALHM's groups on purpose and
is left alone. Under systemd the unit's cgroup ends everything when the unit stops.

PALHM killed with SIGKILL (the OOM killer, ``kill -9``) cannot end its
children itself, so a small guardian process (:class:`_Guardian`), started
with the first child, does it: PALHM tells it each group it starts and ends
through a pipe, and when that pipe closes with groups still listed, PALHM is
gone and the guardian ends them (SIGTERM, SIGKILL after a grace period).
Otherwise a dump would run on after PALHM's death, holding its locks and
writing into a copy that no longer exists. The guardian learns of a group
once ``Popen`` returned: a SIGKILL in the instant between a command's start
and that leaves the command running (seen once, on a machine at load 15).
Under systemd, the unit's cgroup ends it with the rest.
"""

from __future__ import annotations

import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref

from palhm_core.errors import Interrupted, TaskError

#: How a command gets a process group of its own: in PALHM's session where
#: Python can (3.11 and newer), else in a session of its own (Python 3.10).
if sys.version_info >= (3, 11):
    OWN_GROUP = {"process_group": 0}
else:
    OWN_GROUP = {"start_new_session": True}

#: Seconds a process group has between SIGTERM and SIGKILL when a command
#: timed out.
GRACE = 2.0
#: The longest single wait for a file descriptor, in milliseconds (poll's
#: argument is a C int); longer waits loop.
MAX_POLL_MS = 3_600_000


class Stopping(TaskError):
    """A child was about to start while PALHM is stopping after a failure."""

    def __init__(self):
        super().__init__("not starting another command: stopping after a failure")


class Child:
    """A command PALHM started, in a process group of its own.

    The group is only ever signalled while the leader is not reaped: until
    then the leader (running, or a zombie) holds its PID, so the group's ID
    cannot name anyone else's processes. :meth:`reap` kills what is left in
    the group and only then collects the leader's exit status.
    """

    def __init__(self, proc: subprocess.Popen, label: str):
        self.proc = proc
        self.pid = proc.pid
        self.label = label
        #: Readable once the leader has exited; waiting on it reaps nothing.
        self.pidfd = os.pidfd_open(proc.pid)
        weakref.finalize(self, os.close, self.pidfd)
        self._lock = threading.Lock()
        self.returncode: int | None = None

    def exited(self) -> bool:
        """The leader has exited (it may still be waiting to be reaped)."""
        return self.returncode is not None or _readable(self.pidfd, 0)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the group, unless the leader was already reaped."""
        with self._lock:
            if self.returncode is None:
                _killpg(self.pid, sig)

    def reap(self) -> int:
        """Kill what is left in the group (the leader too, if it still runs),
        then collect the leader's exit status: negative for a signal."""
        with self._lock:
            if self.returncode is None:
                _killpg(self.pid, signal.SIGKILL)
                self.returncode = self.proc.wait()
            return self.returncode


class TimedOut(TaskError):
    """A command ran past its ``timeout``."""


class Children:
    """Every command a run started: :meth:`spawn` one, :meth:`wait` for it
    (with an optional timeout), :meth:`stop` them all."""

    def __init__(self):
        self._lock = threading.Lock()
        self._live: set[Child] = set()
        self.stopping = False
        #: The stop signal that made PALHM stop, if one did.
        self.signum: int | None = None
        self._guardian: _Guardian | None = None

    def spawn(self, argv, *, stdin, stdout, stderr, env=None) -> Child:
        """Start ``argv`` (no shell) in a new process group of PALHM's session."""
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
                    **OWN_GROUP,
                )
            except OSError as e:
                raise TaskError(f"cannot run {argv[0]!r}: {e.strerror or e}") from None
            # The guardian first: until it knows the group, a kill -9 of
            # PALHM would leave the group running.
            self._guardian.tell(b"+", proc.pid)
            try:
                child = Child(proc, argv[0].rsplit("/", 1)[-1])
            except OSError as e:  # no pidfd (out of descriptors): it cannot be watched
                _killpg(proc.pid, signal.SIGKILL)  # not reaped yet: still its group
                proc.wait()
                self._guardian.tell(b"-", proc.pid)
                raise TaskError(f"cannot watch {argv[0]!r}: {e.strerror or e}") from None
            self._live.add(child)
        return child

    def wait(self, child: Child, timeout: float | None = None) -> int:
        """Wait for ``child`` to exit, kill what it left running in its
        group, and forget it. Past ``timeout`` seconds its group is ended
        (SIGTERM, SIGKILL after a grace period) and :class:`TimedOut` raised."""
        if not wait_exits([child], timeout):
            end_groups([child], grace=GRACE)
            self.forget(child)
            raise TimedOut(f"{child.label!r} timed out after {timeout:g} s")
        rc = child.reap()
        self.forget(child)
        return rc

    def forget(self, child: Child) -> None:
        with self._lock:
            if child in self._live and self._guardian is not None:
                self._guardian.tell(b"-", child.pid)
            self._live.discard(child)

    def stop(self, grace: float = 5.0, signum: int | None = None) -> None:
        """End every child's process group: SIGTERM, then SIGKILL after
        ``grace`` seconds. No child starts afterwards: :meth:`spawn` raises
        :class:`Interrupted` when ``signum`` (a stop signal) was given here or
        before, else :class:`Stopping`."""
        with self._lock:
            self.stopping = True
            if signum is not None and self.signum is None:
                self.signum = signum
            children = list(self._live)
        end_groups(children, grace)
        for child in children:
            self.forget(child)


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


def end_groups(children, grace: float = 5.0) -> None:
    """SIGTERM the groups of ``children`` (and SIGCONT, so that a stopped
    process gets it), SIGKILL what is left once the leaders exited or after
    ``grace`` seconds, and reap the leaders."""
    for child in children:
        child.signal_group(signal.SIGTERM)
        child.signal_group(signal.SIGCONT)
    wait_exits(children, grace)
    for child in children:
        child.reap()


def wait_exits(children, timeout: float | None) -> bool:
    """Wait until every leader of ``children`` has exited, reaping none;
    False if ``timeout`` seconds passed first (None: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for child in children:
        while not child.exited():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            _readable(child.pidfd, left)
    return True


def _readable(fd: int, timeout: float | None) -> bool:
    """Wait up to ``timeout`` seconds (None: no limit) until ``fd`` is readable."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    ms = None if timeout is None else max(0, min(math.ceil(timeout * 1000), MAX_POLL_MS))
    return bool(poller.poll(ms))


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
