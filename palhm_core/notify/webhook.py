"""The ``webhook`` notifier: an HTTP POST, with presets for ping services.

``preset`` picks what is sent:

- ``json`` (default): the message's JSON document (see
  :mod:`palhm_core.notify.message`) to ``url``;
- ``healthchecks``: a Healthchecks-style ping (healthchecks.io, its
  self-hosted servers, and services that copy its API): ``url/start`` when the
  task starts, ``url`` when it succeeds, ``url/fail`` when it fails, with the
  plain-text message as the body, which the service keeps as the ping's log;
- ``ntfy``: the plain-text message to an ntfy topic URL, with its subject as
  the ``Title`` and a higher ``Priority`` for failures.

A request that cannot connect, times out or gets a 5xx or 429 answer is
tried again, at most ``retries`` more times, all within ``timeout``
seconds. A redirect is not followed (it would carry the headers, such as
``Authorization``, to wherever the server says): it is a failure naming the
answer. Log lines name only the URL's scheme and host: a ping URL's path is
its secret, and ``Authorization`` headers are hidden by ``config show``.
"""

from __future__ import annotations

import json
import re
import time

from palhm_core.hookspecs import hookimpl
from palhm_core.notify import EVENTS, Message, Notifier, NotifyError

PRESETS = ("json", "healthchecks", "ntfy")
#: The events each preset sends when ``on`` is not given.
PRESET_EVENTS = {
    "json": ("success", "failure"),
    "healthchecks": EVENTS,
    "ntfy": ("failure",),
}
#: Healthchecks-style ping paths, appended to ``url``.
PING_PATHS = {"start": "/start", "success": "", "failure": "/fail", "boot": ""}
#: The first wait between two attempts; it doubles after each.
BACKOFF = 0.5
USER_AGENT = "PALHM notifier"
#: An HTTP header name (a token of RFC 9110).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class WebhookNotifier(Notifier):
    name = "webhook"
    description = "An HTTP POST: a JSON document, a Healthchecks-style ping or an ntfy message."
    schema = {
        "properties": {
            "url": {
                "type": "string",
                "pattern": "^https?://[^/?#]+",
                "description": "The http:// or https:// URL (for healthchecks, the check's "
                "ping URL; for ntfy, the topic's URL).",
            },
            "preset": {
                "enum": list(PRESETS),
                "description": "json (default): POST the JSON document; healthchecks: ping "
                "url/start, url, url/fail; ntfy: POST the text with a title.",
            },
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "HTTP headers added to the request (such as Authorization).",
            },
            "retries": {
                "type": "integer",
                "minimum": 0,
                "maximum": 10,
                "description": "Attempts after the first when the server cannot be reached or "
                "answers 5xx or 429, within timeout. Default 2.",
            },
        },
        "required": ["url"],
    }

    def __init__(self, params, place):
        super().__init__(params, place)
        self.preset: str = params.get("preset", "json")
        self.url: str = params["url"]
        _check_url(self.url, place / "url")
        if self.preset == "healthchecks":
            self.url = self.url.rstrip("/")
        self.headers: dict[str, str] = params.get("headers", {})
        for name, value in self.headers.items():
            _check_header(name, value, place / "headers")
        self.retries: int = params.get("retries", 2)

    def events(self, params):
        return frozenset(params.get("on", PRESET_EVENTS[self.preset]))

    def describe(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        host = parts.hostname or "?"
        if parts.port:
            host += f":{parts.port}"
        return f"webhook ({self.preset}) {parts.scheme}://{host}"

    def request(self, message: Message) -> tuple[str, bytes, dict[str, str]]:
        """The URL, body and headers of ``message``'s request."""
        if self.preset == "healthchecks":
            url = self.url + PING_PATHS[message.event]
            return url, message.text.encode(), {"Content-Type": "text/plain; charset=utf-8"}
        if self.preset == "ntfy":
            headers = {
                "Title": _latin1(message.subject),
                "Priority": "high" if message.event == "failure" else "default",
                "Tags": {"failure": "warning", "success": "white_check_mark"}.get(
                    message.event, "information_source"
                ),
                "Content-Type": "text/plain; charset=utf-8",
            }
            return self.url, message.text.encode(), headers
        body = json.dumps({"subject": message.subject, **message.doc}).encode()
        return self.url, body, {"Content-Type": "application/json"}

    def send(self, message: Message) -> None:
        import urllib.error
        import urllib.request

        url, body, headers = self.request(message)
        url, auth = _split_userinfo(url)
        headers = {"User-Agent": USER_AGENT, **headers, **auth, **self.headers}
        opener = urllib.request.build_opener(_no_redirects())
        deadline = time.monotonic() + self.timeout
        wait = BACKOFF
        for attempt in range(self.retries + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                raise NotifyError(f"no answer within {self.timeout:g} s")
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with opener.open(req, timeout=left) as answer:
                    answer.read(1 << 16)
                return
            except urllib.error.HTTPError as e:
                problem = f"HTTP {e.code} {e.reason}"
                if 300 <= e.code < 400:
                    raise NotifyError(f"{problem}: redirect not followed (set url)") from None
                if e.code < 500 and e.code != 429:
                    raise NotifyError(problem) from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                problem = str(getattr(reason, "strerror", None) or reason)
            if attempt == self.retries:
                break
            if time.monotonic() + wait >= deadline:
                raise NotifyError(f"{problem}; no time left within {self.timeout:g} s to retry")
            time.sleep(wait)
            wait *= 2
        tries = self.retries + 1
        raise NotifyError(f"{problem} (after {tries} attempt{'s' if tries > 1 else ''})")


def _check_url(url: str, place) -> None:
    """A URL urllib can send to (printable ASCII: anything else is written
    percent-encoded, a host name in punycode); the error never shows it (its
    path may be a secret)."""
    bad = next((c for c in url if c.isspace() or not " " < c < "\x7f"), None)
    if bad is not None:
        raise place.error(f"{bad!r} in the URL: write it percent-encoded (such as %20)")
    from urllib.parse import urlsplit

    try:
        port = urlsplit(url).port
    except ValueError:
        port = 0
    if port == 0:
        raise place.error("the URL's port is not a number from 1 to 65535")


def _check_header(name: str, value: str, place) -> None:
    """A header http.client can send; the error never shows the value (it
    may be a token)."""
    if not _HEADER_NAME.fullmatch(name):
        raise place.error(f"{name!r} is not an HTTP header name (letters, digits and -)")
    if any((c < " " and c != "\t") or c == "\x7f" for c in value):
        raise place.error(f"the value of {name} holds a line break or control character")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise place.error(f"the value of {name} holds a character outside Latin-1") from None


def _no_redirects():
    """A urllib handler that follows no redirect: the 3xx answer is an
    ``HTTPError``."""
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            return None

    return NoRedirects()


def _split_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """``https://user:password@host/...`` as the URL without them and a
    basic ``Authorization`` header, which urllib does not make itself."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 address
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    header = {"Authorization": "Basic " + base64.b64encode(creds).decode()}
    return urlunsplit(parts._replace(netloc=netloc)), header


def _latin1(text: str) -> str:
    """HTTP header values are Latin-1: anything else becomes ``?``."""
    return text.encode("latin-1", "replace").decode("latin-1")


@hookimpl
def palhm_notifiers():
    return [WebhookNotifier]
