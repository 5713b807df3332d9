"""The ``stdout`` notifier: the message printed on PALHM's standard output.

The subject, a blank line and the body, as the original PALHM's ``stdout``
MUA printed its boot report (with its recipients after the subject, when the
boot report names them). For trying a configuration, or for a wrapper that
forwards PALHM's output itself.
"""

from __future__ import annotations

import sys

from palhm_core.hookspecs import hookimpl
from palhm_core.notify import Message, Notifier


class StdoutNotifier(Notifier):
    name = "stdout"
    description = "Print the message (subject, blank line, body) on PALHM's standard output."
    schema = {
        "properties": {
            "to": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Recipients, printed after the subject (for the boot report).",
            }
        }
    }
    bounds_itself = True

    def __init__(self, params, place):
        super().__init__(params, place)
        self.to: list[str] = params.get("to", [])

    def send(self, message: Message) -> None:
        head = [message.subject]
        if self.to:
            head.append(" ".join(self.to))
        sys.stdout.write("\n".join([*head, "", message.text.rstrip("\n"), ""]))
        sys.stdout.flush()


@hookimpl
def palhm_notifiers():
    return [StdoutNotifier]
