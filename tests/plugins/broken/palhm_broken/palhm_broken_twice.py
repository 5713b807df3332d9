"""Mistake: two backend classes under one name."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class First(Discard):
    name = "twice"


class Second(Discard):
    name = "twice"


@hookimpl
def palhm_backends():
    return [First, Second]
