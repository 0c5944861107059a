"""Bytes of Redis memory per active track window, and per processed event, as ``MEMORY USAGE``
reports them.

The state is written by the service's own `RedisWindowStore.commit_segment`, so the key layout,
encoding and header are exactly what production stores: a `VideoState` whose tracks each hold the
T-1 newest frame embeddings (float16) plus their running evidence, filled to the sizes they reach
in a long video (full salient list, one probability per class). The processed-event record of a
final segment is the verdict as the service serialises it (here the schema's example of an
attributed verdict, two tracks): Redis keeps one per event for ``FAME_WINDOW_TTL_S``, so it sizes
Redis as much as the windows do.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import redis

from consumer.store import RedisWindowStore, event_key, state_key
from fame.windows import MAX_SALIENT, TrackState, VideoState
from schemas.verdict import AttributionVerdict

EXAMPLE_VERDICT = (
    Path(__file__).resolve().parents[1]
    / "schemas"
    / "examples"
    / "attribution_verdict_attributed.json"
)

TARGET_BYTES_PER_TRACK = 32 * 1024


def full_track(track_id: int, clip_len: int, embed_dim: int, classes: int) -> TrackState:
    """A track as it looks mid-video: T-1 tail rows, full salient list, all classes scored."""
    rng = np.random.default_rng(track_id)
    rows = clip_len - 1
    first = 10_000 * track_id
    return TrackState(
        track_id=track_id,
        last_box=[101.5, 87.25, 305.75, 342.0],
        first_frame=first,
        last_frame=first + 9_999,
        start_s=first / 30.0,
        end_s=(first + 9_999) / 30.0,
        frames=2_500,
        score_sum=2_123.456789,
        windows=311,
        prob_sum=rng.random(classes).tolist(),
        salient=[
            (float(rng.random()), first + 30 * i, (first + 30 * i) / 30.0)
            for i in range(MAX_SALIENT)
        ],
        next_window_start=2_488,
        positions=2_500,
        tail_frames=[first + 9_985 + i for i in range(rows)],
        tail_times=[(first + 9_985 + i) / 30.0 for i in range(rows)],
        tail=rng.standard_normal((rows, embed_dim)).astype(np.float16),
    )


def run(
    redis_url: str,
    clip_len: int = 16,
    embed_dim: int = 768,
    classes: int = 6,
    track_counts: tuple[int, ...] = (1, 4),
    ttl_s: int = 600,
) -> dict[str, Any]:
    """``MEMORY USAGE`` of the state key for each track count; the keys are deleted after."""
    store = RedisWindowStore(redis_url, ttl_s=ttl_s)
    client = redis.Redis.from_url(redis_url)
    rows = []
    try:
        for count in track_counts:
            video_id = f"bench-{uuid.uuid4().hex[:12]}"
            state = VideoState(
                video_id=video_id,
                segments_seen=3,
                next_segment=3,
                next_track_id=count,
                frame_offset=30_000,
                time_offset_s=1_000.0,
                tracks={t: full_track(t, clip_len, embed_dim, classes) for t in range(count)},
            )
            store.commit_segment(state, "bench-event", b"segment", final=False)
            try:
                total = store.memory_usage(video_id)
                payload = sum(len(k) + len(v) for k, v in state.to_fields().items())
            finally:
                client.delete(state_key(video_id), event_key(video_id, "bench-event"))
            rows.append(
                {
                    "tracks": count,
                    "memory_usage_bytes": total,
                    "field_payload_bytes": payload,
                    "bytes_per_track": total / count,
                }
            )
        event_record = _event_record(store, client)
        info = client.info("server")
    finally:
        store.close()
        client.close()
    per_track = rows[0]["bytes_per_track"]
    return {
        "redis_version": info.get("redis_version"),
        "clip_len": clip_len,
        "embed_dim": embed_dim,
        "tail_rows": clip_len - 1,
        "tail_bytes": (clip_len - 1) * embed_dim * 2,
        "rows": rows,
        "event_record": event_record,
        "target_bytes_per_track": TARGET_BYTES_PER_TRACK,
        "meets_target": all(r["bytes_per_track"] <= TARGET_BYTES_PER_TRACK for r in rows)
        and per_track > 0,
    }


def _event_record(store: RedisWindowStore, client: redis.Redis) -> dict[str, Any]:
    """``MEMORY USAGE`` of the record a final segment leaves: its verdict, serialised as the
    pipeline does (`model_dump_json`), for ``FAME_WINDOW_TTL_S``."""
    verdict = AttributionVerdict.model_validate_json(EXAMPLE_VERDICT.read_text())
    record = verdict.model_dump_json().encode()
    video_id = f"bench-{uuid.uuid4().hex[:12]}"
    store.commit_segment(VideoState(video_id=video_id), "bench-event", record, final=True)
    try:
        total = int(client.memory_usage(event_key(video_id, "bench-event")) or 0)
    finally:
        client.delete(state_key(video_id), event_key(video_id, "bench-event"))
    return {
        "tracks": len(verdict.tracks),
        "verdict_bytes": len(record),
        "memory_usage_bytes": total,
    }
