"""Mistake: the backend's schema defines keys the core adds to every backend."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class Reserved(Discard):
    name = "broken-reserved"
    schema = {
        "properties": {
            "prefix": {"type": "string", "description": "A fixed PREFIX."},
            "nb-copy-limit": {"type": "integer", "description": "Copies kept."},
        }
    }


@hookimpl
def palhm_backends():
    return [Reserved]
