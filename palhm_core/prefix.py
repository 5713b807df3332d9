"""The ``iso8601`` prefix generator: copies named by their UTC start time.

The default gives the format of ``date --utc --iso-8601=seconds``
(``2026-11-26T03:18:23+00:00``); ``timespec`` picks the precision and
``basic`` the ISO 8601 basic format without ``-`` and ``:``
(``20261126T031823+0000``) for filesystems and tools that refuse ``:``.
Both sort oldest first as strings, as every generator's names must:
:func:`check_order` stops rotation when a new copy's name does not.
"""

from __future__ import annotations

from datetime import datetime, timezone

from palhm_core.errors import TaskError
from palhm_core.hookspecs import hookimpl

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from palhm_core.backend import CopyInfo

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
            "tz": {
                "enum": ["utc"],
                "description": "The time zone: utc, the only one (as the original PALHM's "
                "configs write it): prefixes of local time would not sort oldest first.",
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


def check_order(prefix: str, copies: list[CopyInfo]) -> None:
    """Refuse to rotate after making copy ``prefix`` when a copy made before
    it (by the times in the manifests) sorts after it, among the copies that
    count (:func:`palhm_core.copies.own`): rotation deletes the copies that
    sort first and ``latest`` is the one that sorts last, so with a generator
    whose names do not grow, rotation would delete the newest copies. A copy
    that sorts after the new one and was also made after it (the clock was
    set back by less than the future tolerance) agrees with its name and is
    no error; future-dated copies do not count, as in rotation.

    :raises TaskError: naming the newest copy, before anything is deleted.
    """
    from palhm_core.copies import own
    from palhm_core.rotation import copy_time

    counted = own(copies)
    made = [copy_time(c) for c in counted if c.prefix == prefix]
    newer = sorted(
        c.prefix for c in counted if c.prefix > prefix and (not made or copy_time(c) < made[0])
    )
    if newer:
        raise TaskError(
            f"the new copy {prefix!r} sorts before copy {newer[-1]!r}, made earlier: the prefix "
            "generator must give names that sort oldest first; nothing is rotated"
        )


class OriginalDefault(Iso8601):
    """``"type": "default"``, as the original PALHM's sample configs write it:
    the original named every copy as ``date --utc --iso-8601=seconds`` does,
    which is what ``iso8601`` gives without parameters."""

    name = "default"
    description = "The original PALHM's naming: iso8601 with its defaults (seconds, UTC)."
    schema = {"properties": {}}


@hookimpl
def palhm_prefix_generators():
    return [Iso8601, OriginalDefault]
