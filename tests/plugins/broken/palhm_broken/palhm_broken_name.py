"""Mistake: a name a config cannot sensibly write (a space, capitals)."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class BadName(Discard):
    name = "Broken Name"


@hookimpl
def palhm_backends():
    return [BadName]
