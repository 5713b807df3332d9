"""The ``aws-s3`` backend: copies as objects in an AWS S3 bucket or any
S3-compatible store (MinIO, Ceph, R2, B2, Wasabi), uploaded from the pipeline
as it runs.

This module only registers the backend class; botocore is imported when a
backend is opened (:mod:`palhm_s3.client`), never by ``palhm --help`` or
``palhm plugins``.
"""

from __future__ import annotations

from palhm_core.api import hookimpl
from palhm_s3.backend import S3Backend


@hookimpl
def palhm_backends():
    return [S3Backend]


@hookimpl
def palhm_notifiers():
    from palhm_s3.sns import SnsNotifier

    return [SnsNotifier]
