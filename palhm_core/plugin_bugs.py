"""Telling a plugin's bug from PALHM's own.

An exception that is not a :class:`~palhm_core.errors.PalhmError` and was
raised from a plugin's code (a copy writer with an abstract method left, a
``KeyError`` in a sink) is a bug of that plugin: the user gets one line naming
the plugin, and ``-v`` shows the traceback.
"""

from __future__ import annotations

import os
import sys


def raised_in(error: BaseException, cls: type) -> bool:
    """Whether a frame of ``error``'s traceback runs code of the module or
    package ``cls`` was defined in."""
    top = sys.modules.get(cls.__module__.partition(".")[0])
    places = list(getattr(top, "__path__", None) or [getattr(top, "__file__", None)])
    places = [os.path.realpath(p) for p in places if p]
    tb = error.__traceback__
    while tb is not None:
        name = os.path.realpath(tb.tb_frame.f_code.co_filename)
        if any(name == p or name.startswith(p + os.sep) for p in places):
            return True
        tb = tb.tb_next
    return False
