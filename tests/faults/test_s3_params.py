"""Odd aws-s3 parameters (NUL characters, a malformed endpoint URL, a bad
port, an unknown profile, an invalid bucket name, root escaping with ``..``)
against the running server: refused when the config loads, or the run fails
with one line; never a traceback, never a key outside the bucket's ROOT."""

from __future__ import annotations

import pytest
from conftest import inline, write_config

from .util import FIGURES, one_error_line, palhm

CASES = {
    "bucket with a NUL": {"bucket": "palhm\0x"},
    "invalid bucket name": {"bucket": "B_ad..name"},
    "root with a NUL": {"root": "r\0x"},
    "root climbing out": {"root": "../../x"},
    "region with a NUL": {"region": "us\0"},
    "unknown profile": {"profile": "palhm-faults-no-such-profile"},
    "endpoint: broken IPv6": {"endpoint-url": "http://[::1"},
    "endpoint: port out of range": {"endpoint-url": "http://127.0.0.1:99999"},
    "endpoint: port not a number": {"endpoint-url": "http://127.0.0.1:x"},
    "endpoint: NUL": {"endpoint-url": "http://127.0.0.1:1/\0"},
    "endpoint: nothing listens": {"endpoint-url": "http://127.0.0.1:9", "max-attempts": 1},
    "kms key with a NUL": {"sse": "aws:kms", "sse-kms-key-id": "\0"},
    "storage class with a line separator": {"sink-storage-class": "NOPE\u2028"},
    "rotation class with a NUL": {"rot-storage-class": "GLACIER\0"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_odd_s3_parameters(tmp_path, fault_bucket, case):
    fault_bucket.put("outside/keep", b"keep")
    before = fault_bucket.objects()
    params = {
        "bucket": fault_bucket.name,
        "root": "palhm",
        "endpoint-url": fault_bucket.endpoint,
        **CASES[case],
    }
    task = {
        "id": "backup",
        "type": "backup",
        "backend": "aws-s3",
        "backend-param": params,
        "objects": [{"path": "x", "pipeline": [inline("echo", "x")]}],
    }
    conf = write_config(tmp_path, {"vl": 2, "tasks": [task]})
    result = palhm("run", "backup", config=conf)
    FIGURES.trials += 1
    if result.returncode == 0:
        # Taken as it is: then the copy is under ROOT, nowhere else.
        added = set(fault_bucket.objects()) - set(before)
        root = params["root"].strip("/")
        assert added and all(k.startswith(f"{root}/") for k in added), added
        return
    assert result.returncode in (1, 2), result.stderr
    one_error_line(result.stderr)
    assert fault_bucket.objects() == before
