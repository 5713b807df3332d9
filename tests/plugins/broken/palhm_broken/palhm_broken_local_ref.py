"""Mistake: a schema referring to a definition the config schema does not
have, which would break every config load."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class LocalRef(Discard):
    name = "broken-local-ref"
    schema = {"properties": {"port": {"$ref": "#/$defs/nosuch"}}}


@hookimpl
def palhm_backends():
    return [LocalRef]
