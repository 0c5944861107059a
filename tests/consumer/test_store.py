"""The embedded window store keeps Redis's semantics, expiry included, so a long-running
embedded service (a live feed on standard input) holds at most a TTL's worth of events."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.store import MemoryWindowStore
from fame.windows import VideoState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _state(video_id: str) -> VideoState:
    state = VideoState.from_fields(video_id, {})
    state.segments_seen = 7
    return state


def test_a_record_and_a_state_expire_ttl_after_their_last_write() -> None:
    clock = Clock()
    store = MemoryWindowStore(ttl_s=60, clock=clock)
    store.commit_segment(_state("v"), "e1", b"segment", final=False)
    clock.now += 50
    store.commit_segment(_state("v"), "e2", b"segment", final=False)  # the state's TTL restarts
    clock.now += 20  # e1's record is 70 s old, the state and e2's record 20 s
    assert store.load("v", "e1").record is None
    loaded = store.load("v", "e2")
    assert loaded.record == b"segment" and loaded.state.segments_seen == 7
    assert len(store) == 2
    clock.now += 60
    assert store.load("v", "e2").record is None
    assert store.load("v", "e2").state.segments_seen == 0
    assert len(store) == 0


def test_a_duplicate_gets_the_first_record_and_a_final_segment_drops_the_state() -> None:
    store = MemoryWindowStore(ttl_s=60, clock=Clock())
    store.commit_segment(_state("v"), "e1", b"segment", final=False)
    assert store.commit_segment(_state("v"), "e2", b"verdict", final=True) == b"verdict"
    assert store.commit_segment(_state("v"), "e2", b"other", final=True) == b"verdict"
    assert store.load("v", "e2").state.segments_seen == 0  # no state after the final segment
    assert len(store) == 2  # the two records


def test_memory_is_bounded_by_the_event_rate_times_the_ttl() -> None:
    clock = Clock()
    store = MemoryWindowStore(ttl_s=10, clock=clock)
    rng = np.random.default_rng(0)
    for i in range(1000):  # one event a second, a third of them leaving a state behind
        clock.now += 1
        store.commit_segment(_state(f"v{i}"), f"e{i}", b"x", final=bool(rng.random() < 2 / 3))
        assert len(store) <= 2 * 10
    clock.now += 10
    assert len(store) == 0


def test_the_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        MemoryWindowStore(ttl_s=0)
