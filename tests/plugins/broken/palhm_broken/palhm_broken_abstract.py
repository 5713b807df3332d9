"""Mistake: a backend that does not implement ``list_copies``: it could never
rotate nor find its copies."""

from palhm_broken_common import _Copy

from palhm_core.api import Backend, hookimpl


class Forgetful(Backend):
    name = "broken-abstract"
    description = "Forgets to list its copies (a test plugin)."
    schema = {"properties": {}}

    def clean_leftovers(self):
        return []

    def begin(self, prefix):
        return _Copy()

    def delete_copies(self, prefixes, deleted):
        pass

    def open_object(self, prefix, path):
        raise FileNotFoundError(path)


@hookimpl
def palhm_backends():
    return [Forgetful]
