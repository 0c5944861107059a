"""Wiring: settings -> model, front end, store, transport, pipeline, processor, health server.

The Kafka/Redis service and the embedded default differ only in the transport and the store;
everything between them is the same code.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

import torch

from consumer import logs
from consumer.backends.base import Source
from consumer.health import HealthServer
from consumer.metrics import Metrics
from consumer.pipeline import Pipeline, RetryPolicy, Topics
from consumer.processor import Processor
from consumer.publish import Publisher
from consumer.settings import Settings
from consumer.store import WindowStore
from fame.attribution import ModelIdentity
from fame.checkpoint import load_checkpoint, resolve_checkpoint
from fame.data.cache import CROP_SIZE
from fame.faces.frontend import GPU_DETECT_BATCH, FrontEndConfig, FrontEndPool
from fame.inference import InferenceEngine
from fame.quantize import find_int8_encoder
from fame.video.decode import SamplingPolicy
from fame.video.fetch import FetchPolicy

log = logging.getLogger(__name__)


def frontend_config(settings: Settings) -> FrontEndConfig:
    """Crops are aligned at the training cache's size; the engine resizes them for the model
    exactly as training does."""
    return FrontEndConfig(
        fetch=FetchPolicy(
            file_roots=tuple(settings.file_roots),
            allow_private_addresses=settings.allow_private_addresses,
            allowed_hosts=None if settings.allowed_hosts is None else tuple(settings.allowed_hosts),
            allowed_private_networks=tuple(settings.allowed_private_networks),
            max_bytes=settings.max_video_bytes,
        ),
        sampling=SamplingPolicy(target_fps=settings.sample_fps, refuse_longer=True),
        detector_path=str(settings.detector_model) if settings.detector_model else None,
        crop_size_px=CROP_SIZE,
        detect_every=settings.detect_every,
        detect_batch=settings.detect_batch,
        det_size=settings.detect_size,
        detector_threads=settings.detector_threads,
        detector_backend=settings.detector_backend,
        hwaccel=settings.hwaccel,
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(settings.max_attempts, settings.retry_base_ms, settings.retry_max_ms)


@dataclass
class Service:
    """Everything a running consumer owns; `close` releases in reverse order."""

    settings: Settings
    source: Source
    publisher: Publisher
    store: WindowStore
    exit_when_idle: bool = False  # embedded: stop once the finite input is done
    metrics: Metrics = field(default_factory=Metrics)
    engine: InferenceEngine | None = None
    frontend: FrontEndPool | None = None
    processor: Processor | None = None
    health: HealthServer | None = None

    def build(self) -> Service:
        settings = self.settings
        device = "cuda" if torch.cuda.is_available() else "cpu"
        checkpoint = resolve_checkpoint(settings.checkpoint)
        model, meta = load_checkpoint(checkpoint, device=device)
        if settings.window_stride > meta.clip_len:
            raise ValueError(
                f"FAME_WINDOW_STRIDE={settings.window_stride} exceeds the model's clip length "
                f"{meta.clip_len}: frames between windows would never be scored"
            )
        identity = ModelIdentity.from_meta(meta)
        self.engine = InferenceEngine(
            model,
            meta,
            device,
            settings.max_batch,
            settings.max_wait_ms,
            observer=self.metrics.observe_batch,
            precision=settings.precision,
            int8_encoder=find_int8_encoder(checkpoint, settings.int8_encoder),
        )
        int8 = self.engine.int8_encoder_path
        self.metrics.model.info(
            {
                "name": identity.name,
                "version": identity.version,
                "device": device,
                "precision": self.engine.precision,
            }
        )
        log.info(
            "model %s %s on %s (%s%s), classes %s",
            identity.name,
            identity.version,
            device,
            self.engine.precision,
            f": encoder {int8}" if int8 else "",
            list(identity.classes),
        )
        self.frontend = FrontEndPool(
            frontend_config(settings),
            workers=settings.workers,
            task_timeout_s=settings.task_timeout_s,
            memory_limit_mb=settings.worker_memory_limit_mb,
            worker_setup=logs.child_setup(settings.log_level),
        )
        front = self.frontend.config
        log.info(
            "front end: %d workers x %d detector threads; detects every %d sampled frame(s), "
            "%s key frame(s) per detector call, at %d px; decoder %s",
            settings.workers,
            front.detector_threads,
            front.detect_every,
            front.detect_batch or f"auto: {GPU_DETECT_BATCH} on a GPU detector, else 1",
            front.det_size,
            front.hwaccel,
        )
        pipeline = Pipeline(
            publisher=self.publisher,
            topics=Topics(settings.verdicts_topic, settings.dlq_topic),
            store=self.store,
            analyze=self.frontend.submit,
            engine=self.engine,
            model=identity,
            metrics=self.metrics,
            retry=retry_policy(settings),
            window_stride=settings.window_stride,
            max_in_flight=settings.max_in_flight,
            max_verdict_tracks=settings.max_verdict_tracks,
        )
        self.processor = Processor(
            self.source,
            pipeline,
            self.publisher,
            self.metrics,
            max_in_flight=settings.max_in_flight,
            commit_interval_ms=settings.commit_interval_ms,
            drain_timeout_s=settings.drain_timeout_s,
            exit_when_idle=self.exit_when_idle,
        )
        return self

    def serve_health(self, port: int | None = None) -> None:
        self.health = HealthServer(
            self.settings.http_host,
            self.settings.http_port if port is None else port,
            self.metrics,
            alive=self._alive,
            ready=self._ready,
        )
        self.health.start()
        log.info("http server on port %d (/healthz /readyz /metrics)", self.health.port)

    def _alive(self) -> dict[str, bool]:
        """A stuck run loop, or a front-end pool that cannot run tasks (no worker can start, or
        its dispatcher failed): either way a restart is the cure."""
        loop_age_s = time.monotonic() - (self.processor.last_loop if self.processor else 0)
        return {
            "run_loop": loop_age_s < 60,
            "frontend_pool": self.frontend is None or self.frontend.healthy,
        }

    def _ready(self) -> dict[str, bool]:
        return {
            "model_loaded": self.engine is not None,
            "partitions_assigned": bool(self.processor and self.processor.assigned),
            "redis": self.store.ping(),
        }

    def run(self) -> None:
        """Run until the input is exhausted (embedded) or SIGTERM/SIGINT (service)."""
        assert self.processor is not None, "build() first"
        processor = self.processor
        if threading.current_thread() is threading.main_thread():

            def _stop(signum: int, frame: FrameType | None) -> None:
                log.info("signal %d: draining", signum)
                processor.stop()

            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)
        processor.run()

    def close(self) -> None:
        if self.health:
            self.health.close()
        if self.frontend:
            self.frontend.close()
        if self.engine:
            self.engine.close()
        self.publisher.close()
        self.store.close()
