"""The ``rclone`` backend: copies on any storage the ``rclone`` program
reaches (SFTP, WebDAV, Google Cloud Storage, Azure Blob, B2, S3, a local
directory ...), through its commands ``rcat``, ``lsjson``, ``delete``,
``rmdirs`` and ``cat``.

This module only registers the backend class; nothing runs rclone until a
backend is opened.
"""

from __future__ import annotations

from palhm_core.api import hookimpl
from palhm_rclone.backend import RcloneBackend


@hookimpl
def palhm_backends():
    return [RcloneBackend]
