"""One inference engine per device: a micro-batcher in front of FAME.

Pipeline workers (threads, one per in-flight event) call `embed` and `classify`; a single model
thread gathers the requests of all in-flight videos into batches (up to `max_batch` windows or
`max_batch * clip_len` frames, waiting at most `max_wait_ms` for more only while the queue is
empty), runs the model, and hands each caller its slice. Under load the queue is never empty, so
batches fill without waiting; when idle a lone request waits at most `max_wait_ms`. Each frame is
embedded once: windows reuse the per-frame embeddings (`FAME.embed_frames` /
`FAME.classify_embeddings`). Inputs are channels-last; the precision follows `fame.precision`
(bf16 autocast on CUDA; on a CPU the int8 encoder of `fame.quantize` where the checkpoint has
one, else bf16 with native bf16, else fp32).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from fame.checkpoint import CheckpointMeta
from fame.data.clips import to_model_input
from fame.errors import FameError, TransientError
from fame.model import FAME
from fame.precision import Precision
from fame.quantize import select_precision
from schemas.errors import ErrorCode


@dataclass
class _Request:
    kind: str  # "embed" | "classify"
    items: int
    payload: tuple[Any, ...]
    future: Future[Any] = field(default_factory=Future)


BatchObserver = Callable[[str, int, float], None]  # (kind, items, seconds)


class EngineClosedError(TransientError):
    """The engine was closed before it ran the request: the caller gives up (another consumer
    may process the event), rather than waiting for a model thread that is gone."""

    code = ErrorCode.MODEL_ERROR


class InferenceEngine:
    """Thread-safe facade; `close()` lets the running batch finish and fails every other
    request, queued or submitted later, with `EngineClosedError`, so no caller waits forever.

    ``int8_encoder``: the checkpoint's int8 encoder file (`fame.quantize.find_int8_encoder`),
    used where the precision resolves to int8.
    """

    def __init__(
        self,
        model: FAME,
        meta: CheckpointMeta,
        device: str | torch.device = "cpu",
        max_batch: int = 64,
        max_wait_ms: float = 10.0,
        observer: BatchObserver | None = None,
        precision: Precision = "auto",
        int8_encoder: str | Path | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.meta = meta
        self.device = torch.device(device)
        self.clip_len = meta.clip_len
        self.max_batch = max_batch
        self.max_frames = max_batch * meta.clip_len
        self.max_wait_s = max_wait_ms / 1000.0
        self._observer = observer
        self.precision, self._int8 = select_precision(
            precision, self.device, int8_encoder, meta.sha256
        )
        self.int8_encoder_path = None if self._int8 is None else self._int8.path
        self.model = model.to(self.device).eval().to(memory_format=torch.channels_last)
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closing = threading.Lock()  # orders `close` against `_submit`
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fame-engine", daemon=True)
        self._thread.start()

    # Public API (any thread) ------------------------------------------------------------------

    def embed(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Aligned RGB crops [N, S, S, 3] -> per-frame embeddings [N, D] (float32)."""
        if crops.shape[0] == 0:
            return np.zeros((0, self.model.embed_dim), np.float32)
        parts = [
            self._submit("embed", crops[i : i + self.max_frames])
            for i in range(0, crops.shape[0], self.max_frames)
        ]
        return np.concatenate([part.result() for part in parts])

    def classify(
        self, windows: NDArray[np.float32], mask: NDArray[np.bool_]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Embedding windows [W, T, D] with validity mask [W, T] -> (probs [W, C], attn [W, T])."""
        if windows.shape[0] == 0:
            classes = len(self.meta.classes)
            return np.zeros((0, classes), np.float32), np.zeros((0, windows.shape[1]), np.float32)
        parts = [
            self._submit("classify", windows[i : i + self.max_batch], mask[i : i + self.max_batch])
            for i in range(0, windows.shape[0], self.max_batch)
        ]
        results = [part.result() for part in parts]
        return (
            np.concatenate([r[0] for r in results]),
            np.concatenate([r[1] for r in results]),
        )

    def close(self) -> None:
        with self._closing:
            self._closed = True
            while True:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                if request is not None:
                    _closed(request)
            self._queue.put(None)
        self._thread.join(timeout=30)

    # Model thread -----------------------------------------------------------------------------

    def _submit(self, kind: str, *payload: Any) -> Future[Any]:
        request = _Request(kind, int(payload[0].shape[0]), payload)
        with self._closing:
            if self._closed:
                _closed(request)
            else:
                self._queue.put(request)
        return request.future

    def _run(self) -> None:
        pending: list[_Request] = []
        while True:
            first = pending.pop(0) if pending else self._queue.get()
            if first is None:
                return
            if self._closed:  # taken from the queue before `close` emptied it
                _closed(first)
                continue
            batch, limit = [first], self.max_frames if first.kind == "embed" else self.max_batch
            items = first.items
            deadline = time.monotonic() + self.max_wait_s
            while items < limit:
                try:
                    timeout = max(0.0, deadline - time.monotonic())
                    nxt = (
                        self._queue.get(timeout=timeout)
                        if timeout > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                if nxt.kind != first.kind or items + nxt.items > limit:
                    pending.append(nxt)
                    break
                batch.append(nxt)
                items += nxt.items
            self._execute(first.kind, batch, items)

    def _execute(self, kind: str, batch: list[_Request], items: int) -> None:
        started = time.perf_counter()
        try:
            with (
                torch.inference_mode(),
                torch.autocast(
                    self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
                ),
            ):
                outputs: list[Any]
                if kind == "embed":
                    outputs = self._embed_batch(batch)
                else:
                    outputs = self._classify_batch(batch)
        except Exception as error:  # every caller of this batch sees the failure
            wrapped = FameError(f"model call failed: {error}", code=ErrorCode.MODEL_ERROR)
            wrapped.__cause__ = error
            for request in batch:
                request.future.set_exception(wrapped)
            return
        for request, output in zip(batch, outputs, strict=True):
            request.future.set_result(output)
        if self._observer is not None:
            self._observer(kind, items, time.perf_counter() - started)

    def _embed_batch(self, batch: list[_Request]) -> list[NDArray[np.float32]]:
        crops = torch.from_numpy(np.concatenate([r.payload[0] for r in batch]))
        # the same normalisation and resize as training (crops come at the cache's size)
        x = to_model_input(self.model, crops.to(self.device, non_blocking=True)[None])[0]
        if self._int8 is not None:
            embeddings = self._int8(x.numpy())
        else:
            x = x.contiguous(memory_format=torch.channels_last)
            embeddings = self.model.embed_frames(x).float().cpu().numpy()
        return _split(embeddings, [r.items for r in batch])

    def _classify_batch(
        self, batch: list[_Request]
    ) -> list[tuple[NDArray[np.float32], NDArray[np.float32]]]:
        windows = torch.from_numpy(np.concatenate([r.payload[0] for r in batch])).to(self.device)
        mask = torch.from_numpy(np.concatenate([r.payload[1] for r in batch])).to(self.device)
        logits, attention = self.model.classify_embeddings(windows, mask)
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        attn = attention.float().cpu().numpy()
        sizes = [r.items for r in batch]
        return list(zip(_split(probs, sizes), _split(attn, sizes), strict=True))


def _closed(request: _Request) -> None:
    request.future.set_exception(EngineClosedError(f"inference engine closed: {request.kind}"))


def _split(array: NDArray[Any], sizes: list[int]) -> list[NDArray[Any]]:
    return np.split(array, np.cumsum(sizes)[:-1])
