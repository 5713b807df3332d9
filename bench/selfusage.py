"""Run a Python console script (``selfusage.py SCRIPT ARGS...``, e.g. the
installed ``palhm`` or ``aws``) exactly as its own ``#!`` line would, and
write this process's own CPU seconds and peak RSS (not its children's) as JSON
to ``$PALHM_BENCH_USAGE`` when it exits.

Peak RSS is the kernel's ``VmHWM`` of this process's memory map:
``ru_maxrss`` is not used because Linux carries the parent's high-water mark
across ``fork`` and ``exec``, so it would report the bench's own size.
"""

import atexit
import json
import os
import resource
import runpy
import sys


def _vmhwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _report() -> None:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["PALHM_BENCH_USAGE"], "w") as f:
        json.dump({"cpu": ru.ru_utime + ru.ru_stime, "maxrss": _vmhwm()}, f)


atexit.register(_report)
# This file's folder is sys.path[0]: put the script's own there instead, as
# running the script directly would.
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(script))
runpy.run_path(script, run_name="__main__")
