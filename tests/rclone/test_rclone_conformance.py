"""The backend conformance suite (:mod:`palhm_core.testing`) against the
rclone backend on a local directory and on ``rclone serve sftp``, ``serve
webdav`` and ``serve s3``, and against the aws-s3 backend on ``rclone serve
s3``, with files PALHM did not make beside the copies."""

from __future__ import annotations

import pytest
from palhm_rclone.backend import RcloneBackend

from palhm_core.testing import BackendConformance, Storage

from .conftest import PASSWORD, USER, fresh_root, plant_through, rclone_program


class TestRcloneLocal(BackendConformance):
    @pytest.fixture
    def storage(self, tmp_path, rclone_env):
        program = rclone_program()
        params = {"remote": f":local:{tmp_path}/root", "rclone": program}
        return Storage(
            lambda: RcloneBackend(params, Storage.place()), plant_through(program, params["remote"])
        )


class TestRcloneServed(BackendConformance):
    @pytest.fixture
    def storage(self, served):
        program = rclone_program()
        params = {"remote": fresh_root(served), "rclone": program}
        return Storage(
            lambda: RcloneBackend(params, Storage.place()), plant_through(program, params["remote"])
        )


class TestS3OnRcloneServe(BackendConformance):
    """aws-s3 on ``rclone serve s3`` (tests/s3 runs it on the moto server)."""

    @pytest.fixture
    def storage(self, s3_served, monkeypatch):
        from palhm_s3.backend import S3Backend

        served = s3_served
        for name, value in {
            "AWS_ACCESS_KEY_ID": USER,
            "AWS_SECRET_ACCESS_KEY": PASSWORD,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        bucket, _, root = fresh_root(served).rpartition(":")[2].partition("/")
        endpoint = served.remote.split("endpoint='", 1)[1].split("'", 1)[0]
        params = {"bucket": bucket, "root": root, "endpoint-url": endpoint}
        remote = f"{served.remote}{bucket}/{root}"
        return Storage(
            lambda: S3Backend(params, Storage.place()),
            plant_through(rclone_program(), remote),
        )
