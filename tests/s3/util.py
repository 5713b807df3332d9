"""Helpers of the aws-s3 tests: tasks, configs, and running palhm under a
peak-memory probe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import PALHM, backup_task, inline, run_palhm, write_config

HERE = Path(__file__).resolve().parent
TRICKLE = str(HERE / "trickle.py")
MANIFEST = "palhm-manifest.json"
MARKER = ".palhm-partial"

__all__ = ["PALHM", "inline", "run_palhm", "write_config"]


def s3_task(bucket, objects, task_id="backup", root="palhm/backup", **params) -> dict:
    """An aws-s3 backup task storing into ``bucket`` under ``root``."""
    params = {"bucket": bucket.name, "root": root, "endpoint-url": bucket.endpoint, **params}
    return backup_task(task_id, "aws-s3", objects, **params)


def config(tmp_path, *tasks, **top) -> Path:
    return write_config(tmp_path, {"tasks": list(tasks), **top})


def obj(path, *argv, **extra) -> dict:
    """A backup object whose pipeline is one command."""
    return {"path": path, "pipeline": [inline(*argv)], **extra}


def copies(bucket, root="palhm/backup") -> list[str]:
    """Complete copies (with a manifest) under ``root``, oldest first."""
    base = f"{root}/"
    return sorted(
        k[len(base) :].split("/")[0] for k in bucket.key_list(base) if k.endswith(f"/{MANIFEST}")
    )


def manifest(bucket, prefix, root="palhm/backup") -> dict:
    return json.loads(bucket.get(f"{root}/{prefix}/{MANIFEST}"))


def run_measured(*args, config=None, env=None, timeout=300):
    """Run palhm like :func:`run_palhm`; also its peak RSS in KiB (the
    largest of palhm and its pipeline's processes, in practice palhm) and
    the wall time, measured by a fresh Python parent."""
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.monotonic()\n"
        "rc = subprocess.run(sys.argv[2:]).returncode\n"
        "t = time.monotonic() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "open(sys.argv[1], 'w').write(f'{rss} {t}')\n"
        "sys.exit(rc)\n"
    )
    out = Path(str(config) + ".rss")
    argv = [sys.executable, "-c", probe, str(out), PALHM]
    if config is not None:
        argv += ["-f", str(config)]
    argv += [str(a) for a in args]
    full_env = dict(os.environ)
    full_env.pop("PALHM_CONFIG", None)
    full_env.update(env or {})
    result = subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=timeout)
    rss, seconds = out.read_text().split()
    return result, int(rss), float(seconds)


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
