"""Mistake: the schema's ``properties`` is a list of names, not an object."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class PropertiesList(Discard):
    name = "broken-properties-list"
    schema = {"properties": ["root", "bucket"]}


@hookimpl
def palhm_backends():
    return [PropertiesList]
