"""Decoding ahead in a thread: same items in the same order, errors at their place, and a
caller that stops early stops the thread."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from fame.video.ahead import DecodeAhead


def _slow(n: int) -> Iterator[int]:
    for i in range(n):
        time.sleep(0.001)
        yield i


def test_items_arrive_in_order_and_the_thread_time_is_counted() -> None:
    timings = {"decode": 0.0}
    with DecodeAhead(_slow(20), timings, "decode") as items:
        assert list(items) == list(range(20))
    assert timings["decode"] >= 20 * 1.0


def test_an_error_of_the_iterator_is_raised_at_its_place() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("corrupt packet")

    seen = []
    with (
        pytest.raises(ValueError, match="corrupt packet"),
        DecodeAhead(failing(), {"decode": 0.0}, "decode") as items,
    ):
        for item in items:
            seen.append(item)
    assert seen == [1, 2]


def test_a_caller_that_stops_early_stops_the_thread() -> None:
    endless = itertools.count()
    ahead = DecodeAhead(endless, {"decode": 0.0}, "decode")
    with pytest.raises(RuntimeError, match="detector failed"), ahead as items:
        for item in items:
            if item == 3:
                raise RuntimeError("detector failed")
    assert not ahead._thread.is_alive()
    assert next(endless) < 3 + 4 + 3  # it stopped within a queue's depth of where we were
