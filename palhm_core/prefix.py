"""The ``iso8601`` prefix generator: copies named by their UTC start time.

The default gives the format of ``date --utc --iso-8601=seconds``
(``2026-11-26T03:18:23+00:00``); ``timespec`` picks the precision and
``basic`` the ISO 8601 basic format without ``-`` and ``:``
(``20261126T031823+0000``) for filesystems and tools that refuse ``:``.
Both sort oldest first as strings.
"""

from __future__ import annotations

from datetime import datetime, timezone

from palhm_core.hookspecs import hookimpl

TIMESPECS = {
    "date": None,
    "hours": "hours",
    "minutes": "minutes",
    "seconds": "seconds",
    "milliseconds": "milliseconds",
    "microseconds": "microseconds",
}


class Iso8601:
    name = "iso8601"
    description = "The copy's UTC start time in ISO 8601 (date --utc --iso-8601)."
    schema = {
        "properties": {
            "timespec": {
                "enum": list(TIMESPECS),
                "description": "Precision: date, hours, minutes, seconds (default), "
                "milliseconds or microseconds.",
            },
            "basic": {
                "type": "boolean",
                "description": "ISO 8601 basic format, without '-' and ':'. Default false.",
            },
        }
    }

    def __init__(self, params, place):
        self.timespec = params.get("timespec", "seconds")
        self.basic = params.get("basic", False)

    def __call__(self, now: datetime) -> str:
        now = now.astimezone(timezone.utc)
        spec = TIMESPECS[self.timespec]
        if spec is None:
            text = now.date().isoformat()
        else:
            text = now.isoformat(timespec=spec)
        if self.basic:
            date, _, rest = text.partition("T")
            text = date.replace("-", "") + ("T" + rest.replace(":", "") if rest else "")
        return text


@hookimpl
def palhm_prefix_generators():
    return [Iso8601]
