"""A pipeline stage for tests: log when it starts and ends, wait for other
stages to have started, emit bytes.

usage: stamp.py LOG NAME NBYTES [AWAIT...]

Appends ``NAME start`` to LOG, waits until LOG holds ``X start`` for every
AWAIT name (at most 120 s, then exits 1 saying so), writes NBYTES bytes to
stdout and appends ``NAME end``. The order of LOG's lines is the order of the
events: each is one append (O_APPEND) of one short line.
"""

import os
import sys
import time

DEADLINE = 120.0

log, name, nbytes, awaited = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]


def note(what: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name} {what}\n".encode())
    finally:
        os.close(fd)


def started() -> set[str]:
    with open(log) as f:
        return {line.split()[0] for line in f if line.split()[1:] == ["start"]}


note("start")
deadline = time.monotonic() + DEADLINE
while missing := set(awaited) - started():
    if time.monotonic() > deadline:
        sys.exit(f"stamp.py: {name}: no start of {', '.join(sorted(missing))} in {DEADLINE:.0f} s")
    time.sleep(0.02)
out = sys.stdout.buffer
chunk = (name.encode() + b"\n") * 4096
left = nbytes
while left > 0:
    left -= out.write(chunk[:left])
out.flush()
note("end")
os.close(1)
