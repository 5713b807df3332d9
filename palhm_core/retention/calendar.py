"""The ``calendar`` retention policy: restic's ``forget --keep-*`` rules.

A copy is kept if any rule keeps it:

- ``last: N``: the N newest copies;
- ``hourly``, ``daily``, ``weekly``, ``monthly``, ``yearly: N``: going from
  the newest copy to the oldest, the newest copy of each hour (day, ISO week
  from Monday, month, year) that has copies, for the N newest such periods;
  periods are those of the wall clock in ``tz``. When a rule has fewer
  periods with copies than N, it also keeps the oldest copy ("oldest
  daily"), so that the history reaches as far back as it can;
- ``within: DURATION``: every copy made after the newest copy's time minus
  DURATION (not now: copies stop expiring when the backups stop running).

-1 for a count means every period ("unlimited" in restic).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from palhm_core.hookspecs import hookimpl
from palhm_core.retention import Dated, RetentionPolicy

#: rule -> the period of a local time it counts.
PERIODS = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: t.isocalendar()[:2],
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: t.year,
}
#: Each number of a duration has at most 6 digits (999999h is 114 years).
_DURATION = re.compile(
    r"(?:(\d{1,6})y)?(?:(\d{1,6})m)?(?:(\d{1,6})w)?(?:(\d{1,6})d)?(?:(\d{1,6})h)?"
)
_COUNT = {
    "type": "integer",
    "minimum": -1,
    "maximum": 1_000_000,
}


def _count(what: str) -> dict:
    return {**_COUNT, "description": f"{what}; -1 for all of them. Default 0."}


class CalendarPolicy(RetentionPolicy):
    name = "calendar"
    description = "Keep the newest copies and the newest copy of each hour, day, week, month, year."
    schema = {
        "properties": {
            "last": _count("Keep this many newest copies"),
            "hourly": _count("Keep the newest copy of each of this many last hours with copies"),
            "daily": _count("Keep the newest copy of each of this many last days with copies"),
            "weekly": _count(
                "Keep the newest copy of each of this many last ISO weeks (Monday to Sunday) "
                "with copies"
            ),
            "monthly": _count("Keep the newest copy of each of this many last months with copies"),
            "yearly": _count("Keep the newest copy of each of this many last years with copies"),
            "within": {
                "type": "string",
                "description": "Keep every copy made within this duration of the newest copy: "
                'years, months, weeks, days and hours, as "2d", "36h", "1y6m", "1w3d12h".',
            },
            "tz": {
                "type": "string",
                "description": "The time zone whose hours, days, weeks, months and years count, "
                'an IANA name such as "Europe/Berlin". Default UTC.',
            },
        }
    }

    def __init__(self, params, place):
        self.counts = {r: params.get(r, 0) for r in ("last", *PERIODS)}
        self.within_text = params.get("within")
        self.within = None
        if self.within_text is not None:
            self.within = parse_duration(self.within_text, place / "within")
        tz_name = params.get("tz", "UTC")
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            self.tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise (place / "tz").error(f"unknown time zone {tz_name!r}") from None
        if not any(self.counts.values()) and self.within is None:
            raise place.error(
                "keeps nothing: give at least one of last, hourly, daily, weekly, monthly, "
                "yearly, within"
            )

    def keep(self, copies: list[Dated], now: datetime) -> dict[str, list[str]]:
        newest_first = sorted(copies, key=lambda c: (c.time, c.prefix), reverse=True)
        left = {r: n for r, n in self.counts.items() if r in PERIODS and n}
        seen: dict[str, object] = {}
        cutoff = None
        if self.within is not None and newest_first:
            cutoff = self._cutoff(newest_first[0].time)
        kept: dict[str, list[str]] = {}
        for i, copy in enumerate(newest_first):
            reasons = []
            last = self.counts["last"]
            if last == -1 or i < last:
                reasons.append("last")
            local = copy.time.astimezone(self.tz)
            oldest = i == len(newest_first) - 1
            for rule in PERIODS:
                if not left.get(rule):
                    continue
                period = PERIODS[rule](local)
                if period != seen.get(rule):
                    reasons.append(rule)
                elif oldest:
                    reasons.append(f"oldest {rule}")
                else:
                    continue
                seen[rule] = period
                if left[rule] > 0:
                    left[rule] -= 1
            if cutoff is not None and copy.time > cutoff:
                reasons.append(f"within {self.within_text}")
            if reasons:
                kept[copy.prefix] = reasons
        return kept

    def _cutoff(self, newest: datetime) -> datetime:
        """The newest copy's time minus ``within``: years and months on the
        calendar of ``tz`` (the same day of the month, or its last day),
        weeks and days on its wall clock, hours exactly. Before year 1:
        the earliest time."""
        years, months, weeks, days, hours = self.within
        wall = newest.astimezone(self.tz).replace(tzinfo=None)
        year, month = divmod(wall.year * 12 + wall.month - 1 - years * 12 - months, 12)
        import calendar

        try:
            day = min(wall.day, calendar.monthrange(year, month + 1)[1])
            wall = wall.replace(year=year, month=month + 1, day=day)
            wall -= timedelta(days=weeks * 7 + days)
            return wall.replace(tzinfo=self.tz) - timedelta(hours=hours)
        except (ValueError, OverflowError):
            return datetime.min.replace(tzinfo=timezone.utc)


def parse_duration(text: str, place) -> tuple[int, int, int, int, int]:
    """``"1y6m"``, ``"2d"``, ``"36h"``: (years, months, weeks, days, hours)."""
    m = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m or not any(m.groups()):
        raise place.error(
            f"bad duration {text[:40]!r}: use years, months, weeks, days and hours (each at "
            'most 6 digits), as "2d", "36h", "1y6m", "1w3d12h"'
        )
    duration = tuple(int(g or 0) for g in m.groups())
    if not any(duration):
        raise place.error(f"{text!r} keeps nothing: give a duration above zero")
    return duration


@hookimpl
def palhm_retention_policies():
    return [CalendarPolicy]
