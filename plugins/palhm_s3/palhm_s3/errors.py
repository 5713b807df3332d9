"""botocore's exceptions as one line for the administrator.

Every S3 call of the backend runs inside :class:`S3Errors`, which turns what
botocore raises into a :class:`palhm_core.BackendError` saying what PALHM was
doing, where, and what went wrong, in words rather than error codes where the
cause is a usual mistake (no such bucket, no credentials, access denied, the
endpoint unreachable). botocore is imported only when an error is raised.
"""

from __future__ import annotations

from contextlib import contextmanager

from palhm_core.api import BackendError

#: S3 error codes that mean the credentials or permissions are wrong.
DENIED = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AccountProblem",
    "403",
    "Forbidden",
}
NO_BUCKET = {"NoSuchBucket"}
NO_KEY = {"NoSuchKey", "404", "NotFound"}


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError``, else ``None``."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    return str(response.get("Error", {}).get("Code", "")) or None


def explain(exc: BaseException) -> str:
    """Why an S3 call failed, in words; the caller says what and where."""
    import botocore.exceptions as bx

    if isinstance(exc, bx.ClientError):
        code = error_code(exc) or "?"
        message = str(exc.response.get("Error", {}).get("Message", "")).strip()
        if code in NO_BUCKET:
            return "the bucket does not exist"
        if code in DENIED:
            detail = f" ({code}: {message})" if message and not code.isdigit() else ""
            return (
                f"access denied{detail}: check the credentials (profile, AWS_* variables) "
                "and the bucket's permissions"
            )
        if code == "InvalidObjectState":
            return (
                "the object is in an archive storage class (GLACIER, DEEP_ARCHIVE): "
                "restore it before reading"
            )
        return f"{code}: {message}" if message else code
    if isinstance(exc, bx.NoCredentialsError):
        return (
            "no AWS credentials found: set a profile, the AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY variables, or ~/.aws/credentials"
        )
    if isinstance(
        exc,
        (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ProxyConnectionError, bx.SSLError),
    ):
        return f"cannot reach the endpoint: {exc}"
    if isinstance(exc, (bx.ReadTimeoutError, bx.ConnectionClosedError, bx.HTTPClientError)):
        return f"the connection failed: {exc}"
    if isinstance(exc, (bx.ProfileNotFound, bx.PartialCredentialsError)):
        return str(exc)
    # botocore's parameter validation lists its problems one a line.
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


class S3Errors:
    """Turns botocore's exceptions into :class:`BackendError`."""

    @contextmanager
    def __call__(self, what: str):
        """Turn botocore's exceptions raised inside into ``what: why``;
        ``what`` names the bucket (an ``s3://`` URL) and where it is."""
        try:
            yield
        except BackendError:
            raise
        except Exception as e:
            if not _is_botocore(e):
                raise
            raise BackendError(f"{what}: {explain(e)}") from e


def _is_botocore(exc: BaseException) -> bool:
    import botocore.exceptions as bx

    return isinstance(exc, (bx.BotoCoreError, bx.ClientError))
