"""A prefix generator whose names sort backwards: each new copy's PREFIX
sorts before the previous one's (the count of seconds until 2100). PALHM must
refuse to rotate with it."""

from datetime import datetime, timezone

from palhm_core.api import hookimpl

END = datetime(2100, 1, 1, tzinfo=timezone.utc)


class Countdown:
    name = "countdown"
    description = "Microseconds until 2100: later copies sort first (a test plugin)."
    schema = {"properties": {}}

    def __init__(self, params, place):
        pass

    def __call__(self, now: datetime) -> str:
        return f"{int((END - now).total_seconds() * 1e6):020d}"


@hookimpl
def palhm_prefix_generators():
    return [Countdown]
