"""Commit positions never skip unfinished work, whatever order events finish in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.messages import Partition
from consumer.offsets import OffsetTracker

P = Partition("events", 0)


@given(
    st.lists(st.integers(0, 10_000), min_size=1, max_size=60, unique=True).map(sorted),
    st.randoms(use_true_random=False),
)
def test_commit_position_is_the_lowest_unfinished_offset(offsets: list[int], rnd) -> None:  # type: ignore[no-untyped-def]
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.track(P, offset)
    order = offsets[:]
    rnd.shuffle(order)
    finished: set[int] = set()
    last_committed: int | None = None
    for offset in order:
        tracker.finish(P, offset)
        finished.add(offset)
        # the lowest unfinished offset (every offset below it finished: a restart skips no
        # work), offered whenever it moved since the last commit, and not held back
        unfinished = [o for o in offsets if o not in finished]
        expected = min(unfinished) if unfinished else max(offsets) + 1
        position = tracker.committable().get(P)
        assert position == (None if expected == last_committed else expected)
        if position is not None:
            tracker.committed({P: position})
            last_committed = position
    assert last_committed == max(offsets) + 1
    assert tracker.in_flight() == 0


def test_nothing_committable_until_the_first_offset_finishes() -> None:
    tracker = OffsetTracker()
    for offset in (5, 6, 7):
        tracker.track(P, offset)
    tracker.finish(P, 7)
    tracker.finish(P, 6)
    assert tracker.committable() == {P: 5}
    tracker.committed({P: 5})
    assert tracker.committable() == {}
    tracker.finish(P, 5)
    assert tracker.committable() == {P: 8}


def test_revoked_partitions_are_forgotten_and_late_finishes_ignored() -> None:
    tracker = OffsetTracker()
    tracker.track(P, 0)
    tracker.forget({P})
    tracker.finish(P, 0)
    assert tracker.committable() == {}
    assert tracker.in_flight() == 0
