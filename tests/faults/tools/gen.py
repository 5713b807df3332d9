"""A pipeline stage for the fault tests: write NBYTES of random data spread
evenly over SECONDS, like a dump in progress. Stops quietly when its reader
goes away.

usage: gen.py NBYTES SECONDS
"""

import os
import sys
import time

nbytes, seconds = int(sys.argv[1]), float(sys.argv[2])
out = sys.stdout.buffer
steps = max(1, min(50, int(seconds / 0.02)))
chunk = -(-nbytes // steps)
block = os.urandom(max(1, min(chunk, 1 << 20)))
try:
    left = nbytes
    start = time.monotonic()
    for step in range(steps):
        n = min(chunk, left)
        while n > 0:
            k = out.write(block[: min(n, len(block))])
            n -= k
            left -= k
        out.flush()
        pause = start + seconds * (step + 1) / steps - time.monotonic()
        if pause > 0:
            time.sleep(pause)
except BrokenPipeError:
    sys.exit(0)
