"""Prometheus metrics of the service (served on ``/metrics``), on a registry of its own."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

_LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Metrics:
    """One instance per process; every collector is registered on `registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # the standard process_* (resident memory, CPU seconds, open fds), python_gc_* and
        # python_info series that memory and leak alerts are written against
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.events = Counter(
            "fame_events_total", "Events finished, by outcome", ["outcome"], registry=r
        )
        self.verdicts = Counter(
            "fame_verdicts_total",
            "Verdicts published, by status and label",
            ["status", "label"],
            registry=r,
        )
        self.dead_letters = Counter(
            "fame_dead_letters_total",
            "Dead letters published, by error code",
            ["code"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "fame_stage_seconds",
            "Wall time per pipeline stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.batch_size = Histogram(
            "fame_batch_items",
            "Items per model call (frames for embed, windows for classify)",
            ["kind"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("fame_in_flight_events", "Events being processed", registry=r)
        self.paused = Gauge(
            "fame_paused_partitions", "Partitions paused (backpressure)", registry=r
        )
        self.lag = Gauge(
            "fame_consumer_lag",
            "Records behind the high watermark, per partition",
            ["partition"],
            registry=r,
        )
        self.commits = Counter("fame_commits_total", "Offset commits", registry=r)
        self.model = Info(
            "fame_model", "The loaded model: name, version, device, precision", registry=r
        )
        self.frontend = Info(
            "fame_frontend",
            "The front end as the latest video saw it: detector (runtime) and decoder",
            registry=r,
        )
        self.decoded = Counter(
            "fame_videos_decoded_total",
            "Videos decoded, by decoder (nvdec; software, including NVDEC's fallbacks)",
            ["decoder"],
            registry=r,
        )

    def dead_lettered(self) -> int:
        """Dead letters published so far, whatever their code."""
        return int(
            sum(
                sample.value
                for metric in self.dead_letters.collect()
                for sample in metric.samples
                if sample.name == "fame_dead_letters_total"
            )
        )

    def observe_frontend(self, detector: str, hardware_decoding: bool) -> None:
        decoder = "nvdec" if hardware_decoding else "software"
        self.frontend.info({"detector": detector, "decoder": decoder})
        self.decoded.labels(decoder=decoder).inc()

    def observe_batch(self, kind: str, items: int, seconds: float) -> None:
        self.batch_size.labels(kind=kind).observe(items)
        self.stage_seconds.labels(stage=f"model_{kind}").observe(seconds)
