"""The ``null`` backend: every pipeline runs and every exit code is checked,
but the output is discarded and no copy is kept. For dry runs (it declares
``stores_nothing``, which ``palhm run --dry-run`` asks for) and for checks such
as "does DNSSEC validation still work?"."""

from __future__ import annotations

from palhm_core.api import Backend, CopyInfo, CopyWriter, Sink, hookimpl


class NullSink(Sink):
    def write(self, data: memoryview) -> None:
        pass


class NullCopy(CopyWriter):
    """A copy that is never kept: committing it stores nothing."""

    def sink(self, path: str, alloc_size: int | None) -> Sink:
        return NullSink()

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass


class NullBackend(Backend):
    name = "null"
    description = "Discard the output; keep no copies (dry runs, health checks)."
    schema = {"properties": {}}
    stores_nothing = True

    def describe(self) -> str:
        return "null"

    def list_copies(self) -> list[CopyInfo]:
        return []

    def clean_leftovers(self) -> list[str]:
        return []

    def begin(self, prefix: str) -> CopyWriter:
        return NullCopy()

    def delete_copies(self, prefixes, deleted) -> None:
        for prefix in prefixes:  # it lists none, so the core names none
            deleted(prefix)

    def open_object(self, prefix: str, path: str):
        raise FileNotFoundError(f"the null backend keeps no copies: {prefix}/{path}")


@hookimpl
def palhm_backends():
    return [NullBackend]
