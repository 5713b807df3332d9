"""Mistake: a schema referring to a document on the network, which every
config load would fetch."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class RemoteRef(Discard):
    name = "broken-remote-ref"
    schema = {
        "properties": {
            "port": {"$ref": "http://127.0.0.1:9/port.json"},
        }
    }


@hookimpl
def palhm_backends():
    return [RemoteRef]
