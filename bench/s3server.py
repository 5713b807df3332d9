"""moto's S3 server for the benches, counting every request it serves.

    python bench/s3server.py PORT

serves moto's S3 on 127.0.0.1:PORT, the way ``moto_server`` does (the same
WSGI application and request handler), wrapped in a counter of the S3
operations that reach it. A few extra paths under ``/_bench/`` drive it from
the bench scripts without going through S3 (so they are never counted):

- ``GET /_bench/counts``: ``{"ListObjectsV2": 100, ...}`` since the last reset;
- ``POST /_bench/reset``: zero the counters;
- ``POST /_bench/clear`` (JSON ``bucket``): remove every key and unfinished
  multipart upload of the bucket, or create it.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
from urllib.parse import parse_qs

ACCOUNT = "123456789012"


def operation(environ) -> str:
    """The S3 operation of a path-style request."""
    method = environ["REQUEST_METHOD"]
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    path = environ.get("PATH_INFO", "/").lstrip("/")
    has_key = "/" in path and path.split("/", 1)[1] != ""
    if method == "GET":
        if not path:
            return "ListBuckets"
        if "uploads" in query:
            return "ListMultipartUploads"
        if "uploadId" in query:
            return "ListParts"
        if not has_key:
            return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects/GetBucket*"
        return "GetObject"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "PUT":
        if not has_key:
            return "CreateBucket/PutBucket*"
        if "partNumber" in query:
            return "UploadPart"
        if "HTTP_X_AMZ_COPY_SOURCE" in environ:
            return "CopyObject"
        return "PutObject"
    if method == "POST":
        if "delete" in query:
            return "DeleteObjects"
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "POST"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        return "DeleteObject" if has_key else "DeleteBucket"
    return method


class Counting:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_bench/"):
            return self.control(path[len("/_bench/") :], environ, start_response)
        op = operation(environ)
        with self.lock:
            self.counts[op] += 1
        return self.app(environ, start_response)

    def control(self, what, environ, start_response):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
            if what == "counts":
                with self.lock:
                    reply = dict(self.counts)
            elif what == "reset":
                with self.lock:
                    self.counts.clear()
                reply = {}
            elif what == "clear":
                reply = clear(body["bucket"])
            else:
                raise KeyError(what)
            status = "200 OK"
        except Exception as e:  # a bench bug: say it
            reply, status = {"error": repr(e)}, "500 Internal Server Error"
        data = json.dumps(reply).encode()
        start_response(status, [("Content-Type", "application/json")])
        return [data]


def _backend():
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT]["aws"]


def clear(bucket: str) -> dict:
    backend = _backend()
    if bucket not in backend.buckets:
        backend.create_bucket(bucket, "us-east-1")
        return {"keys": 0}
    b = backend.get_bucket(bucket)
    names = list(b.keys.keys())
    for name in names:
        backend.delete_object(bucket, name)
    for upload_id in list(b.multiparts):
        backend.abort_multipart_upload(bucket, upload_id)
    return {"keys": len(names)}


def main() -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    port = int(sys.argv[1])
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    app = Counting(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
