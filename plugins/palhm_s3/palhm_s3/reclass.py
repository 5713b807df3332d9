"""Moving a stored object to another storage class by a server-side copy
onto itself: CopyObject up to 5 GiB, a multipart copy (UploadPartCopy) above,
as S3 requires. The bytes never pass through PALHM."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from palhm_core.api import BackendError
from palhm_s3.errors import S3Errors
from palhm_s3.schedule import MAX_PART_SIZE, MAX_PARTS, MiB

log = logging.getLogger("palhm")

#: The largest object CopyObject copies in one request.
MAX_COPY_SIZE = 5 << 30
#: Part size of multipart copies (raised when 10,000 parts would not do).
COPY_PART_SIZE = 512 * MiB


def copy_part_size(size: int, part_size: int = COPY_PART_SIZE) -> int:
    """The part size that copies ``size`` bytes in at most 10,000 parts."""
    needed = -(-size // MAX_PARTS)
    return min(MAX_PART_SIZE, max(part_size, -(-needed // MiB) * MiB))


def change_storage_class(
    client: Any,
    bucket: str,
    key: str,
    size: int,
    storage_class: str,
    *,
    extra: dict[str, str],
    errors: S3Errors,
    on_start: Callable[[str, str], None] = lambda key, upload_id: None,
    threshold: int = MAX_COPY_SIZE,
    part_size: int = COPY_PART_SIZE,
) -> None:
    """Copy ``key`` (``size`` bytes) onto itself in ``storage_class``,
    keeping its metadata; ``extra`` are the encryption arguments."""
    where = f"s3://{bucket}/{key}"
    what = f"cannot move {where} to storage class {storage_class}"
    if size <= threshold:  # one request
        with errors(what):
            client.copy_object(**_whole_copy(bucket, key, storage_class), **extra)
        return
    with errors(what):
        head = client.head_object(Bucket=bucket, Key=key)
        upload_id = client.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            StorageClass=storage_class,
            Metadata=head.get("Metadata", {}),
            ContentType=head.get("ContentType", "binary/octet-stream"),
            **extra,
        )["UploadId"]
    on_start(key, upload_id)
    try:
        with errors(what):
            step = copy_part_size(size, part_size)
            parts = _copy_parts(client, bucket, key, upload_id, head["ETag"], size, step, what)
            client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        log.debug("%s: moved to %s in %d copied parts", where, storage_class, len(parts))
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception as e:  # rollback aborts it again
            log.debug("%s: cannot abort the copy: %s", where, e)
        raise


def _whole_copy(bucket: str, key: str, storage_class: str) -> dict[str, Any]:
    """The arguments of the CopyObject that moves ``key`` onto itself."""
    return {
        "Bucket": bucket,
        "Key": key,
        "CopySource": {"Bucket": bucket, "Key": key},
        "StorageClass": storage_class,
        "MetadataDirective": "COPY",
    }


def _copy_parts(client, bucket, key, upload_id, etag, size, step, what) -> list[dict[str, Any]]:
    """Copy ``key`` onto the multipart upload ``upload_id`` in parts of
    ``step`` bytes, each only while the object still has ``etag``."""
    parts = []
    for number, start in enumerate(range(0, size, step), 1):
        end = min(size, start + step) - 1
        reply = client.upload_part_copy(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            CopySource={"Bucket": bucket, "Key": key},
            CopySourceRange=f"bytes={start}-{end}",
            CopySourceIfMatch=etag,
        )
        part_etag = reply.get("CopyPartResult", {}).get("ETag")
        if not part_etag:
            raise BackendError(
                f"{what}: the server does not support UploadPartCopy, needed for objects "
                "above 5 GiB"
            )
        parts.append({"ETag": part_etag, "PartNumber": number})
    return parts
