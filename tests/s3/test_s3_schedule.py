"""The part-size schedule, a pure function: 5 TiB in at most 10,000 parts of
5 MiB to 5 GiB, growing from the configured first part."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from palhm_s3.reclass import copy_part_size
from palhm_s3.schedule import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    GiB,
    MiB,
    PartSchedule,
    TiB,
    first_part_size,
)


def parts_for(schedule: PartSchedule, size: int) -> list[int]:
    """The parts an object of ``size`` bytes is cut into."""
    parts = []
    left = size
    number = 1
    while left > 0:
        assert number <= MAX_PARTS, f"{size} bytes do not fit in {MAX_PARTS} parts"
        part = min(left, schedule.size(number))
        parts.append(part)
        left -= part
        number += 1
    return parts


def check_parts(parts: list[int]) -> None:
    assert len(parts) <= MAX_PARTS
    assert all(MIN_PART_SIZE <= p <= MAX_PART_SIZE for p in parts[:-1])
    assert parts[-1] <= MAX_PART_SIZE


def test_default_schedule_reaches_5_tib_in_10000_parts():
    schedule = PartSchedule.plan(8 * MiB, 1000)
    assert schedule.capacity() >= MAX_OBJECT_SIZE == 5 * TiB
    parts = parts_for(schedule, MAX_OBJECT_SIZE)
    check_parts(parts)
    assert sum(parts) == 5 * TiB
    # Small objects use small parts: memory stays small for the usual case.
    assert parts_for(schedule, 80 * GiB)[:1000] == [8 * MiB] * 1000
    assert max(parts_for(schedule, 80 * GiB)) <= 128 * MiB


@given(
    first=st.integers(MIN_PART_SIZE, MAX_PART_SIZE),
    interval=st.integers(1, MAX_PARTS),
)
def test_any_first_part_and_interval_reach_5_tib(first, interval):
    schedule = PartSchedule.plan(first, interval)
    assert 1 <= schedule.interval <= interval
    assert schedule.capacity() >= MAX_OBJECT_SIZE
    for n in (1, schedule.interval, schedule.interval + 1, MAX_PARTS // 2, MAX_PARTS):
        assert MIN_PART_SIZE <= schedule.size(n) <= MAX_PART_SIZE
    # Growth is monotonic.
    sizes = [schedule.size(n) for n in range(1, MAX_PARTS + 1, 97)]
    assert sizes == sorted(sizes)


@pytest.mark.parametrize("first", [MIN_PART_SIZE, 8 * MiB, 64 * MiB, MAX_PART_SIZE])
def test_5_tib_object_cuts_into_valid_parts(first):
    check_parts(parts_for(PartSchedule.plan(first, 1000), MAX_OBJECT_SIZE))


def test_minimum_part_size_shortens_the_interval():
    schedule = PartSchedule.plan(MIN_PART_SIZE, 1000)
    # 5 MiB doubling every 1,000 parts holds only 4.88 TiB.
    assert schedule.interval < 1000
    assert schedule.capacity() >= MAX_OBJECT_SIZE


def test_constant_parts_when_growth_is_off():
    schedule = PartSchedule.plan(8 * MiB, 0)
    assert {schedule.size(n) for n in (1, 2, 5000, MAX_PARTS)} == {8 * MiB}
    assert schedule.capacity() == 8 * MiB * MAX_PARTS


def test_parts_double_every_interval():
    schedule = PartSchedule.plan(5 * MiB, 2)
    assert (schedule.flat, schedule.interval) == (2, 2)
    assert [schedule.size(n) // MiB for n in range(1, 8)] == [5, 5, 10, 10, 20, 20, 40]
    assert schedule.size(MAX_PARTS) == MAX_PART_SIZE
    with pytest.raises(ValueError):
        schedule.size(0)


def test_alloc_size_picks_the_first_part():
    assert first_part_size(8 * MiB, None) == 8 * MiB
    assert first_part_size(8 * MiB, 100 * MiB) == 8 * MiB  # small: the configured size
    assert first_part_size(8 * MiB, 64 * GiB) == 14 * MiB  # 64 GiB / 5,000, whole MiB
    assert first_part_size(8 * MiB, 10 * TiB) == 2098 * MiB
    assert first_part_size(8 * MiB, 100 * TiB) == MAX_PART_SIZE


def test_an_announced_size_is_cut_in_equal_parts_smaller_than_with_growth():
    size = 1 * TiB
    announced = PartSchedule.plan(8 * MiB, 1000, alloc_size=size)
    parts = parts_for(announced, size)
    check_parts(parts)
    assert len(parts) <= 5000 and set(parts[:-1]) == {210 * MiB}
    # Without the hint the same object ends with parts five times as large.
    assert max(parts_for(PartSchedule.plan(8 * MiB, 1000), size)) == 1 * GiB
    # Larger than announced: parts grow again, up to 5 TiB.
    assert announced.capacity() >= MAX_OBJECT_SIZE
    check_parts(parts_for(announced, MAX_OBJECT_SIZE))


@given(
    part_size=st.integers(MIN_PART_SIZE, 64 * MiB),
    interval=st.integers(1, MAX_PARTS),
    alloc=st.integers(0, MAX_OBJECT_SIZE),
)
def test_any_announced_size_fits_without_growth_and_5_tib_still_fits(part_size, interval, alloc):
    schedule = PartSchedule.plan(part_size, interval, alloc_size=alloc)
    assert schedule.capacity() >= MAX_OBJECT_SIZE
    assert schedule.flat * schedule.first >= alloc
    assert schedule.flat <= max(interval, MAX_PARTS // 2)
    assert MIN_PART_SIZE <= schedule.size(schedule.flat + 1) <= MAX_PART_SIZE


@given(size=st.integers(0, MAX_OBJECT_SIZE))
def test_multipart_copy_parts(size):
    step = copy_part_size(size)
    assert MIN_PART_SIZE <= step <= MAX_PART_SIZE
    assert -(-size // step) <= MAX_PARTS
