"""The ``mail`` notifier: a mail through the local MTA or an SMTP server.

``via`` picks how:

- ``sendmail`` (default): the message, headers included, on the stdin of
  ``sendmail -t -oi`` (Postfix, Exim, OpenSMTPD, msmtp and nullmailer all
  provide one);
- ``mailx``: ``mailx -s SUBJECT [-S OPTION]... RECIPIENT...`` with the body
  on stdin, as the original PALHM sent its boot report;
- ``smtp``: straight to ``smtp-host`` with :mod:`smtplib`, STARTTLS by
  default, logging in as ``user`` with the password read from
  ``password-file`` or the variable ``password-env`` when it is sent (never
  written in the config, so never in a log or ``config show``).

The program runs without a shell and is killed when it outlasts ``timeout``.
"""

from __future__ import annotations

import os
import signal
import subprocess

from palhm_core.hookspecs import hookimpl
from palhm_core.notify import Message, Notifier, NotifyError

#: Where sendmail lives when it is not on PATH (cron's PATH lacks /usr/sbin).
SENDMAIL_PLACES = ("/usr/sbin/sendmail", "/usr/lib/sendmail")
#: stderr kept from a failing program, for the warning line.
STDERR_TAIL = 300


class MailNotifier(Notifier):
    name = "mail"
    description = "A mail through the local MTA (sendmail, mailx) or an SMTP server."
    schema = {
        "properties": {
            "to": {
                "type": "array",
                "items": {
                    "type": "string",
                    "pattern": "^[^-\\s]",
                    "description": "A recipient, not starting with - or a blank.",
                },
                "minItems": 1,
                "description": "The recipients (addresses, or local users such as root).",
            },
            "from": {
                "type": "string",
                "description": "The sender address. Default: the MTA's (sendmail, mailx), "
                "palhm@HOST for smtp.",
            },
            "via": {
                "enum": ["sendmail", "mailx", "smtp"],
                "description": "sendmail (default): sendmail -t; mailx: mailx -s; smtp: an "
                "SMTP server (smtp-host).",
            },
            "program": {
                "type": "string",
                "minLength": 1,
                "description": "The sendmail or mailx program. Default: found on PATH (and "
                "/usr/sbin/sendmail).",
            },
            "mailx-options": {
                "type": "array",
                "items": {"type": "string"},
                "description": "mailx settings, each passed as -S OPTION (via mailx).",
            },
            "smtp-host": {"type": "string", "minLength": 1, "description": "The SMTP server."},
            "smtp-port": {
                "type": "integer",
                "minimum": 1,
                "maximum": 65535,
                "description": "Its port. Default 587 (465 with security ssl, 25 with none).",
            },
            "security": {
                "enum": ["starttls", "ssl", "none"],
                "description": "starttls (default): STARTTLS before logging in; ssl: TLS from "
                "the start; none: plain text (only to a server on this host).",
            },
            "ca-file": {
                "type": "string",
                "description": "PEM certificates to trust for the server instead of the system's.",
            },
            "user": {"type": "string", "description": "The SMTP login; needs a password."},
            "password-file": {
                "type": "string",
                "description": "A file whose first line is the SMTP password.",
            },
            "password-env": {
                "type": "string",
                "description": "An environment variable holding the SMTP password.",
            },
        },
        "required": ["to"],
    }

    def __init__(self, params, place):
        super().__init__(params, place)
        self.to: list[str] = params["to"]
        self.sender: str | None = params.get("from")
        self.via: str = params.get("via", "sendmail")
        self.program: str | None = params.get("program")
        self.mailx_options: list[str] = params.get("mailx-options", [])
        self.host: str | None = params.get("smtp-host")
        self.security: str = params.get("security", "starttls")
        default_port = {"starttls": 587, "ssl": 465, "none": 25}[self.security]
        self.port: int = params.get("smtp-port", default_port)
        self.ca_file: str | None = params.get("ca-file")
        self.user: str | None = params.get("user")
        self.password_file: str | None = params.get("password-file")
        self.password_env: str | None = params.get("password-env")
        self.bounds_itself = self.via != "smtp"
        for i, address in enumerate(self.to):
            _check_address(address, place / "to" / i)
        if self.sender is not None:
            _check_address(self.sender, place / "from")
        smtp_only = ("smtp-host", "smtp-port", "security", "ca-file", "user")
        smtp_only += ("password-file", "password-env")
        if self.via == "smtp":
            if not self.host:
                raise (place / "smtp-host").error("required when via is smtp")
            for key in ("program", "mailx-options"):
                if key in params:
                    raise (place / key).error(f"is for via sendmail or mailx, not {self.via}")
            if self.password_file and self.password_env:
                raise (place / "password-env").error("give password-file or password-env, not both")
            if (self.password_file or self.password_env) and not self.user:
                raise (place / "user").error("required with a password")
            if self.user and not (self.password_file or self.password_env):
                raise (place / "user").error("needs password-file or password-env")
            if self.user and self.security == "none" and not _this_host(self.host):
                raise (place / "security").error(
                    "none would send the password in plain text: use starttls or ssl, "
                    "or none only to a server on this host (localhost, 127.0.0.1, ::1)"
                )
        else:
            for key in smtp_only:
                if key in params:
                    raise (place / key).error(f"is for via smtp, not {self.via}")
            if self.via == "sendmail" and self.mailx_options:
                raise (place / "mailx-options").error("is for via mailx, not sendmail")

    def describe(self) -> str:
        if self.via == "smtp":
            return f"mail via smtp {self.host}:{self.port}"
        return f"mail via {self.via}"

    def send(self, message: Message) -> None:
        if self.via == "smtp":
            self._smtp(message)
        elif self.via == "mailx":
            argv = [self._program("mailx"), "-s", message.subject]
            for opt in self.mailx_options:
                argv += ["-S", opt]
            if self.sender:
                argv += ["-r", self.sender]
            self._run([*argv, *self.to], message.text.encode())
        else:
            self._run([self._program("sendmail"), "-t", "-oi"], self._mime(message).as_bytes())

    def _program(self, name: str) -> str:
        if self.program:
            return self.program
        import shutil

        found = shutil.which(name)
        if found is None and name == "sendmail":
            found = next((p for p in SENDMAIL_PLACES if os.access(p, os.X_OK)), None)
        if found is None:
            raise NotifyError(f"no {name} program on PATH (set program)")
        return found

    def _run(self, argv: list[str], data: bytes) -> None:
        """Run the program in a session of its own; when it outlasts the
        timeout, its whole process group is killed (an MTA's own children
        too, such as a queue program stuck on a lock)."""
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            raise NotifyError(f"cannot run {argv[0]}: {e.strerror or e}") from None
        with proc:
            try:
                _, err = proc.communicate(data, timeout=self.timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
                raise NotifyError(f"{argv[0]} did not finish within {self.timeout:g} s") from None
        if proc.returncode != 0:
            said = err.decode(errors="replace").strip()[-STDERR_TAIL:]
            raise NotifyError(
                f"{argv[0]} exited with status {proc.returncode}" + (f": {said}" if said else "")
            )

    def _mime(self, message: Message):
        from email.message import EmailMessage
        from email.utils import formatdate, make_msgid

        mail = EmailMessage()
        mail["Subject"] = message.subject
        mail["To"] = ", ".join(self.to)
        if self.sender or self.via == "smtp":
            mail["From"] = self.sender or f"palhm@{message.doc.get('host') or os.uname().nodename}"
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = make_msgid(domain=os.uname().nodename)
        mail["Auto-Submitted"] = "auto-generated"
        mail.set_content(message.text)
        return mail

    def _password(self) -> str:
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise NotifyError(f"password-env: variable {self.password_env} is not set")
            return value
        try:
            with open(self.password_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as e:
            raise NotifyError(f"password-file {self.password_file}: {e.strerror or e}") from None

    def _smtp(self, message: Message) -> None:
        import smtplib
        import ssl

        context = ssl.create_default_context(cafile=self.ca_file)
        try:
            if self.security == "ssl":
                server = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                server = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with server:
                if self.security == "starttls":
                    server.starttls(context=context)
                if self.user:
                    server.login(self.user, self._password())
                server.send_message(self._mime(message))
        except smtplib.SMTPException as e:
            raise NotifyError(f"SMTP {self.host}:{self.port}: {_smtp_error(e)}") from None
        except (OSError, ssl.SSLError) as e:
            raise NotifyError(f"SMTP {self.host}:{self.port}: {e.strerror or e}") from None


def _this_host(host: str) -> bool:
    """``host`` names this host: localhost, or a loopback address."""
    import ipaddress

    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_address(address: str, place) -> None:
    """No line break in an address: it would end the header it is in."""
    if any(c < " " or c == "\x7f" for c in address):
        raise place.error("a line break or control character in an address")


def _smtp_error(e) -> str:
    code = getattr(e, "smtp_code", None)
    text = getattr(e, "smtp_error", b"")
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return f"{code} {text}".strip() if code else str(e) or type(e).__name__


@hookimpl
def palhm_notifiers():
    return [MailNotifier]
