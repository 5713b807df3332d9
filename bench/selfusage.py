"""Run a Python console script (``selfusage.py SCRIPT ARGS...``, e.g. the
installed ``palhm`` or ``aws``) exactly as its own ``#!`` line would, and
write this process's own CPU seconds and peak RSS (not its children's) as JSON
to ``$PALHM_BENCH_USAGE`` when it exits.

With ``PALHM_BENCH_COUNT_REQUESTS=1`` it also counts, by operation, every
HTTP request (retries included) that botocore sends, whichever client makes
it (``"requests": {"ListObjectsV2": 100, ...}`` in the JSON).

Peak RSS is the kernel's ``VmHWM`` of this process's memory map:
``ru_maxrss`` is not used because Linux carries the parent's high-water mark
across ``fork`` and ``exec``, so it would report the bench's own size.
"""

import atexit
import collections
import json
import os
import resource
import runpy
import sys
import threading

requests: collections.Counter = collections.Counter()


def _vmhwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _report() -> None:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["PALHM_BENCH_USAGE"], "w") as f:
        doc = {"cpu": ru.ru_utime + ru.ru_stime, "maxrss": _vmhwm()}
        if os.environ.get("PALHM_BENCH_COUNT_REQUESTS") == "1":
            doc["requests"] = dict(requests)
        json.dump(doc, f)


def _count_requests() -> None:
    """Wrap botocore's Endpoint: make_request knows the operation, _send is
    one HTTP request (each attempt of a retried operation)."""
    from botocore import endpoint

    lock = threading.Lock()
    local = threading.local()
    make_request, send = endpoint.Endpoint.make_request, endpoint.Endpoint._send

    def counted_make_request(self, operation_model, request_dict):
        local.op = operation_model.name
        return make_request(self, operation_model, request_dict)

    def counted_send(self, request):
        with lock:
            requests[getattr(local, "op", "?")] += 1
        return send(self, request)

    endpoint.Endpoint.make_request = counted_make_request
    endpoint.Endpoint._send = counted_send


atexit.register(_report)
if os.environ.get("PALHM_BENCH_COUNT_REQUESTS") == "1":
    _count_requests()
# This file's folder is sys.path[0]: put the script's own there instead, as
# running the script directly would.
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(script))
runpy.run_path(script, run_name="__main__")
