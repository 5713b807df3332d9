"""S3 servers on 127.0.0.1 for the benches: moto (through :mod:`s3server`,
which counts requests) and ``rclone serve s3`` over a local directory, with
the ``AWS_*`` environment every client run gets (nothing from the machine's
own ~/.aws)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import benchlib as bl

KEY_ID = "palhm-bench-key"
SECRET = "palhm-bench-secret"
ENV = {
    "AWS_ACCESS_KEY_ID": KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(
        self, kind: str, workdir: Path, *, vfs_cache: bool = True, args: tuple[str, ...] = ()
    ):
        """``args``: more options of ``rclone serve s3``."""
        self.kind = kind
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        env = dict(os.environ)
        if kind == "moto":
            argv = [sys.executable, str(bl.HERE / "s3server.py"), str(self.port)]
        else:
            self.data = workdir / "data"
            self.data.mkdir(exist_ok=True)
            env["RCLONE_CONFIG"] = str(workdir / "rclone.conf")  # none: the local backend only
            # Parts go to the VFS cache on disk: the default streaming mode fails
            # a multipart upload whose part waits too long on a loaded machine.
            # Without it (rotation: small objects), deletes are faster.
            cache = ["--vfs-cache-mode", "writes", "--cache-dir", str(workdir / "cache")]
            argv = [
                str(bl.BIN / "rclone"),
                "serve",
                "s3",
                "--auth-key",
                f"{KEY_ID},{SECRET}",
                "--addr",
                f"127.0.0.1:{self.port}",
                *(cache if vfs_cache else []),
                *args,
                str(self.data),
            ]
        self.log = workdir / f"{kind}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} exited {self.proc.returncode}: see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{kind} did not listen within 60 s") from None
                time.sleep(0.05)

    def bucket(self, name: str) -> None:
        """Create ``name`` empty (or empty it)."""
        if self.kind == "moto":
            self.control("clear", bucket=name)
        else:
            import shutil

            shutil.rmtree(self.data / name, ignore_errors=True)
            (self.data / name).mkdir()

    def control(self, what: str, **body) -> dict:
        """A ``/_bench/`` call to the moto server (see :mod:`s3server`)."""
        req = urllib.request.Request(
            f"{self.endpoint}/_bench/{what}",
            data=json.dumps(body).encode(),
            method="POST" if what != "counts" else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=600) as reply:
            return json.loads(reply.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu(self) -> float:
        """CPU seconds (user + system) the server has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        """The server's peak RSS so far (VmHWM)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0


def tmpfs_dir() -> Path | None:
    """A writable directory on a tmpfs (``PALHM_BENCH_TMPFS``, default
    /dev/shm), or None."""
    path = Path(os.environ.get("PALHM_BENCH_TMPFS", "/dev/shm")).resolve()
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1:3] for line in f]
    except OSError:
        return None
    # The mount that holds path: the longest mount point above it.
    above = [(m, kind) for m, kind in mounts if path == Path(m) or Path(m) in path.parents]
    if not above or max(above, key=lambda a: len(a[0]))[1] != "tmpfs":
        return None
    return path if os.access(path, os.W_OK) else None


def backend_param(server: Server, bucket: str, root: str, **extra) -> dict:
    return {
        "bucket": bucket,
        "root": root,
        "endpoint-url": server.endpoint,
        "addressing-style": "path",
        "prefix": {"type": "iso8601", "timespec": "microseconds"},
        **extra,
    }
