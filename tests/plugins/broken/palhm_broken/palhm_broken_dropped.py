"""Mistake: a schema rule beside ``properties`` and ``required`` (here
"one of the two"), which the config schema would not keep."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class Dropped(Discard):
    name = "broken-dropped"
    schema = {
        "type": "object",
        "properties": {
            "host": {"type": "string", "description": "A host name."},
            "socket": {"type": "string", "description": "A socket path."},
        },
        "oneOf": [{"required": ["host"]}, {"required": ["socket"]}],
    }


@hookimpl
def palhm_backends():
    return [Dropped]
