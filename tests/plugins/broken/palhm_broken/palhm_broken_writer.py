"""Mistake: a copy writer without ``commit``. Plugins load without noticing
(the writer is made only when a copy begins); the run that uses it fails with
one line naming the plugin."""

from palhm_broken_common import Discard, _Sink

from palhm_core.api import CopyWriter, hookimpl


class _NoCommit(CopyWriter):
    def sink(self, path, alloc_size):
        return _Sink()

    def rollback(self):
        pass


class NoCommit(Discard):
    name = "broken-writer"
    description = "Its copy writer cannot commit (a test plugin)."

    def begin(self, prefix):
        return _NoCommit()


@hookimpl
def palhm_backends():
    return [NoCommit]
