"""The ``localfs`` backend: copies as directories on a local or mounted
filesystem (NFS, SMB).

A copy is written under a hidden staging name in ROOT
(``.palhm-partial.PREFIX.XXXX``), locked with ``flock`` while its run lives;
files and directories are fsynced, then one rename makes it ``ROOT/PREFIX``.
A staging directory nobody holds the lock of was left by a crash and is
removed by the next run. Rotation renames a copy back to a staging name before
removing it, so a crash mid-delete never leaves something that looks whole.
"""

from __future__ import annotations

from palhm_core.api import hookimpl
from palhm_localfs.backend import LocalFsBackend


@hookimpl
def palhm_backends():
    return [LocalFsBackend]
