"""Fold one segment's face tracks into the video's window state; build the verdict at the end.

Per track: embed the new frames once, prepend the carried tail (the frames not yet covered by a
full window), score every window that is now complete, fold its probabilities and attention into
the track's running evidence, keep the new tail. The final segment also scores what is left
(short tracks get one masked window), then the tracks are aggregated with `fame.aggregate`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from fame.aggregate import decide_video
from fame.checkpoint import CheckpointMeta
from fame.faces.frontend import FaceTrack, FrontEndResult
from fame.inference import InferenceEngine
from fame.windows import TrackState, VideoState, kept_from, link_tracks, plan_windows
from schemas import AttributionVerdict, ModelInfo, SalientFrame, TrackResult, make_verdict_id

VERDICT_SALIENT_FRAMES = 5


@dataclass(frozen=True)
class ModelIdentity:
    """What a verdict says about the model; `version` is part of the verdict id."""

    name: str
    version: str
    sha256: str | None
    classes: tuple[str, ...]
    unknown_threshold: float

    @classmethod
    def from_meta(cls, meta: CheckpointMeta) -> ModelIdentity:
        version = f"{meta.code_version}+{meta.sha256[:12]}" if meta.sha256 else meta.code_version
        return cls(
            meta.model_name,
            version,
            meta.sha256 or None,
            tuple(meta.classes),
            meta.unknown_threshold,
        )

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name, version=self.version, sha256=self.sha256, classes=list(self.classes)
        )


def fold_segment(
    state: VideoState,
    result: FrontEndResult,
    engine: InferenceEngine,
    stride: int,
    final: bool,
    timings_ms: dict[str, float],
) -> None:
    """Update `state` in place with one segment's tracks (and close them when `final`)."""
    started = time.perf_counter()
    tracks = [t for t in result.tracks if len(t.frame_indices) > 0]
    ids = link_tracks(state, [t.boxes[0] for t in tracks])
    crops = [t.crops for t in tracks]
    embeddings = engine.embed(np.concatenate(crops)) if crops else np.zeros((0, 0), np.float32)
    timings_ms["embed"] = timings_ms.get("embed", 0.0) + _ms(started)

    started = time.perf_counter()
    offset = 0
    for track_id, face in zip(ids, tracks, strict=True):
        count = len(face.frame_indices)
        track = state.tracks.get(track_id) or _new_track(track_id, face, state)
        state.tracks[track_id] = track
        _extend(track, face, embeddings[offset : offset + count], state)
        offset += count
    for track in state.tracks.values():
        _score_windows(track, engine, stride, final)
    frames, seconds = result.video.extent()  # the header alone may say 0 frames (MKV, TS)
    state.frame_offset += frames
    state.time_offset_s += seconds
    state.segments_seen += 1
    state.next_segment += 1
    timings_ms["temporal"] = timings_ms.get("temporal", 0.0) + _ms(started)


def _new_track(track_id: int, face: FaceTrack, state: VideoState) -> TrackState:
    return TrackState(
        track_id=track_id,
        last_box=[float(v) for v in face.boxes[0]],
        first_frame=state.frame_offset + int(face.frame_indices[0]),
        last_frame=state.frame_offset + int(face.frame_indices[0]),
        start_s=state.time_offset_s + float(face.timestamps_s[0]),
        end_s=state.time_offset_s + float(face.timestamps_s[0]),
    )


def _extend(
    track: TrackState, face: FaceTrack, embeddings: NDArray[np.float32], state: VideoState
) -> None:
    frames = [state.frame_offset + int(i) for i in face.frame_indices]
    times = [state.time_offset_s + float(t) for t in face.timestamps_s]
    new = embeddings.astype(np.float16)
    track.tail = new if track.tail.size == 0 else np.concatenate([track.tail, new])
    track.tail_frames += frames
    track.tail_times += times
    track.positions += len(frames)
    track.frames += len(frames)
    track.score_sum += float(np.sum(face.scores))
    track.last_box = [float(v) for v in face.boxes[-1]]
    track.last_frame, track.end_s = frames[-1], times[-1]


def _score_windows(track: TrackState, engine: InferenceEngine, stride: int, final: bool) -> None:
    clip_len = engine.clip_len
    base = track.positions - len(track.tail_frames)
    windows, next_start = plan_windows(
        track.positions, track.next_window_start, clip_len, stride, final, track.windows > 0
    )
    windows = [(max(start, base), end) for start, end in windows]
    if windows:
        dim = track.tail.shape[1]
        batch = np.zeros((len(windows), clip_len, dim), np.float32)
        mask = np.zeros((len(windows), clip_len), bool)
        for row, (start, end) in enumerate(windows):
            batch[row, : end - start] = track.tail[start - base : end - base]
            mask[row, : end - start] = True
        probs, attention = engine.classify(batch, mask)
        for row, (start, end) in enumerate(windows):
            span = slice(start - base, end - base)
            track.add_window(
                probs[row],
                attention[row, : end - start],
                track.tail_frames[span],
                track.tail_times[span],
            )
    keep_from = max(base, kept_from(track.positions, clip_len, final)) - base
    track.tail = track.tail[keep_from:]
    track.tail_frames = track.tail_frames[keep_from:]
    track.tail_times = track.tail_times[keep_from:]
    track.next_window_start = next_start


def build_verdict(
    event_id: str,
    segment_index: int,
    state: VideoState,
    model: ModelIdentity,
    timings_ms: dict[str, float],
) -> AttributionVerdict:
    """The verdict of a closed video: `attributed` over its scored tracks, else `no_face`."""
    scored = [t for t in sorted(state.tracks.values(), key=lambda t: t.track_id) if t.windows]
    common = {
        "verdict_id": make_verdict_id(event_id, model.version),
        "event_id": event_id,
        "video_id": state.video_id,
        "segment_index": segment_index,
        "model": model.info(),
        "timings_ms": {k: round(v, 3) for k, v in timings_ms.items()},
        "produced_at": datetime.now(UTC),
    }
    if not scored:
        return AttributionVerdict(status="no_face", **common)  # type: ignore[arg-type]
    track_probs = [t.mean_probs() for t in scored]
    decision = decide_video(
        track_probs, list(model.classes), unknown_threshold=model.unknown_threshold
    )
    assert decision.class_index is not None  # decide_video always names a class
    return AttributionVerdict(
        status="attributed",
        label=model.classes[decision.class_index],
        confidence=round(decision.confidence, 6),
        probabilities=_probabilities(decision.probs, model.classes),
        manipulated=decision.is_manipulated,
        unknown_generator=decision.is_unknown,
        tracks=[_track_result(t, p, model) for t, p in zip(scored, track_probs, strict=True)],
        **common,  # type: ignore[arg-type]
    )


def _track_result(
    track: TrackState, probs: NDArray[np.float64], model: ModelIdentity
) -> TrackResult:
    single = decide_video([probs], list(model.classes), unknown_threshold=model.unknown_threshold)
    assert single.class_index is not None
    return TrackResult(
        track_id=track.track_id,
        first_frame=track.first_frame,
        last_frame=track.last_frame,
        start_s=round(track.start_s, 6),
        end_s=round(track.end_s, 6),
        frames=track.frames,
        windows=track.windows,
        label=model.classes[single.class_index],
        probabilities=_probabilities(probs, model.classes),
        unknown_generator=single.is_unknown,
        salient_frames=[
            SalientFrame(frame_index=frame, timestamp_s=round(t, 6), weight=round(w, 6))
            for w, frame, t in track.salient[:VERDICT_SALIENT_FRAMES]
        ],
        mean_detection_score=round(min(1.0, track.score_sum / max(track.frames, 1)), 6),
    )


def _probabilities(probs: NDArray[np.float64], classes: tuple[str, ...]) -> dict[str, float]:
    return {
        name: round(float(min(1.0, max(0.0, p))), 6) for name, p in zip(classes, probs, strict=True)
    }


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
