"""Mistake: the settings schema's property has a misspelt type."""

from palhm_core.api import hookimpl


@hookimpl
def palhm_settings_schema():
    return {"properties": {"url": {"type": "strng", "description": "Where to report."}}}


@hookimpl
def palhm_configure(settings):
    pass
