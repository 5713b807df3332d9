"""The backend conformance suite (:mod:`palhm_core.testing`) against every
local backend of the repository: localfs, null, the test plugin's
``example-dir`` and the guide's ``dirstore``, each on a real directory.
aws-s3 runs it in tests/s3/test_s3_conformance.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from palhm_localfs.backend import LocalFsBackend
from palhm_null import NullBackend

from palhm_core.testing import BackendConformance, Storage

REPO = Path(__file__).resolve().parent.parent


def _module(path: Path):
    """A plugin module by its file, whether or not its distribution is installed."""
    spec = importlib.util.spec_from_file_location(f"conformance_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plant_files(directory: Path):
    """Files PALHM did not make in ``directory``, and a check that they stay."""

    def plant():
        directory.mkdir(parents=True, exist_ok=True)
        planted = {
            directory / "README": b"not PALHM's\n",
            directory / "notes" / "a.txt": b"keep me\n",
            directory / ".hidden": b"dot file\n",
        }
        for path, data in planted.items():
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)

        def intact():
            for path, data in planted.items():
                assert path.read_bytes() == data, path

        return intact

    return plant


class TestLocalFs(BackendConformance):
    @pytest.fixture
    def storage(self, tmp_path):
        root = tmp_path / "root"
        params = {"root": str(root)}
        return Storage(lambda: LocalFsBackend(params, Storage.place()), plant_files(root))


class TestNull(BackendConformance):
    @pytest.fixture
    def storage(self):
        return Storage(lambda: NullBackend({}, Storage.place()))


class TestExampleDir(BackendConformance):
    @pytest.fixture
    def storage(self, tmp_path):
        cls = _module(REPO / "tests" / "plugins" / "palhm_example" / "palhm_example.py")
        params = {"dir": str(tmp_path / "dir")}
        return Storage(
            lambda: cls.ExampleDirBackend(params, Storage.place()), plant_files(tmp_path / "dir")
        )


class TestDirStore(BackendConformance):
    @pytest.fixture
    def storage(self, tmp_path):
        cls = _module(REPO / "doc" / "example-plugin" / "palhm_dirstore.py")
        (tmp_path / "dir").mkdir()
        params = {"dir": str(tmp_path / "dir")}
        return Storage(
            lambda: cls.DirStoreBackend(params, Storage.place()), plant_files(tmp_path / "dir")
        )
