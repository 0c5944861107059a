"""Persistence of window state and of processed-event records: Redis, or memory when embedded.

Keys carry a hash tag on the video id (``fame:{<video_id>}:...``) so that everything of one video
lives in one Redis Cluster slot and can change in one transaction:

- ``fame:{v}:state`` — hash: the `VideoState` header and one float16 tail blob per track;
- ``fame:{v}:event:<event_id>`` — the processed-event record: the verdict JSON for a final
  segment, ``b"segment"`` for an intermediate one.

`commit_segment` writes the new state and the record atomically (WATCH/MULTI); if another consumer
recorded the same event first it returns that record instead, so a duplicate delivery publishes
the byte-identical verdict. Every key has a TTL; the final segment deletes the state.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis

from fame.errors import TransientError
from fame.windows import VideoState
from schemas.errors import ErrorCode

SEGMENT_RECORD = b"segment"


def state_key(video_id: str) -> str:
    return f"fame:{{{video_id}}}:state"


def event_key(video_id: str, event_id: str) -> str:
    return f"fame:{{{video_id}}}:event:{event_id}"


@dataclass(frozen=True)
class Loaded:
    state: VideoState
    record: bytes | None  # the processed-event record, when this event was already processed


class WindowStore(ABC):
    """Thread-safe. Raises `TransientError` (code internal_error) when the store is unreachable."""

    @abstractmethod
    def load(self, video_id: str, event_id: str) -> Loaded:
        """The video's state and this event's processed record (None when not processed)."""

    @abstractmethod
    def commit_segment(self, state: VideoState, event_id: str, record: bytes, final: bool) -> bytes:
        """Persist `state` (or delete it when `final`) with the event's record, atomically.

        Returns the record now stored: ``record`` itself, or the one another worker stored first
        for the same event (the caller then publishes that one)."""

    @abstractmethod
    def ping(self) -> bool:
        """Reachable right now (readiness)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


class MemoryWindowStore(WindowStore):
    """The embedded default: Redis's semantics in this process, expiry included.

    Why the TTL: an embedded service fed a live stream (``--input -``) runs as long as Redis
    would, and without expiry every processed-event record (and the state of a video whose last
    segment never came) would stay until the process ends. Entries expire ``ttl_s`` after their
    last write, as `RedisWindowStore`'s keys do, so memory is bounded by the event rate times
    the TTL. One TTL for all entries makes write order expiry order: expired entries are always
    at the front of the two ordered dicts, and each call drops them in passing."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (expires at, value), oldest write first
        self._states: OrderedDict[str, tuple[float, dict[bytes, bytes]]] = OrderedDict()
        self._records: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()

    def load(self, video_id: str, event_id: str) -> Loaded:
        with self._lock:
            self._expire()
            _, fields = self._states.get(video_id, (0.0, {}))
            _, record = self._records.get((video_id, event_id), (0.0, None))
        return Loaded(VideoState.from_fields(video_id, dict(fields)), record)

    def commit_segment(self, state: VideoState, event_id: str, record: bytes, final: bool) -> bytes:
        with self._lock:
            self._expire()
            existing = self._records.get((state.video_id, event_id))
            if existing is not None:
                return existing[1]
            expires = self._clock() + self._ttl_s
            self._states.pop(state.video_id, None)
            if not final:
                fields = {k.encode(): v for k, v in state.to_fields().items()}
                self._states[state.video_id] = (expires, fields)
            self._records[(state.video_id, event_id)] = (expires, record)
        return record

    def _expire(self) -> None:
        now = self._clock()
        for entries in (self._states, self._records):
            while entries and next(iter(entries.values()))[0] <= now:
                entries.popitem(last=False)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        """Entries held (states and records), expired ones dropped first."""
        with self._lock:
            self._expire()
            return len(self._states) + len(self._records)


class RedisWindowStore(WindowStore):
    """Redis (standalone or Cluster-compatible keys); reads and writes are pipelined."""

    def __init__(self, url: str, ttl_s: int, password: str | None = None) -> None:
        self._client = redis.Redis.from_url(
            url,
            password=password,
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=10,
        )
        self._ttl_s = ttl_s

    def load(self, video_id: str, event_id: str) -> Loaded:
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.hgetall(state_key(video_id))
            pipe.get(event_key(video_id, event_id))
            fields, record = pipe.execute()
        except redis.RedisError as error:
            raise TransientError(f"redis load failed: {error}") from error
        return Loaded(VideoState.from_fields(video_id, fields), record)

    def commit_segment(self, state: VideoState, event_id: str, record: bytes, final: bool) -> bytes:
        skey, ekey = state_key(state.video_id), event_key(state.video_id, event_id)
        try:
            with self._client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(ekey)  # type: ignore[no-untyped-call]
                        existing = pipe.get(ekey)
                        if existing is not None:
                            return existing if isinstance(existing, bytes) else existing.encode()
                        pipe.multi()
                        pipe.delete(skey)
                        if not final:
                            pipe.hset(skey, mapping=cast(Any, state.to_fields()))
                            pipe.expire(skey, self._ttl_s)
                        pipe.set(ekey, record, ex=self._ttl_s)
                        pipe.execute()
                        return record
                    except redis.WatchError:
                        continue
        except redis.RedisError as error:
            raise TransientError(
                f"redis commit failed: {error}", code=ErrorCode.INTERNAL_ERROR
            ) from error

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def memory_usage(self, video_id: str) -> int:
        """Bytes Redis reports for the video's state key (for the docs' per-track figure)."""
        return int(self._client.memory_usage(state_key(video_id)) or 0)

    def close(self) -> None:
        self._client.close()
