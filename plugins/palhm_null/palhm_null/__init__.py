"""The ``null`` backend: every pipeline runs and every exit code is checked,
but the output is discarded and no copy is kept. For dry runs and for checks
such as "does DNSSEC validation still work?"."""

from __future__ import annotations

from palhm_core import Backend, Sink, hookimpl


class NullSink(Sink):
    def write(self, data: memoryview) -> None:
        pass


class NullBackend(Backend):
    name = "null"
    description = "Discard the output; keep no copies (dry runs, health checks)."
    schema = {"properties": {}}

    def describe(self) -> str:
        return "null"

    def sink(self, path: str, alloc_size: int | None) -> Sink:
        return NullSink()


@hookimpl
def palhm_backends():
    return [NullBackend]
