"""Mistake: ``palhm_configure`` fails when the config gives the plugin no
settings (it needed some and does not say so in a schema)."""

from palhm_broken_common import Discard

from palhm_core.api import hookimpl


class NeedsSettings(Discard):
    name = "broken-configure"


@hookimpl
def palhm_backends():
    return [NeedsSettings]


@hookimpl
def palhm_configure(settings):
    raise KeyError("url")
