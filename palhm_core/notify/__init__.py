"""Notifications: telling a person how a run went.

A *notifier* is a class registered by the ``palhm_notifiers`` hook, selected
by ``type`` in an entry of a ``notify`` list (at the top level of the config,
for the run, or in a task, for that task)::

    "notify": [
        {"type": "mail", "on": ["failure"], "to": ["root"]},
        {"type": "webhook", "preset": "healthchecks", "url": "https://hc-ping.com/UUID"}
    ]

``on`` picks the events (``start``, ``success``, ``failure``; each notifier
has its own default) and ``timeout`` bounds every wait of one delivery. A
notifier that fails is a warning: it never changes the run's exit status.

What a notifier is given is a :class:`Message`: a subject, a plain-text body
and a JSON document, all with secrets already hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from palhm_core.errors import PalhmError

if TYPE_CHECKING:
    from palhm_core.config.place import Place

#: The events a run notifies of, in the order they happen.
EVENTS = ("start", "success", "failure")
#: Seconds one delivery may take when the config says nothing.
DEFAULT_TIMEOUT = 10.0
#: The longest ``timeout`` a notifier may be given.
MAX_TIMEOUT = 300

#: The keys the core handles for every notifier, beside the notifier's own.
COMMON_KEYS = {
    "on": {
        "type": "array",
        "items": {"enum": list(EVENTS)},
        "uniqueItems": True,
        "description": "The events to send: start, success, failure. Default: the notifier's "
        "own (mail, aws-sns, ntfy: failure; a JSON webhook: success and failure; "
        "healthchecks: all three).",
    },
    "timeout": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": MAX_TIMEOUT,
        "description": f"Seconds one delivery may take, retries included (at most "
        f"{MAX_TIMEOUT}). Default {DEFAULT_TIMEOUT:g}.",
    },
}


class NotifyError(PalhmError):
    """A notification could not be delivered: a warning, never a failed run."""


@dataclass(frozen=True)
class Message:
    """One notification, ready to send.

    :param event: ``start``, ``success``, ``failure``, or ``boot`` for the
        boot report.
    :param subject: one line (a mail's subject, an SNS subject, a title).
    :param text: the plain-text body.
    :param doc: the same as a JSON document (host, task, outcome,
        exit-status, error, copies, rotated, seconds, ...).
    """

    event: str
    subject: str
    text: str
    doc: dict[str, Any]


class Notifier:
    """Base class of notifiers.

    Subclasses set ``name``, ``description`` and ``schema`` (their keys beside
    ``type``, ``on`` and ``timeout``) and implement :meth:`send`. The
    constructor runs when the config loads: raise ``(place / key).error(...)``
    for a bad value, so that ``palhm config check`` finds it. Import heavy
    libraries in :meth:`send`, not at module import.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    schema: ClassVar[dict[str, Any]] = {"properties": {}}
    #: The events sent when the config gives no ``on``.
    default_on: ClassVar[tuple[str, ...]] = ("failure",)
    #: True when :meth:`send` bounds every wait itself and must run in the
    #: calling thread (it starts a command, which must not inherit a helper
    #: thread's blocked signals); else the core runs it in a helper thread
    #: that it stops waiting for after :attr:`timeout`.
    bounds_itself: bool = False

    def __init__(self, params: dict[str, Any], place: Place) -> None:
        self.place = place
        #: Seconds one delivery may take, every retry included.
        self.timeout: float = params.get("timeout", DEFAULT_TIMEOUT)

    def events(self, params: dict[str, Any]) -> frozenset[str]:
        """The events this notifier sends: ``on``, else :attr:`default_on`."""
        return frozenset(params.get("on", self.default_on))

    def describe(self) -> str:
        """Where it sends, for log lines: never a password or a token."""
        return self.name

    def send(self, message: Message) -> None:
        """Deliver ``message`` within :attr:`timeout` seconds; raise
        :class:`NotifyError` (or any exception) when it cannot be."""
        raise NotImplementedError


@dataclass(frozen=True)
class Subscription:
    """A configured notifier and the events it sends."""

    notifier: Notifier
    on: frozenset[str]


def subscribe(params: dict[str, Any], place: Place, plugins) -> Subscription:
    """The notifier of one entry of a ``notify`` list (valid against the
    schema)."""
    cls = plugins.lookup("notifier", params["type"], place / "type")
    notifier = cls(params, place)
    return Subscription(notifier, notifier.events(params))


#: The longest reason a warning line of a notifier quotes (a server's
#: answer may be of any length).
ERROR_MAX = 500
#: Seconds a delivery is given beyond its notifier's timeout before it is
#: left behind (its own waits are bounded by the timeout already).
GRACE = 2.0


def bounded(fn, seconds: float, what: str) -> None:
    """Call ``fn()`` in a helper thread and wait at most ``seconds``; a call
    still running then is left behind (a daemon thread) and reported as a
    :class:`NotifyError`, so that no server can hold a run up."""
    import threading

    from palhm_core.signals import start_helper_thread

    done = threading.Event()
    failure: list[BaseException] = []

    def call() -> None:
        try:
            fn()
        except BaseException as e:
            failure.append(e)
        finally:
            done.set()

    start_helper_thread(call, f"palhm-notify {what}")
    if not done.wait(seconds):
        raise NotifyError(f"no answer within {seconds:g} s")
    if failure:
        raise failure[0]


def send_bounded(notifier: Notifier, message: Message) -> None:
    """``notifier.send(message)``, ended within its timeout (and
    :data:`GRACE`): in a helper thread, unless it bounds itself."""
    if notifier.bounds_itself:
        notifier.send(message)
    else:
        bounded(lambda: notifier.send(message), notifier.timeout + GRACE, notifier.describe())


def deliver(subs: list[Subscription], message: Message, log) -> None:
    """Send ``message`` through every subscription that wants its event; a
    failure is one warning line and the others are still tried. Each
    delivery ends within its notifier's timeout (and :data:`GRACE`)."""
    for sub in subs:
        if message.event not in sub.on:
            continue
        try:
            send_bounded(sub.notifier, message)
        except Exception as e:
            log.warning(
                "notifier %s: could not send the %s notification: %s",
                sub.notifier.describe(),
                message.event,
                failure_text(e),
            )
        else:
            log.debug(
                "notifier %s: sent the %s notification", sub.notifier.describe(), message.event
            )


def failure_text(error: BaseException) -> str:
    """Why a delivery failed, as one line: secrets hidden, at most
    :data:`ERROR_MAX` characters of it."""
    from palhm_core.redact import redact

    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > ERROR_MAX:
        text = text[:ERROR_MAX] + "..."
    return redact(text)
