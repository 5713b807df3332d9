"""Mistake: a misspelt JSON Schema type name, ``strin``."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class TypeName(Discard):
    name = "broken-type-name"
    schema = {"properties": {"root": {"type": "strin", "description": "Where copies go."}}}


@hookimpl
def palhm_backends():
    return [TypeName]
