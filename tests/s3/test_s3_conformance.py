"""The backend conformance suite (:mod:`palhm_core.testing`) against the
aws-s3 backend on the test S3 server, with keys PALHM did not make beside
its copies."""

from __future__ import annotations

import pytest
from palhm_s3.backend import S3Backend

from palhm_core.testing import BackendConformance, Storage

ROOT = "palhm/conformance"


class TestS3(BackendConformance):
    @pytest.fixture
    def storage(self, bucket):
        params = {"bucket": bucket.name, "root": ROOT, "endpoint-url": bucket.endpoint}

        def plant():
            planted = {
                "outside/file": b"beside ROOT",
                f"{ROOT}/loose-key": b"right in ROOT",
                f"{ROOT}/someone/else": b"a prefix PALHM did not make",
            }
            for key, data in planted.items():
                bucket.put(key, data)

            def intact():
                for key, data in planted.items():
                    assert bucket.get(key) == data, key

            return intact

        return Storage(lambda: S3Backend(params, Storage.place()), plant)


def test_a_copy_killed_between_its_manifest_and_its_commit_is_a_leftover(bucket):
    from palhm_s3.backend import MARKER_NAME

    from palhm_core.manifest import MANIFEST_NAME

    base = f"{ROOT}/2026-01-01T00:00:00+00:00"
    for name in ("obj", MANIFEST_NAME, MARKER_NAME):
        bucket.put(f"{base}/{name}")
    params = {"bucket": bucket.name, "root": ROOT, "endpoint-url": bucket.endpoint}
    backend = S3Backend(params, Storage.place())
    backend.open()
    try:
        (copy,) = backend.list_copies()
        assert not copy.complete
        (line,) = backend.clean_leftovers()
        assert "incomplete copy" in line
        assert bucket.key_list(ROOT) == []
    finally:
        backend.close()
