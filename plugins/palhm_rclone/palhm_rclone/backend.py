"""The rclone backend class: copies as files ``REMOTE/PREFIX/PATH`` on any
storage rclone reaches.

The copy lifecycle (the ``.palhm-partial`` marker, the manifest last, the
rotation's journal, leftovers of killed runs) is
:class:`palhm_core.api.ObjectStoreBackend`'s; this module gives it rclone's
commands: ``rcat`` stores a stream, ``lsjson -R`` lists (``lsjson
--dirs-only`` the copy names alone), ``deletefile`` and
``delete --files-from-raw`` delete, ``cat`` reads, and ``rmdirs`` removes the
directories of deleted copies on remotes that have directories.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from datetime import datetime

from palhm_core.api import ObjectStoreBackend, Sink, StoredKey
from palhm_rclone.command import Rclone
from palhm_rclone.params import SCHEMA, Settings, remote_name
from palhm_rclone.streams import RcatSink, open_cat

#: Characters rclone's filter patterns treat specially.
_GLOB = "\\*?[]{}"


class RcloneBackend(ObjectStoreBackend):
    name = "rclone"
    description = (
        "Copies on any storage rclone reaches (SFTP, WebDAV, Google Cloud Storage, Azure "
        "Blob, B2, S3, a local directory ...), through the rclone program."
    )
    schema = SCHEMA
    parallel_reads = 4
    delete_batch = 1000

    def __init__(self, params, place):
        super().__init__(params, place)
        self.settings = Settings.parse(params, place)
        self.rclone = Rclone(self.settings)

    def describe(self) -> str:
        return self.settings.shown()

    def location(self) -> tuple[str, ...]:
        remote = self.settings.remote
        if remote.startswith(":"):
            head, _, path = remote[1:].partition(":")
            where = f":{head}:"
        elif remote_name(remote):
            where, _, path = remote.partition(":")
        else:
            where, path = "", remote
        return ("rclone", where, *(p for p in path.split("/") if p))

    def where(self, key: str) -> str:
        return self.settings.shown(key)

    # -- the object store's primitives -------------------------------------------

    def put(self, key: str, alloc_size: int | None, *, own: bool) -> Sink:
        return RcatSink(self.rclone, self.settings.where(key), self.where(key))

    def list_keys(self, prefix: str) -> list[StoredKey]:
        out = self.rclone.run(
            ["lsjson", "-R", "--files-only", "--no-mimetype", "--fast-list", self._path(prefix)],
            f"cannot list {self.where(prefix)}",
            missing_ok=True,
        )
        return [
            StoredKey(f"{prefix}{item['Path']}", item["Size"], _time(item.get("ModTime")))
            for item in json.loads(out or b"[]")
        ]

    def list_prefixes(self) -> list[str]:
        """``lsjson --dirs-only`` of the root, not recursive: the copies'
        directories (the common prefixes of a bucket remote), whatever they
        hold. An empty directory is a name too: the base then lists every key."""
        out = self.rclone.run(
            ["lsjson", "--dirs-only", "--no-mimetype", "--no-modtime", self._path("")],
            f"cannot list {self.where('')}",
            missing_ok=True,
        )
        return [item["Path"] for item in json.loads(out or b"[]")]

    def delete_keys(self, keys: Sequence[str]) -> None:
        """``deletefile`` for one key, else one ``delete --files-from-raw``
        (keys with a line break, which that list cannot hold, one by one)."""
        listable = [k for k in keys if "\n" not in k and "\r" not in k]
        one_by_one = [k for k in keys if "\n" in k or "\r" in k]
        if len(listable) == 1:
            one_by_one, listable = one_by_one + listable, []
        for key in one_by_one:
            self.rclone.run(
                ["deletefile", self.settings.where(key)],
                f"cannot delete {self.where(key)}",
                missing_ok=True,
            )
        if listable:
            self._with_list(["delete"], "--files-from-raw", listable, "cannot delete from")

    def open_key(self, key: str):
        return open_cat(
            self.rclone, self.settings.where(key), self.where(key), lambda: self._exists(key)
        )

    def tidy(self, prefixes: Sequence[str]) -> None:
        """``rmdirs`` of the copies' directories, and of nothing else."""
        patterns = [
            "/" + "".join("\\" + c if c in _GLOB else c for c in p) + "/**" for p in prefixes
        ]
        self._with_list(["rmdirs", "--leave-root"], "--include-from", patterns, "cannot tidy")

    # -- helpers -------------------------------------------------------------------

    def _exists(self, key: str) -> bool:
        out = self.rclone.run(
            ["lsjson", "--stat", "--files-only", "--no-mimetype", self.settings.where(key)],
            f"cannot read {self.where(key)}",
            missing_ok=True,
        )
        return bool(out.strip()) and json.loads(out) is not None

    def _path(self, prefix: str) -> str:
        return self.settings.where(prefix.rstrip("/"))

    def _with_list(self, command: list[str], option: str, lines: list[str], what: str) -> None:
        """``rclone COMMAND OPTION FILE REMOTE`` with ``lines`` in FILE."""
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", prefix="palhm-rclone-") as f:
            f.write("".join(f"{line}\n" for line in lines))
            f.flush()
            self.rclone.run(
                [*command, option, f.name, self.settings.where()],
                f"{what} {self.describe()}",
                missing_ok=True,
            )


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
