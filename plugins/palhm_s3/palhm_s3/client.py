"""Making the S3 client. The only module that makes one, and only when a
backend is opened: ``palhm --help``, ``palhm plugins`` and runs of other
backends never load botocore. The client is botocore's own, made without
boto3: importing boto3 imports s3transfer too, which PALHM does not use
(0.03-0.05 s of CPU in every run)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from palhm_s3.errors import S3Errors
from palhm_s3.params import Settings


def parse_timestamp(value: str) -> datetime:
    """A time in an S3 answer. Listings carry one per key (LastModified), and
    botocore's own parser (dateutil) took half the CPU of listing a root of
    100,000 keys; ISO 8601, what listings use, is parsed by the standard
    library, anything else (HTTP dates in headers) as botocore would."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        from botocore.utils import parse_timestamp as botocore_parse

        return botocore_parse(value)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def make_client(settings: Settings, errors: S3Errors, pool_size: int, where: str) -> Any:
    """A low-level S3 client (thread-safe) for ``settings``: boto3's
    ``client("s3")``, with the same credential chain and profiles."""
    import botocore.session
    from botocore.config import Config

    s3_options: dict[str, Any] = {}
    if settings.addressing_style:
        s3_options["addressing_style"] = settings.addressing_style
    options: dict[str, Any] = {
        "retries": {"mode": settings.retry_mode, "max_attempts": settings.max_attempts},
        "max_pool_connections": pool_size,
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
        "s3": s3_options,
    }
    if settings.checksum == "SHA256":
        # The part's SHA-256 travels in a signed header (x-amz-checksum-sha256)
        # that S3 checks against the body, so the body is bound to the
        # signature already; over plain http botocore would otherwise hash
        # every byte once more to sign it (over https it already does not).
        s3_options["payload_signing_enabled"] = False
    if settings.checksum is None:
        # Only where S3 requires one (DeleteObjects): for servers that reject the
        # checksum headers botocore sends by default.
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    with errors(f"cannot use {where}"):
        session = botocore.session.Session(profile=settings.profile)
        session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=parse_timestamp
        )
        return session.create_client(
            "s3",
            region_name=settings.region,
            endpoint_url=settings.endpoint_url,
            config=Config(**options),
        )
