"""Rotation, written once for every backend: which of the task's own copies
to delete, then delete them.

Only copies judged ``complete`` and not future-dated count (see
:mod:`palhm_core.copies`), with the sizes the storage reports. Incomplete,
foreign, damaged and future-dated copies are neither counted nor touched
here. The decision, oldest first:

1. the task's retention policy (``backend-param.keep``, see
   :mod:`palhm_core.retention`), when it has one, keeps the copies any of
   its rules keeps; the others go;
2. the copy just made, and any copy whose PREFIX sorts after it (one the
   clock makes look newer), stay whatever the policy says;
3. ``nb-copy-limit`` and ``root-size-limit`` are hard caps on the copies
   kept: the oldest go while there are more than ``nb-copy-limit`` or
   their total size is above ``root-size-limit`` (never those of 2.).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from palhm_core.backend import Backend, CopyInfo
from palhm_core.copies import own
from palhm_core.manifest import finished_time
from palhm_core.retention import Dated


@dataclass
class Rotation:
    """What rotation decided about the task's counted copies."""

    #: The copies to delete, oldest first.
    deleted: list[CopyInfo] = field(default_factory=list)
    #: PREFIX -> why it is deleted: ``policy``, ``nb-copy-limit`` or
    #: ``root-size-limit``.
    why_deleted: dict[str, str] = field(default_factory=dict)
    #: PREFIX -> the rules that keep it (empty without a policy), oldest first.
    kept: dict[str, list[str]] = field(default_factory=dict)


def copy_time(copy: CopyInfo) -> datetime:
    """When a complete copy was made, by its manifest: ``started``, else
    ``finished``, and never after ``finished`` (a ``started`` after it was
    read from a clock that was then set back: taken as it is, it would make
    the copy the newest and move every ``within`` and period with it)."""
    finished = finished_time(copy.manifest)
    started = copy.manifest.get("started")
    if isinstance(started, str):
        try:
            when = datetime.fromisoformat(started)
            if when.tzinfo is not None:
                return min(when, finished)
        except ValueError:
            pass
    return finished


def decide(
    copies: list[CopyInfo],
    *,
    keep: str,
    nb_copy_limit: int | None,
    root_size_limit: int | None,
    policy=None,
    now: datetime | None = None,
    keep_reason: str = "just made",
) -> Rotation:
    """The rotation of ``copies`` (as :func:`palhm_core.copies.judge_copies`
    gives them) that keeps the copy ``keep`` (``keep_reason`` says why)."""
    counted = sorted(own(copies), key=lambda c: c.prefix)
    chosen = None
    if policy is not None:
        now = datetime.now(timezone.utc) if now is None else now
        chosen = policy.keep([Dated(c.prefix, copy_time(c)) for c in counted], now)
    result = Rotation()
    for c in counted:
        reasons = [] if chosen is None else list(chosen.get(c.prefix, ()))
        if c.prefix == keep:
            reasons.insert(0, keep_reason)
        elif c.prefix > keep:
            reasons.insert(0, f"sorts after {keep}")
        if reasons or chosen is None:
            result.kept[c.prefix] = reasons
        else:
            result.why_deleted[c.prefix] = "policy"
    survivors = [c for c in counted if c.prefix in result.kept]
    count = len(survivors)
    total = sum(c.size for c in survivors)
    for copy in survivors:
        over_count = nb_copy_limit is not None and count > nb_copy_limit
        over_size = root_size_limit is not None and total > root_size_limit
        if not (over_count or over_size) or copy.prefix >= keep:
            break
        del result.kept[copy.prefix]
        result.why_deleted[copy.prefix] = "nb-copy-limit" if over_count else "root-size-limit"
        count -= 1
        total -= copy.size
    result.deleted = [c for c in counted if c.prefix in result.why_deleted]
    return result


def delete(backend: Backend, rotation: Rotation, *, on_delete) -> None:
    """Delete the copies ``rotation`` deletes, in one call of
    :meth:`Backend.delete_copies`; ``on_delete(copy)`` as each one is gone."""
    by_prefix = {copy.prefix: copy for copy in rotation.deleted}
    if by_prefix:
        backend.delete_copies(list(by_prefix), lambda prefix: on_delete(by_prefix[prefix]))
