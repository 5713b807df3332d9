"""Mistake: a class whose ``name`` raises when it is read (a metaclass
property)."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class _Meta(type(Discard)):
    @property
    def name(cls):
        raise RuntimeError("no name before palhm_configure")


class NameRaises(Discard, metaclass=_Meta):
    pass


@hookimpl
def palhm_backends():
    return [NameRaises]
