"""The ``aws-sns`` notifier and the boot report's ``aws-sns`` MUA, through
the moto server: the message reaches an SQS queue subscribed to the topic."""

from __future__ import annotations

import json
import os

import pytest
from conftest import backup_task, inline, run_palhm, write_config

from .conftest import REGION


@pytest.fixture
def topic(s3_server):
    """A topic with an SQS queue subscribed (raw delivery): its ARN and a
    function returning the messages the queue got."""
    if s3_server.kind != "moto":
        pytest.skip(f"SNS needs the moto server; PALHM_TEST_S3_SERVER is {s3_server.kind}")
    import boto3

    session = boto3.session.Session(region_name=REGION)
    sns = session.client("sns", endpoint_url=s3_server.endpoint)
    sqs = session.client("sqs", endpoint_url=s3_server.endpoint)
    name = f"palhm-{id(sns):x}"
    arn = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)

    def received() -> list[dict]:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return [json.loads(m["Body"]) for m in got.get("Messages", ())]

    return arn, received


def test_a_failed_run_publishes_to_the_topic(tmp_path, s3_server, topic):
    arn, received = topic
    config = write_config(
        tmp_path,
        {
            "notify": [{"type": "aws-sns", "topics": [arn], "endpoint-url": s3_server.endpoint}],
            "tasks": [
                backup_task(
                    "db",
                    root=str(tmp_path / "root"),
                    objects=[{"path": "x", "pipeline": [inline("false")]}],
                )
            ],
        },
    )
    result = run_palhm("run", "db", config=config)
    assert result.returncode == 1
    assert "notifier" not in result.stderr
    (note,) = received()
    assert note["Subject"].endswith("task db FAILED")
    assert "exit status: 1" in note["Message"]
    assert "'false' exited with status 1" in note["Message"]


def test_a_topic_that_does_not_exist_is_a_warning(tmp_path, s3_server):
    config = write_config(
        tmp_path,
        {
            "notify": [
                {
                    "type": "aws-sns",
                    "topics": [f"arn:aws:sns:{REGION}:123456789012:none"],
                    "endpoint-url": s3_server.endpoint,
                    "on": ["success"],
                    "timeout": 5,
                }
            ],
            "tasks": [{"id": "r", "type": "routine", "routine": [inline("true")]}],
        },
    )
    result = run_palhm("run", "r", config=config)
    assert result.returncode == 0
    assert "notifier aws-sns (1 topic): could not send the success notification" in result.stderr


def test_the_boot_report_through_aws_sns(tmp_path, s3_server, topic):
    arn, received = topic
    config = write_config(
        tmp_path,
        {
            "boot-report": {
                "mua": "aws-sns",
                "mua-param": {"region": REGION, "endpoint-url": s3_server.endpoint},
                "mail-to": [arn],
                "subject": "booted: {hostname}",
            }
        },
    )
    result = run_palhm("boot-report", config=config)
    assert result.returncode == 0, result.stderr
    (note,) = received()
    assert note["Subject"] == f"booted: {os.uname().nodename}"
    assert "boot-report:" in note["Message"]
    assert f"hostname: {os.uname().nodename}" in note["Message"]
