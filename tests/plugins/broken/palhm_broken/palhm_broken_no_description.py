"""Mistake: a parameter without a description."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class NoDescription(Discard):
    name = "broken-no-description"
    schema = {
        "properties": {
            "root": {"type": "string", "description": "Where copies go."},
            "depth": {"type": "integer"},
        }
    }


@hookimpl
def palhm_backends():
    return [NoDescription]
