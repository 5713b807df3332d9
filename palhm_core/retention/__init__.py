"""Retention policies: which of a task's copies rotation keeps.

A policy is a class registered by
:func:`palhm_core.hookspecs.palhm_retention_policies`, selected by
``backend-param.keep.type`` (default ``calendar``, the core's own, in
:mod:`palhm_core.retention.calendar`) and built from the other keys of that
object when the config loads. Deciding is a pure function of the copies and
their times: :meth:`RetentionPolicy.keep` reads no clock and no storage, so
a policy can be tried on synthetic copies (``palhm backups prune
--dry-run`` shows what it decides on the real ones).

The core applies the decision (:mod:`palhm_core.rotation`): only the task's
complete copies are given to the policy; the copy just made is kept whatever
the policy says; ``nb-copy-limit`` and ``root-size-limit`` are applied after
it, to the copies it keeps, as hard caps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from palhm_core.config.place import Place
    from palhm_core.plugins import Plugins

#: The policy of a ``keep`` object without ``type``.
DEFAULT_POLICY = "calendar"


@dataclass(frozen=True)
class Dated:
    """A copy as a policy sees it: its PREFIX and when it was made (an aware
    datetime: the ``started`` time of its manifest, or ``finished`` when that
    is earlier)."""

    prefix: str
    time: datetime


class RetentionPolicy:
    """Base class of retention policies.

    Subclasses set ``name``, ``description`` and ``schema`` (the keys of the
    ``keep`` object beside ``type``) and implement :meth:`keep`.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    schema: ClassVar[dict[str, Any]] = {"properties": {}}

    def __init__(self, params: dict[str, Any], place: Place) -> None:
        """Build the policy from the ``keep`` object (valid against
        ``schema``, without ``type``); raise ``(place / key).error(...)`` for
        a bad value."""

    def keep(self, copies: list[Dated], now: datetime) -> dict[str, list[str]]:
        """Which copies to keep, and why.

        :param copies: the task's complete copies, in no particular order.
        :param now: the time of the decision (aware, UTC).
        :returns: PREFIX -> the rules that keep it (short words shown to the
            administrator, such as ``daily``), for every copy kept; a copy
            not named is deleted.
        """
        raise NotImplementedError


def load_policy(conf: dict[str, Any] | None, place: Place, plugins: Plugins):
    """The policy a ``keep`` object configures, or None without one."""
    if conf is None:
        return None
    params = dict(conf)
    cls = plugins.lookup("retention policy", params.pop("type", DEFAULT_POLICY), place / "type")
    return cls(params, place)
