"""A pipeline stage for tests: write NBYTES of random data at once, then a
little more every 0.1 s for SECONDS, like a dump that is still running.
Stops when its reader goes away.

usage: trickle.py NBYTES SECONDS
"""

import os
import sys
import time

nbytes, seconds = int(sys.argv[1]), float(sys.argv[2])
out = sys.stdout.buffer
try:
    block = os.urandom(1 << 20)
    left = nbytes
    while left > 0:
        left -= out.write(block[: min(left, len(block))])
    out.flush()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.1)
        out.write(block[: 64 << 10])
        out.flush()
except BrokenPipeError:
    sys.exit(0)
