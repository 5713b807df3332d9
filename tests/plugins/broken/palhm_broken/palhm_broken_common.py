"""A complete backend that stores nothing, for the broken plugins to derive
from: each of them then has exactly one mistake."""

from __future__ import annotations

from palhm_core.api import Backend, CopyInfo, CopyWriter, Sink


class _Sink(Sink):
    def write(self, data: memoryview) -> None:
        pass


class _Copy(CopyWriter):
    def sink(self, path: str, alloc_size: int | None) -> Sink:
        return _Sink()

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass


class Discard(Backend):
    name = "discard"
    description = "Store nothing (a test plugin)."
    schema = {"properties": {}}

    def list_copies(self) -> list[CopyInfo]:
        return []

    def clean_leftovers(self) -> list[str]:
        return []

    def begin(self, prefix: str) -> CopyWriter:
        return _Copy()

    def delete_copies(self, prefixes, deleted) -> None:
        for prefix in prefixes:
            deleted(prefix)

    def open_object(self, prefix: str, path: str):
        raise FileNotFoundError(path)
