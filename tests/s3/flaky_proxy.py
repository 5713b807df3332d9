"""A reverse proxy on 127.0.0.1 in front of the test S3 server that answers
the first attempt of chosen requests with an error (503 SlowDown, 500
InternalError), the way S3 throttles and fails, and forwards everything else
unchanged. It checks that botocore's retries, as the backend configures
them, carry an upload through. It also logs every request it sees, so a
test can count what PALHM asks of the server."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}

ERRORS = {
    503: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
}


def first_attempt_fails(method: str, path: str) -> int | None:
    """The error status for the first attempt of a request, or None: every
    part upload is throttled once, every single PUT and every multipart
    completion fails once."""
    if method == "PUT" and "partNumber=" in path:
        return 503
    if method == "PUT" and "?" not in path:
        return 500
    if method == "POST" and "uploadId=" in path:
        return 500
    return None


def never_fails(method: str, path: str) -> None:
    return None


class FlakyProxy:
    def __init__(self, upstream: str, fails=first_attempt_fails):
        self.upstream = urlsplit(upstream)
        self.seen: set[tuple[str, str]] = set()
        self.injected: list[tuple[int, str, str]] = []
        #: ``(method, path)`` of every request, in the order they came.
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.requests.append((self.command, self.path))
                status = fails(self.command, self.path)
                if status is not None:
                    with proxy.lock:
                        first = (self.command, self.path) not in proxy.seen
                        proxy.seen.add((self.command, self.path))
                        if first:
                            proxy.injected.append((status, self.command, self.path))
                    if first:
                        code, message = ERRORS[status]
                        payload = (
                            '<?xml version="1.0" encoding="UTF-8"?>\n'
                            f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
                        ).encode()
                        self.send_response(status)
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=120
                )
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    reply = conn.getresponse()
                    data = reply.read()
                    self.send_response(reply.status, reply.reason)
                    for k, v in reply.getheaders():
                        if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    if self.command != "HEAD":
                        self.send_header("Content-Length", str(len(data)))
                    else:
                        self.send_header("Content-Length", reply.getheader("Content-Length", "0"))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
