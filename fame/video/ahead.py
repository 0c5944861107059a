"""Decode ahead in a thread while the caller detects, so one video keeps two cores busy.

PyAV (FFmpeg) and ONNX Runtime both release the GIL, so a decoding thread overlaps the
detector. Measured on this repository's 2-core CPU with a one-thread detector: one video's front
end 1.17x (driving_d10, 512x512) to 1.5x (source_s32, 1280x720) faster. It is the latency lever:
at full load every core is busy anyway, at half load one video's front end no longer runs on one.
The queue is short (`DEPTH` frames; a front end detecting in batches asks for one batch's frames),
so memory stays bounded by the decode limits.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
DEPTH = 4
_POLL_S = 0.05


class DecodeAhead(Generic[T]):
    """Iterates `items` in a thread; `for item in ahead` yields them in order, and an error of
    the iterator is raised there, at its place. Leaving the ``with`` stops the thread."""

    def __init__(
        self, items: Iterator[T], timings_ms: dict[str, float], stage: str, depth: int = DEPTH
    ) -> None:
        if depth < 1:  # a queue of size 0 would be unbounded
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._items = items
        self._timings_ms = timings_ms  # the thread adds its own time to ``stage``
        self._stage = stage
        self._queue: queue.Queue[tuple[T | None, BaseException | None]] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="fame-decode", daemon=True)

    def __enter__(self) -> DecodeAhead[T]:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def __iter__(self) -> Iterator[T]:
        while True:
            item, error = self._queue.get()
            if error is not None:
                raise error
            if item is None:
                return
            yield item

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                item = next(self._items, None)
                self._timings_ms[self._stage] += (time.perf_counter() - started) * 1000.0
                self._put((item, None))
                if item is None:
                    return
        except BaseException as error:  # MemoryError included: the caller decides what it is
            self._put((None, error))

    def _put(self, entry: tuple[T | None, BaseException | None]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_S)
                return
            except queue.Full:
                continue
