"""Window planning across segments, state serialisation and track linking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fame.windows import TrackState, VideoState, kept_from, link_tracks, plan_windows


def _windows_over_segments(sizes: list[int], clip: int, stride: int) -> list[tuple[int, int]]:
    positions, start, has, out = 0, 0, False, []
    for i, size in enumerate(sizes):
        positions += size
        windows, start = plan_windows(positions, start, clip, stride, i == len(sizes) - 1, has)
        has = has or bool(windows)
        out += windows
    return out


@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=5),
    st.integers(1, 16),
    st.integers(1, 16),
)
def test_segmented_windows_equal_unsegmented(sizes: list[int], clip: int, stride: int) -> None:
    """Splitting a track into segments yields exactly the windows of the whole track."""
    stride = min(stride, clip)
    assert _windows_over_segments(sizes, clip, stride) == _windows_over_segments(
        [sum(sizes)], clip, stride
    )


@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=5).filter(lambda sizes: sizes[0] > 0),
    st.integers(1, 16),
    st.integers(1, 16),
)
def test_every_window_finds_its_frames_in_the_kept_tail(
    sizes: list[int], clip: int, stride: int
) -> None:
    """What a track keeps between segments (`kept_from`) holds every frame of every later full
    window, also across segments that bring the track no frame; only the final tail window may
    start one frame earlier (when the last segment brought the track none), and then it is
    scored on the T-1 frames kept."""
    stride = min(stride, clip)
    positions, start, has, kept = 0, 0, False, 0
    for i, size in enumerate(sizes):
        final = i == len(sizes) - 1
        positions += size
        windows, start = plan_windows(positions, start, clip, stride, final, has)
        for first, end in windows:
            tail_window = final and end == positions and end - first == clip
            assert first >= kept - (1 if tail_window and size == 0 else 0), (windows, kept)
        has = has or bool(windows)
        kept = max(kept, kept_from(positions, clip, final))


def test_a_last_segment_without_frames_gets_a_tail_window_of_the_frames_kept() -> None:
    """T=4, stride 4, segments of 4, 3 and 0 frames: the tail window (3, 7) finds frames 4-6."""
    assert kept_from(7, 4, final=False) == 4
    assert plan_windows(7, 4, 4, 4, final=True, has_windows=True) == ([(3, 7)], 4)


@given(st.integers(1, 200), st.integers(1, 16), st.integers(1, 16))
def test_final_windows_cover_every_frame(total: int, clip: int, stride: int) -> None:
    """With stride <= clip length (the service enforces it) no frame goes unscored."""
    stride = min(stride, clip)
    windows = _windows_over_segments([total], clip, stride)
    covered = set().union(*(range(a, b) for a, b in windows))
    assert covered == set(range(total))
    assert all(0 < b - a <= clip for a, b in windows)


def test_short_track_gets_one_masked_window() -> None:
    assert plan_windows(5, 0, 16, 8, final=True, has_windows=False) == ([(0, 5)], 0)
    assert plan_windows(5, 0, 16, 8, final=False, has_windows=False) == ([], 0)


def test_bad_window_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="stride <= clip_len"):
        plan_windows(10, 0, 4, 5, final=True, has_windows=False)
    with pytest.raises(ValueError, match="clip_len"):
        plan_windows(10, 0, 0, 1, final=True, has_windows=False)


def test_state_round_trips_through_hash_fields() -> None:
    track = TrackState(
        track_id=3,
        last_box=[1, 2, 30, 40],
        first_frame=0,
        last_frame=9,
        start_s=0.0,
        end_s=0.3,
        frames=10,
        score_sum=8.5,
        windows=2,
        prob_sum=[0.5, 1.5],
        salient=[(0.4, 7, 0.23)],
        next_window_start=8,
        positions=10,
        tail_frames=[8, 9],
        tail_times=[0.26, 0.3],
        tail=np.arange(8, dtype=np.float16).reshape(2, 4),
    )
    state = VideoState(
        "v1",
        segments_seen=1,
        next_segment=1,
        next_track_id=4,
        frame_offset=120,
        time_offset_s=4.0,
        tracks={3: track},
    )
    fields = {k.encode(): v for k, v in state.to_fields().items()}
    again = VideoState.from_fields("v1", fields)
    assert again.tracks[3].salient == [(0.4, 7, 0.23)]
    np.testing.assert_array_equal(again.tracks[3].tail, track.tail)
    again.tracks[3].tail = track.tail
    assert again == state


def test_tracks_link_by_overlap_and_new_faces_get_new_ids() -> None:
    state = VideoState("v", next_track_id=2)
    for tid, box in ((0, [0, 0, 10, 10]), (1, [50, 50, 60, 60])):
        state.tracks[tid] = TrackState(tid, box, 0, 0, 0.0, 0.0)
    boxes = [
        np.array(b, np.float32) for b in ([51, 51, 61, 61], [100, 100, 110, 110], [1, 0, 11, 10])
    ]
    assert link_tracks(state, boxes) == [1, 2, 0]
    assert state.next_track_id == 3
