"""The ``aws-sns`` notifier: a message published to Amazon SNS topics, as the
original PALHM's ``aws-sns`` MUA sent its boot report (palhm-s3 provides it
because it brings boto3).

``topics`` are topic ARNs; ``profile``, ``region`` and ``endpoint-url`` as for
the aws-s3 backend (boto3's own credential chain by default). boto3 is
imported when a message is sent. The subject is cut to SNS's 100 characters.
"""

from __future__ import annotations

from typing import Any

from palhm_core.api import Message, Notifier, NotifyError

#: The longest subject SNS takes.
SUBJECT_MAX = 100


class SnsNotifier(Notifier):
    name = "aws-sns"
    description = "A message published to Amazon SNS topics (boto3)."
    schema = {
        "properties": {
            "topics": {
                "type": "array",
                "items": {"type": "string", "pattern": "^arn:"},
                "minItems": 1,
                "description": "The ARNs of the topics to publish to.",
            },
            "profile": {
                "type": "string",
                "description": "The AWS profile. Default: boto3's own credential chain.",
            },
            "region": {
                "type": "string",
                "description": "The AWS region. Default: each topic ARN's own.",
            },
            "endpoint-url": {
                "type": "string",
                "pattern": "^https?://",
                "description": "An SNS endpoint other than AWS's.",
            },
        },
        "required": ["topics"],
    }

    def __init__(self, params, place):
        super().__init__(params, place)
        self.topics: list[str] = params["topics"]
        self.profile: str | None = params.get("profile")
        self.region: str | None = params.get("region")
        self.endpoint_url: str | None = params.get("endpoint-url")
        for i, arn in enumerate(self.topics):
            if len(arn.split(":")) < 6:
                raise (place / "topics" / i).error(f"not a topic ARN: {arn!r}")

    def describe(self) -> str:
        return f"aws-sns ({len(self.topics)} topic{'s' if len(self.topics) > 1 else ''})"

    def send(self, message: Message) -> None:
        subject = _subject(message.subject)
        for arn in self.topics:
            client = self._client(self.region or arn.split(":")[3] or None)
            try:
                client.publish(TopicArn=arn, Subject=subject, Message=message.text)
            except Exception as e:  # botocore's errors: one line, whatever the kind
                raise NotifyError(f"publishing to {arn}: {e}") from None

    def _client(self, region: str | None) -> Any:
        import boto3
        from botocore.config import Config

        timeout = max(1, int(self.timeout))
        try:
            session = boto3.session.Session(profile_name=self.profile)
            return session.client(
                "sns",
                region_name=region,
                endpoint_url=self.endpoint_url,
                config=Config(
                    connect_timeout=timeout,
                    read_timeout=timeout,
                    retries={"mode": "standard", "max_attempts": 2},
                ),
            )
        except Exception as e:
            raise NotifyError(f"cannot use SNS: {e}") from None


def _subject(text: str) -> str:
    """SNS subjects: ASCII printable, at most 100 characters, one line."""
    text = "".join(c if " " <= c <= "~" else "?" for c in " ".join(text.split()))
    return text[:SUBJECT_MAX]
