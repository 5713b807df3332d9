"""Fixtures of the fault suite (its figures are printed by tests/conftest.py).

The S3 server and bucket helpers are the aws-s3 tests' own (tests/s3/conftest.py),
imported rather than copied; this suite starts servers of its own: one per
worker for the tests that leave it running (each with buckets of its own), and
one per test that stops or kills it.
"""

from __future__ import annotations

import os
import time

import pytest
from s3.conftest import SERVER, s3_env, start_server  # noqa: F401 - fixture

from .util import FaultBucket


def wait_answering(server, timeout: float = 30.0) -> None:
    client = server.client()
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_buckets()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def fault_s3_server(request, tmp_path_factory):
    """An S3 server of this suite's own, one per worker for the tests that
    leave it running (those that stop or kill a server start another)."""
    request.getfixturevalue("s3_env")
    server = start_server(SERVER, tmp_path_factory.mktemp("faults-s3"))
    try:
        wait_answering(server)
        yield server
    finally:
        server.stop()


_count = iter(range(1, 1 << 30))


@pytest.fixture
def fault_bucket(fault_s3_server) -> FaultBucket:
    return FaultBucket(fault_s3_server, f"palhm-faults-{next(_count)}-{os.getpid()}").create()
