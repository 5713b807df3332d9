"""Mistake: a settings schema with a rule beside ``properties`` and
``required`` (a token needs its URL), which the config schema would not keep."""

from palhm_core.api import hookimpl


@hookimpl
def palhm_settings_schema():
    return {
        "properties": {
            "url": {"type": "string", "description": "Where to report."},
            "token": {"type": "string", "description": "The token for url."},
        },
        "dependentRequired": {"token": ["url"]},
    }


@hookimpl
def palhm_configure(settings):
    pass
