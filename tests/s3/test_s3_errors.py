"""A user's mistake is one line naming the bucket or the endpoint, exit 1,
no traceback, nothing left behind; botocore is loaded only to use a bucket."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import free_port
from .util import PALHM, config, obj, run_palhm, s3_task


def one_line(result) -> str:
    print(result.stderr)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_no_such_bucket(tmp_path, bucket):
    task = s3_task(bucket, [obj("a", "echo", "x")])
    task["backend-param"]["bucket"] = "palhm-no-such-bucket"
    line = one_line(run_palhm("-q", "run", "backup", config=config(tmp_path, task)))
    assert line == (
        f"palhm: cannot use s3://palhm-no-such-bucket/palhm/backup at {bucket.endpoint}: "
        "the bucket does not exist"
    )


def test_access_denied(tmp_path, bucket, strict_s3_server):
    task = s3_task(bucket, [obj("a", "echo", "x")], **{"endpoint-url": strict_s3_server.endpoint})
    env = {"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1", "AWS_SECRET_ACCESS_KEY": "wrong"}
    line = one_line(run_palhm("-q", "run", "backup", config=config(tmp_path, task), env=env))
    assert line.startswith(
        f"palhm: cannot use s3://{bucket.name}/palhm/backup at {strict_s3_server.endpoint}: "
        "access denied"
    )
    assert "AKIAWRONG" not in line and "wrong" not in line  # no key in the message
    assert bucket.key_list() == []


def test_unreachable_endpoint(tmp_path, bucket):
    endpoint = f"http://127.0.0.1:{free_port()}"
    task = s3_task(bucket, [obj("a", "echo", "x")], **{"endpoint-url": endpoint})
    line = one_line(run_palhm("-q", "run", "backup", config=config(tmp_path, task)))
    assert line.startswith(
        f"palhm: cannot use s3://{bucket.name}/palhm/backup at {endpoint}: "
        "cannot reach the endpoint"
    )


def test_no_credentials(tmp_path, bucket):
    task = s3_task(bucket, [obj("a", "echo", "x")])
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    result = subprocess.run(
        [PALHM, "-q", "-f", str(config(tmp_path, task)), "run", "backup"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    line = one_line(result)
    assert line.startswith(f"palhm: cannot use s3://{bucket.name}/palhm/backup at ")
    assert line.endswith(
        "no AWS credentials found: set a profile, the AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY variables, or ~/.aws/credentials"
    )
    assert bucket.key_list() == []


def test_unknown_profile(tmp_path, bucket):
    task = s3_task(bucket, [obj("a", "echo", "x")], profile="palhm-no-such-profile")
    line = one_line(run_palhm("-q", "run", "backup", config=config(tmp_path, task)))
    assert f"s3://{bucket.name}/" in line and "profile (palhm-no-such-profile)" in line
    assert bucket.key_list() == []


@pytest.mark.parametrize(
    "params, problem",
    [
        ({"sse-kms-key-id": "k"}, 'sse-kms-key-id: needs sse "aws:kms"'),
        ({"endpoint-url": "127.0.0.1:9000"}, "endpoint-url: expected a URL"),
        ({"part-size": 1 << 20}, "part-size"),
        ({"checksum": "MD5"}, "checksum"),
        ({"colour": "blue"}, "colour: unknown key"),
    ],
)
def test_bad_parameters_are_config_errors(tmp_path, bucket, params, problem):
    task = s3_task(bucket, [obj("a", "echo", "x")], **params)
    result = run_palhm("run", "backup", config=config(tmp_path, task))
    assert result.returncode == 2, result.stderr
    assert problem in result.stderr and "Traceback" not in result.stderr


def test_botocore_is_loaded_only_to_use_a_bucket(tmp_path, bucket):
    conf = config(tmp_path, s3_task(bucket, [obj("a", "echo", "x")]))
    probe = (
        "import sys\n"
        "from palhm_core.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))\n"
    )
    for args in (
        ["--help"],
        ["plugins"],
        ["-f", str(conf), "plan", "backup"],
        ["-f", str(conf), "config"],
    ):
        result = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60
        )
        assert result.stdout.strip().splitlines()[-1] == "[]", (args, result.stdout, result.stderr)
    result = subprocess.run(
        [sys.executable, "-c", probe, "-f", str(conf), "run", "backup"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # botocore's client alone: boto3 would bring s3transfer, which PALHM does not use.
    assert result.stdout.strip().splitlines()[-1] == "['botocore']", result.stderr
