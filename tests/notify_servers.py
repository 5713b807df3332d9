"""Servers on 127.0.0.1 that notifications go to, started by the tests: an
HTTP server that records every request (or answers 500, or never answers),
an SMTP server (aiosmtpd) that keeps every mail, and fake ``mailx`` and
``sendmail`` programs that record their argv and stdin."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class HttpRecorder:
    """Answers every request with ``status`` (never while ``holding``; with
    a ``Location`` header when ``location`` is set), recording it first."""

    status: int = 200
    #: The status line's text (default: the usual one for ``status``).
    reason: str | None = None
    location: str | None = None
    requests: list[Request] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    holding: bool = False

    def start(self) -> HttpRecorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                recorder.requests.append(
                    Request(
                        "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                    )
                )
                if recorder.holding:
                    recorder.released.wait(60)  # a server that stopped answering
                    return
                self.send_response(recorder.status, recorder.reason)
                if recorder.location:
                    self.send_header("Location", recorder.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST  # a redirect followed turns a POST into a GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


def wait_for(condition, what: str, seconds: float = 30.0):
    """Poll ``condition()`` until it is true, at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        time.sleep(0.05)


class SmtpRecorder:
    """An aiosmtpd server on 127.0.0.1 keeping every mail it receives:
    (envelope sender, recipients, parsed message). ``tls_context`` offers
    STARTTLS; ``auth`` ({user: password}) requires a login."""

    def __init__(self, tls_context=None, auth: dict[str, str] | None = None):
        self.mails: list = []
        self.tls_context = tls_context
        self.auth = auth
        self.logins: list[str] = []

    def start(self) -> SmtpRecorder:
        from email import message_from_bytes, policy

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        recorder = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                msg = message_from_bytes(envelope.original_content, policy=policy.default)
                recorder.mails.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and recorder.auth is not None
                and recorder.auth.get(auth_data.login.decode()) == auth_data.password.decode()
            )
            if ok:
                recorder.logins.append(auth_data.login.decode())
            return AuthResult(success=ok)

        kwargs = {}
        if self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context, require_starttls=True)
        if self.auth is not None:
            kwargs.update(
                authenticator=authenticator,
                auth_required=True,
                auth_require_tls=self.tls_context is not None,
            )
        # aiosmtpd connects to its own port once started: it needs a real one.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl."""
    import subprocess

    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


FAKE_MUA = """#!{python}
# Records how it was run: one JSON line per call (argv and stdin).
import json, sys
data = sys.stdin.buffer.read().decode()
with open({log!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv, "stdin": data}}) + "\\n")
sys.exit({status})
"""


def fake_mua(bindir: Path, name: str, status: int = 0) -> Path:
    """Write a program ``name`` into ``bindir`` that records its argv and
    stdin into ``bindir/name.log`` and exits with ``status``."""
    bindir.mkdir(parents=True, exist_ok=True)
    log = bindir / f"{name}.log"
    prog = bindir / name
    prog.write_text(FAKE_MUA.format(python=sys.executable, log=str(log), status=status))
    prog.chmod(0o755)
    return log


def calls(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def path_with(bindir: Path) -> dict[str, str]:
    return {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
