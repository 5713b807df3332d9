"""A PostgreSQL server of the test session's own, for tests that back up a
real database with ``pg_dump``.

The server programs come from the machine (Debian package ``postgresql``,
which ``.ci/run`` installs when missing): the newest
``/usr/lib/postgresql/*/bin``, else ``initdb`` on PATH. :func:`start` makes a
cluster in a new temporary directory with ``initdb`` and runs ``postgres``
as a child process that listens only on a Unix socket in that directory,
under a free port number, with ``trust`` authentication for the role
``postgres``. PostgreSQL refuses to run as root: as root, the cluster
belongs to the user ``postgres`` (else ``nobody``) and the server runs as
that user; otherwise as the user running the tests.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: What the tests run: the server, its set-up, and the client programs.
PROGRAMS = ("initdb", "postgres", "pg_isready", "pg_dump", "pg_restore", "psql")
#: The database role the tests connect as.
ROLE = "postgres"


class Unavailable(Exception):
    """PostgreSQL cannot be had on this machine; the message says why."""


def bindir() -> Path:
    """The directory of the newest PostgreSQL server programs installed."""

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path))

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        found.append(os.path.dirname(on_path))
    for directory in found:
        if all(os.access(os.path.join(directory, p), os.X_OK) for p in PROGRAMS):
            return Path(directory)
    raise Unavailable(
        f"PostgreSQL programs ({', '.join(PROGRAMS)}) are not installed: "
        "Debian package postgresql (apt-get install postgresql)"
    )


def server_user() -> pwd.struct_passwd | None:
    """Whom the server runs as when the tests run as root (None otherwise)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise Unavailable("running as root, and there is no user postgres or nobody to run it as")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Postgres:
    """A running server and the means to talk to it."""

    bindir: Path
    #: The temporary directory of the cluster, the socket and the log.
    top: Path
    port: int
    proc: subprocess.Popen

    @property
    def sockdir(self) -> str:
        return str(self.top)

    def program(self, name: str) -> str:
        return str(self.bindir / name)

    def connection(self, database: str) -> list[str]:
        """The arguments of a client program to reach ``database``."""
        return ["-h", self.sockdir, "-p", str(self.port), "-U", ROLE, "-d", database]

    def psql(self, database: str, sql: str) -> str:
        """Run ``sql`` in ``database``; its unaligned output."""
        done = subprocess.run(
            [self.program("psql"), *self.connection(database), "-v", "ON_ERROR_STOP=1", "-XAtq"],
            input=sql,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str) -> str:
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        return name

    def log(self) -> str:
        try:
            return (self.top / "server.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL if it does not end in 30 s;
        the directory is removed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.top, ignore_errors=True)


def _as_user(user: pwd.struct_passwd | None) -> dict:
    """``subprocess`` arguments that run a child as ``user``."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def start(timeout: float = 60.0) -> Postgres:
    """Make a cluster and start its server; raises :class:`Unavailable`
    when PostgreSQL is not installed, RuntimeError when it does not start."""
    programs = bindir()
    user = server_user()
    # In /tmp: a socket's path is limited to 107 bytes, and the server's user
    # must reach the directory (TMPDIR may be long, or private to root).
    top = Path(tempfile.mkdtemp(prefix="palhm-pg-", dir="/tmp"))
    if user is not None:
        os.chown(top, user.pw_uid, user.pw_gid)
    as_user = _as_user(user)
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    data = top / "data"
    init = subprocess.run(
        [str(programs / "initdb"), "-D", str(data), "-U", ROLE, "--auth=trust"]
        + ["--encoding=UTF8", "--locale=C", "--no-sync"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        **as_user,
    )
    if init.returncode != 0:
        shutil.rmtree(top, ignore_errors=True)
        raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr.strip()}")
    port = free_port()
    with open(top / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [str(programs / "postgres"), "-D", str(data), "-k", str(top), "-p", str(port)]
            + ["-c", "listen_addresses=", "-c", "fsync=off", "-c", "shared_buffers=16MB"]
            + ["-c", "max_connections=20"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            **as_user,
        )
    server = Postgres(programs, top, port, proc)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log = server.log()
            server.stop()
            raise RuntimeError(f"postgres exited with {proc.returncode}:\n{log}")
        ready = subprocess.run(
            [str(programs / "pg_isready"), "-q", "-h", str(top), "-p", str(port)],
            env=env,
            timeout=30,
        )
        if ready.returncode == 0:
            return server
        if time.monotonic() > deadline:
            log = server.log()
            server.stop()
            raise RuntimeError(
                f"postgres did not accept connections within {timeout:.0f} s:\n{log}"
            )
        time.sleep(0.1)
