"""The object-store base's rotation journal, on the rclone backend over a
local directory: a rotation cut short is finished by the next run for the
copies it named that lost their manifest or any object, and only those."""

from __future__ import annotations

from palhm_rclone.backend import RcloneBackend

from palhm_core.objectstore import JOURNAL_HEAD, JOURNAL_NAME, StoredKey
from palhm_core.testing import Storage, listed, make_copy, prefix_at

from .conftest import rclone_program


def test_a_rotation_cut_short_is_finished_for_the_copies_it_touched(tmp_path, rclone_env):
    root = tmp_path / "root"
    params = {"remote": f":local:{root}", "rclone": rclone_program()}
    backend = RcloneBackend(params, Storage.place())
    backend.open()
    objects = {"a": b"alpha\n", "b": b"bravo\n"}
    lost_object, lost_manifest, untouched, kept = (prefix_at(n) for n in range(4))
    for prefix in (lost_object, lost_manifest, untouched, kept):
        make_copy(backend, prefix, objects)
    keys = {p: len(list((root / p).iterdir())) for p in (lost_object, lost_manifest, untouched)}
    journal = JOURNAL_HEAD + "".join(f"{p}\t{n}\n" for p, n in keys.items())
    (root / JOURNAL_NAME).write_text(journal)
    (root / lost_object / "b").unlink()  # its manifest stays: damaged, were it not journalled
    (root / lost_manifest / "palhm-manifest.json").unlink()
    removed = backend.clean_leftovers()
    assert sorted(removed) == sorted(
        f"what rotation left of :local:{root}/{p}/ ({keys[p] - 1} objects)"
        for p in (lost_object, lost_manifest)
    )
    assert sorted(listed(backend)) == [untouched, kept]
    assert sorted(p.name for p in root.iterdir()) == [untouched, kept]
    backend.close()


class _StaleListing(RcloneBackend):
    """A remote whose listing is eventually consistent: it still shows the
    journal that a finished rotation deleted."""

    def list_keys(self, prefix):
        yield from super().list_keys(prefix)
        if prefix == "":
            yield StoredKey(JOURNAL_NAME, len(JOURNAL_HEAD))


def test_a_journal_listed_but_already_gone_is_no_failure(tmp_path, rclone_env):
    root = tmp_path / "root"
    params = {"remote": f":local:{root}", "rclone": rclone_program()}
    backend = _StaleListing(params, Storage.place())
    backend.open()
    make_copy(backend, prefix_at(0), {"a": b"alpha\n"})
    assert backend.clean_leftovers() == []
    assert sorted(listed(backend)) == [prefix_at(0)]
    backend.close()
