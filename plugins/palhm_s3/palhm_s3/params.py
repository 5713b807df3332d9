"""The parameters of the aws-s3 backend: their schema and their parsed form.

``nb-copy-limit``, ``root-size-limit`` and ``prefix`` are common to every
backend and added to the schema by the core.
"""

from __future__ import annotations

from dataclasses import dataclass

from palhm_s3.schedule import (
    DEFAULT_GROWTH_INTERVAL,
    DEFAULT_PART_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
)

CHECKSUMS = ["SHA256", "CRC32", "CRC32C", "SHA1", "none"]
SSE_MODES = ["AES256", "aws:kms", "aws:kms:dsse"]
RETRY_MODES = ["standard", "adaptive", "legacy"]
ADDRESSING_STYLES = ["auto", "virtual", "path"]
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0

SCHEMA = {
    "properties": {
        "bucket": {
            "type": "string",
            "minLength": 1,
            "description": "The bucket holding the copies. It must exist.",
        },
        "root": {
            "type": "string",
            "description": "The key prefix under which copies are kept (ROOT); leading and "
            "trailing '/' are ignored, so \"/palhm/backup\" gives keys "
            '"palhm/backup/PREFIX/PATH". "" or "/" keeps copies at the top of the bucket. '
            "A root belongs to one backup task.",
        },
        "profile": {
            "type": "string",
            "description": "The AWS profile (~/.aws/config, ~/.aws/credentials) to take "
            "credentials and settings from. Default: boto3's own chain (AWS_* variables, "
            "AWS_PROFILE, the default profile, instance or container roles).",
        },
        "region": {
            "type": "string",
            "description": "The region of the bucket (us-east-1 ...). Default: the profile's "
            "or AWS_REGION / AWS_DEFAULT_REGION.",
        },
        "endpoint-url": {
            "type": "string",
            "description": "The URL of an S3-compatible service instead of AWS (MinIO, Ceph, "
            "Cloudflare R2, Backblaze B2, Wasabi): https://host[:port].",
        },
        "addressing-style": {
            "enum": ADDRESSING_STYLES,
            "description": 'How the bucket is named in requests: "path" (endpoint/bucket/key, '
            'what most self-hosted servers need), "virtual" (bucket.endpoint/key) or "auto" '
            "(botocore decides; the default).",
        },
        "sink-storage-class": {
            "type": "string",
            "description": "The storage class objects are uploaded in (STANDARD, STANDARD_IA, "
            "ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR ...). Default: the bucket's "
            "(STANDARD on AWS).",
        },
        "rot-storage-class": {
            "type": "string",
            "description": "The storage class the objects are moved to once the copy is "
            "complete (GLACIER, DEEP_ARCHIVE ...), by server-side copy, so a failed run never "
            "leaves objects in archive classes. The manifest and SHA256SUMS stay readable. "
            "Default: objects stay in the sink-storage-class.",
        },
        "sse": {
            "enum": SSE_MODES,
            "description": 'Server-side encryption of what PALHM stores: "AES256" (SSE-S3), '
            '"aws:kms" (SSE-KMS, see sse-kms-key-id) or "aws:kms:dsse". Default: the '
            "bucket's default encryption.",
        },
        "sse-kms-key-id": {
            "type": "string",
            "description": 'The KMS key (id, ARN or alias) for sse "aws:kms" or '
            '"aws:kms:dsse". Default: the account\'s AWS-managed key for S3.',
        },
        "part-size": {
            "type": "integer",
            "minimum": MIN_PART_SIZE,
            "maximum": MAX_PART_SIZE,
            "description": "The size in bytes of the first parts of a multipart upload (at "
            f"least {MIN_PART_SIZE}, 5 MiB). A stream that ends within one part is stored "
            f"with a single PUT. Default {DEFAULT_PART_SIZE} (8 MiB). An object's alloc-size "
            "raises it for that object to the announced size in about 5,000 parts, which then "
            "grow only past the announced size.",
        },
        "part-growth-interval": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_PARTS,
            "description": "The part size doubles every this many parts (at most 5 GiB), so "
            "that 10,000 parts hold 5 TiB without alloc-size. Default "
            f"{DEFAULT_GROWTH_INTERVAL}; shortened when it would not reach 5 TiB. 0 keeps "
            "every part the same size, for servers that need it (Cloudflare R2); objects are "
            "then limited to part-size × 10,000.",
        },
        "max-concurrency": {
            "type": "integer",
            "minimum": 1,
            "maximum": 64,
            "description": "Parts of one object uploaded at once. Memory for each object "
            "being made is about (max-concurrency + 1) × the part size. Default 4.",
        },
        "checksum": {
            "enum": CHECKSUMS,
            "description": "The checksum S3 verifies each part and object with: SHA256 "
            '(default), CRC32, CRC32C or SHA1. "none" sends none with uploads, for servers '
            "that reject checksum headers (botocore still adds the CRC32 that S3 requires "
            "with DeleteObjects). Servers that accept but do not keep checksums are detected.",
        },
        "retry-mode": {
            "enum": RETRY_MODES,
            "description": "botocore's retry mode for throttling, 5xx and connection errors: "
            '"standard" (default, exponential backoff), "adaptive" (also rate-limits the '
            'client) or "legacy".',
        },
        "max-attempts": {
            "type": "integer",
            "minimum": 1,
            "maximum": 50,
            "description": "Attempts per request, the first included. Default 5.",
        },
        "connect-timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 3600,
            "description": "Seconds to wait for a connection to the server, per attempt. "
            f"Default {DEFAULT_CONNECT_TIMEOUT:g}.",
        },
        "read-timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 3600,
            "description": "Seconds a request may wait for the server to take or send a byte, "
            "per attempt: a server that stops answering fails a request after about "
            "max-attempts × (connect-timeout + read-timeout) seconds. Default "
            f"{DEFAULT_READ_TIMEOUT:g}.",
        },
    },
    "required": ["bucket", "root"],
}


@dataclass(frozen=True)
class Settings:
    """The backend's parameters, parsed and with their defaults."""

    bucket: str
    root: str
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    addressing_style: str | None = None
    sink_storage_class: str | None = None
    rot_storage_class: str | None = None
    sse: str | None = None
    sse_kms_key_id: str | None = None
    part_size: int = DEFAULT_PART_SIZE
    part_growth_interval: int = DEFAULT_GROWTH_INTERVAL
    max_concurrency: int = 4
    checksum: str | None = "SHA256"
    retry_mode: str = "standard"
    max_attempts: int = 5
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT

    @classmethod
    def parse(cls, params: dict, place) -> Settings:
        sse = params.get("sse")
        kms_key = params.get("sse-kms-key-id")
        if kms_key and not (sse or "").startswith("aws:kms"):
            raise (place / "sse-kms-key-id").error('needs sse "aws:kms" or "aws:kms:dsse"')
        endpoint = params.get("endpoint-url") or None
        if endpoint and not _is_url(endpoint):
            raise (place / "endpoint-url").error(
                f"expected a URL such as https://s3.example.com, got {endpoint!r}"
            )
        if any(ord(c) < 32 or ord(c) == 127 for c in params["root"]):
            raise (place / "root").error(
                "holds a control character, which many S3 servers refuse in keys"
            )
        checksum = params.get("checksum", "SHA256")
        return cls(
            bucket=params["bucket"],
            root=params["root"].strip("/"),
            profile=params.get("profile") or None,
            region=params.get("region") or None,
            endpoint_url=endpoint,
            addressing_style=params.get("addressing-style"),
            sink_storage_class=params.get("sink-storage-class") or None,
            rot_storage_class=params.get("rot-storage-class") or None,
            sse=sse,
            sse_kms_key_id=kms_key or None,
            part_size=params.get("part-size", DEFAULT_PART_SIZE),
            part_growth_interval=params.get("part-growth-interval", DEFAULT_GROWTH_INTERVAL),
            max_concurrency=params.get("max-concurrency", 4),
            checksum=None if checksum == "none" else checksum,
            retry_mode=params.get("retry-mode", "standard"),
            max_attempts=params.get("max-attempts", 5),
            connect_timeout=params.get("connect-timeout", DEFAULT_CONNECT_TIMEOUT),
            read_timeout=params.get("read-timeout", DEFAULT_READ_TIMEOUT),
        )

    def sse_args(self) -> dict[str, str]:
        """Encryption arguments of PutObject, CreateMultipartUpload, CopyObject."""
        args = {}
        if self.sse:
            args["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args


def _is_url(text: str) -> bool:
    """``scheme://host...`` that urllib can take apart (``http://[::1`` cannot)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return bool(parts.scheme and parts.netloc) and "\0" not in text
