"""Rotation, written once for every backend: delete the oldest of the task's
own copies while there are more than ``nb-copy-limit`` or their total size is
above ``root-size-limit``.

Only copies judged ``complete`` and not future-dated count (see
:mod:`palhm_core.copies`), with the sizes the storage reports. Deleted are only
copies whose PREFIX sorts before the copy just made: never that copy, never
one the clock makes look newer. Incomplete, foreign, damaged and future-dated
copies are neither counted nor touched here.
"""

from __future__ import annotations

from palhm_core.backend import Backend, CopyInfo
from palhm_core.copies import own


def select_for_rotation(
    copies: list[CopyInfo], *, keep: str, nb_copy_limit: int | None, root_size_limit: int | None
) -> list[CopyInfo]:
    """The copies to delete, oldest first."""
    counted = sorted(own(copies), key=lambda c: c.prefix)
    count = len(counted)
    total = sum(c.size for c in counted)
    doomed = []
    for copy in counted:
        over_count = nb_copy_limit is not None and count > nb_copy_limit
        over_size = root_size_limit is not None and total > root_size_limit
        if not (over_count or over_size) or copy.prefix >= keep:
            break
        doomed.append(copy)
        count -= 1
        total -= copy.size
    return doomed


def rotate(
    backend: Backend,
    copies: list[CopyInfo],
    *,
    keep: str,
    nb_copy_limit,
    root_size_limit,
    on_delete,
) -> list[CopyInfo]:
    """Delete what :func:`select_for_rotation` selects among ``copies`` (as
    :func:`palhm_core.copies.judge_copies` gives them), in one call of
    :meth:`Backend.delete_copies`; ``on_delete(copy)`` as each one is gone."""
    doomed = select_for_rotation(
        copies, keep=keep, nb_copy_limit=nb_copy_limit, root_size_limit=root_size_limit
    )
    by_prefix = {copy.prefix: copy for copy in doomed}
    if doomed:
        backend.delete_copies(list(by_prefix), lambda prefix: on_delete(by_prefix[prefix]))
    return doomed
