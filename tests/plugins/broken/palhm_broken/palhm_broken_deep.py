"""Mistake: a schema nested deeper than Python's recursion limit."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


def _nested(depth: int) -> dict:
    schema = {"type": "string", "description": "The innermost value."}
    for _ in range(depth):
        schema = {"type": "object", "description": "One level.", "properties": {"a": schema}}
    return schema


class Deep(Discard):
    name = "broken-deep"
    schema = _nested(5000)


@hookimpl
def palhm_backends():
    return [Deep]
