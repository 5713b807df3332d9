"""The part-size schedule of a streamed upload: a pure function of the
configured first part size, its growth interval and the ``alloc-size`` hint.

S3 allows at most 10,000 parts per object, each at least 5 MiB (but the last)
and at most 5 GiB, and objects of at most 5 TiB. A stream of unknown length
starts with small parts, so that memory stays small for the common case, and
the part size doubles every ``interval`` parts, so that the 10,000 parts still
hold 5 TiB. The interval is shortened when the one asked for would fall short
of 5 TiB with that first part size.

An object announced by ``alloc-size`` gets parts of the size that cuts it in
about 5,000 parts (never less than the configured part size) and no growth
until that size is passed: the smallest parts, so the least memory, that
still leave 5,000 growing parts should the object be larger than announced.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * TiB

DEFAULT_PART_SIZE = 8 * MiB
DEFAULT_GROWTH_INTERVAL = 1000
#: An object announced by ``alloc-size`` is cut into about this many parts.
ALLOC_PARTS = MAX_PARTS // 2


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def first_part_size(part_size: int, alloc_size: int | None) -> int:
    """The size of part 1: ``part_size``, or larger when ``alloc_size``
    announces an object of more than :data:`ALLOC_PARTS` such parts (then
    the announced size in :data:`ALLOC_PARTS` parts, rounded up to a MiB)."""
    size = max(part_size, MIN_PART_SIZE)
    if alloc_size:
        size = max(size, _ceil_div(_ceil_div(alloc_size, ALLOC_PARTS), MiB) * MiB)
    return min(size, MAX_PART_SIZE)


def capacity(first: int, interval: int, flat: int | None = None) -> int:
    """Bytes that :data:`MAX_PARTS` parts hold when the first ``flat``
    parts (default ``interval``) have ``first`` bytes and the size then
    doubles every ``interval`` parts, up to :data:`MAX_PART_SIZE`."""
    if interval <= 0:
        return first * MAX_PARTS
    flat = min(interval if flat is None else flat, MAX_PARTS)
    total = flat * first
    done = flat
    size = min(first * 2, MAX_PART_SIZE)
    while done < MAX_PARTS:
        if size >= MAX_PART_SIZE:
            return total + (MAX_PARTS - done) * MAX_PART_SIZE
        count = min(interval, MAX_PARTS - done)
        total += count * size
        done += count
        size = min(size * 2, MAX_PART_SIZE)
    return total


def growth_interval(first: int, wanted: int, flat: int | None = None) -> int:
    """``wanted``, or the longest shorter interval with which parts starting
    at ``first`` bytes (``flat`` of them, default the interval) reach
    :data:`MAX_OBJECT_SIZE`. 0 (constant part size) stays 0."""
    if wanted <= 0:
        return 0
    lo, hi = 1, wanted  # capacity() does not grow with the interval
    if capacity(first, hi, flat) >= MAX_OBJECT_SIZE:
        return hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if capacity(first, mid, flat) >= MAX_OBJECT_SIZE:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class PartSchedule:
    """Part sizes of one upload: parts 1 to ``flat`` have ``first`` bytes,
    then the size doubles every ``interval`` parts, up to
    :data:`MAX_PART_SIZE`; ``interval`` 0 keeps every part at ``first``."""

    first: int
    interval: int
    flat: int

    @classmethod
    def plan(cls, part_size: int, interval: int, alloc_size: int | None = None) -> PartSchedule:
        first = first_part_size(part_size, alloc_size)
        interval = growth_interval(first, interval)
        if interval <= 0:
            return cls(first, 0, MAX_PARTS)
        flat = interval
        if alloc_size:  # no growth within the announced size
            flat = max(interval, min(_ceil_div(alloc_size, first), ALLOC_PARTS))
            interval = growth_interval(first, interval, flat)
        return cls(first, interval, flat)

    def size(self, number: int) -> int:
        """The size of part ``number`` (1 to :data:`MAX_PARTS`)."""
        if number < 1:
            raise ValueError(f"part numbers start at 1, got {number}")
        if self.interval <= 0 or number <= self.flat:
            return self.first
        doublings = 1 + (number - self.flat - 1) // self.interval
        if doublings >= 30:  # far past the 5 GiB ceiling
            return MAX_PART_SIZE
        return min(self.first << doublings, MAX_PART_SIZE)

    def capacity(self) -> int:
        """The largest object this schedule uploads."""
        return capacity(self.first, self.interval, self.flat)
