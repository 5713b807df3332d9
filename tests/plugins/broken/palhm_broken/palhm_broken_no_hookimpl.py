"""Mistake: the hook function is not marked with @hookimpl, so pluggy does not
see it and the backend is never registered."""

from palhm_broken_common import Discard


class Forgotten(Discard):
    name = "broken-no-hookimpl"


def palhm_backends():
    return [Forgotten]
