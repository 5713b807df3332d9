"""Mistake: the registry hook returns the class itself, not a list of classes."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class NotList(Discard):
    name = "broken-not-list"


@hookimpl
def palhm_backends():
    return NotList
