"""Mistake: the registry hook returns an instance instead of the class."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class Instance(Discard):
    name = "broken-instance"


@hookimpl
def palhm_backends():
    return [Instance({}, None)]
