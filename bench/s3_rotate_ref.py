"""The least an S3 rotation can do, for bench 5 to compare PALHM with: list
every key under ROOT (1,000 a page), take the copies that have a manifest,
and delete the keys of all but the newest KEEP with DeleteObjects, 1,000 keys
a request.

    python bench/s3_rotate_ref.py ENDPOINT BUCKET ROOT KEEP

Prints ``{"deleted-copies": N, "deleted-keys": N}``.
"""

from __future__ import annotations

import json
import sys

import boto3


def main() -> None:
    endpoint, bucket, root, keep = (
        sys.argv[1],
        sys.argv[2],
        sys.argv[3].strip("/"),
        int(sys.argv[4]),
    )
    s3 = boto3.client("s3", endpoint_url=endpoint)
    copies: dict[str, list[str]] = {}
    complete = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{root}/"):
        for obj in page.get("Contents", ()):
            prefix, _, path = obj["Key"][len(root) + 1 :].partition("/")
            copies.setdefault(prefix, []).append(obj["Key"])
            if path == "palhm-manifest.json":
                complete.add(prefix)
    doomed = sorted(complete)[:-keep] if keep else sorted(complete)
    keys = [k for p in doomed for k in copies[p]]
    for i in range(0, len(keys), 1000):
        s3.delete_objects(
            Bucket=bucket,
            Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
        )
    print(json.dumps({"deleted-copies": len(doomed), "deleted-keys": len(keys)}))


if __name__ == "__main__":
    main()
