"""A pipeline stage for tests: log start and end times, sleep, emit bytes.

usage: stamp.py LOG NAME SECONDS NBYTES
"""

import os
import sys
import time

log, name, seconds, nbytes = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
with open(log, "a") as f:
    f.write(f"{name} start {time.time():.6f}\n")
time.sleep(seconds)
out = sys.stdout.buffer
chunk = (name.encode() + b"\n") * 4096
left = nbytes
while left > 0:
    n = out.write(chunk[:left])
    left -= n
out.flush()
with open(log, "a") as f:
    f.write(f"{name} end {time.time():.6f}\n")
os.close(1)
