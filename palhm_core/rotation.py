"""Rotation, written once for every backend: delete the oldest complete
copies while there are more than ``nb-copy-limit`` or their total size is
above ``root-size-limit``. The copy just made is never deleted, incomplete
copies are neither counted nor touched here."""

from __future__ import annotations

from palhm_core.backend import Backend, CopyInfo


def select_for_rotation(
    copies: list[CopyInfo], *, keep: str, nb_copy_limit: int | None, root_size_limit: int | None
) -> list[CopyInfo]:
    """The copies to delete, oldest first."""
    complete = sorted((c for c in copies if c.complete), key=lambda c: c.prefix)
    count = len(complete)
    total = sum(c.size for c in complete)
    doomed = []
    for copy in complete:
        over_count = nb_copy_limit is not None and count > nb_copy_limit
        over_size = root_size_limit is not None and total > root_size_limit
        if not (over_count or over_size):
            break
        if copy.prefix == keep:
            continue
        doomed.append(copy)
        count -= 1
        total -= copy.size
    return doomed


def rotate(
    backend: Backend, *, keep: str, nb_copy_limit, root_size_limit, on_delete
) -> list[CopyInfo]:
    """Delete what :func:`select_for_rotation` selects, in one call of
    :meth:`Backend.delete_copies`; ``on_delete(copy)`` as each one is gone."""
    if nb_copy_limit is None and root_size_limit is None:
        return []
    doomed = select_for_rotation(
        backend.list_copies(),
        keep=keep,
        nb_copy_limit=nb_copy_limit,
        root_size_limit=root_size_limit,
    )
    by_prefix = {copy.prefix: copy for copy in doomed}
    if doomed:
        backend.delete_copies(list(by_prefix), lambda prefix: on_delete(by_prefix[prefix]))
    return doomed
