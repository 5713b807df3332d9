"""Mistake: the registry hook raises."""

from palhm_core.api import hookimpl


@hookimpl
def palhm_backends():
    raise RuntimeError("the configuration of broken-raises is missing")
