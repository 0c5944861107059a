"""The whole service against the real local Kafka and Redis: throughput, latency, stage shares.

`fame-consumer run` processes are started as a user would (environment variables), on fresh
topics. Loads: a burst (every event at once: the maximum rate), then events paced at fractions of
that rate. Latency is event-to-verdict: the verdict record's broker timestamp minus the event
record's (both CreateTime stamped on this machine's clock). Stage shares come from the verdicts'
``timings_ms`` (per event wall time, so stages that wait on a shared resource include the wait)
and from ``/metrics`` (``fame_stage_seconds``; ``fame_batch_items`` for the batch sizes), diffed
around the measured loads so that warm-up does not count. The front-end-only ceiling is measured
in the same run on the same videos, with the same number of front-end worker processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from bench import frontend, machine
from bench.stats import outcome_rate, percentiles, ratio, shares
from bench.untrained import make_checkpoint
from fame.precision import resolve_precision
from fame.quantize import find_int8_encoder

REPO_ROOT = Path(__file__).resolve().parents[1]
CONSUMER = [sys.executable, "-m", "consumer.cli", "run"]
# Stages in a verdict's timings_ms that are sums of others.
_DERIVED_STAGES = {"total"}
# /metrics stages that overlap the per-event stages: the whole event, and the model thread's
# compute inside ``embed`` / ``temporal`` (which also include waiting for a batch).
_OVERLAPPING_METRIC_STAGES = {"total", "model_embed", "model_classify"}


@dataclass(frozen=True)
class EndToEndSettings:
    """`workers_total` front-end processes per machine, split evenly among the consumers (at
    least one each: 4 consumers get 4 in all when `workers_total` is 2)."""

    model_name: str = "fame"
    burst_events: int = 8
    paced_events: int = 5
    paced_fractions: tuple[float, ...] = (0.5, 0.9)
    consumer_counts: tuple[int, ...] = (1, 2, 4)
    workers_total: int = 2
    load_timeout_s: float = 240.0
    compare_exactly_once: bool = True  # one more 1-consumer burst with FAME_EXACTLY_ONCE
    # one more 1-consumer burst per lever: the other model precisions (the checkpoint has an
    # int8 encoder on a CPU, so auto is int8 there), and front-end settings that trade
    # detection for speed
    compare_levers: tuple[tuple[str, ...], ...] = (
        ("FAME_PRECISION=bf16",),
        ("FAME_PRECISION=fp32",),
        ("FAME_DETECTOR_THREADS=2",),  # ONNX Runtime's own default on a 2-core machine
        ("FAME_DETECT_EVERY=2",),
        ("FAME_DETECT_SIZE=320",),
        ("FAME_DETECT_EVERY=2", "FAME_DETECT_SIZE=320"),
    )

    def __post_init__(self) -> None:
        if self.burst_events < 1 or self.paced_events < 1:
            raise ValueError(f"need events >= 1, got {self.burst_events}, {self.paced_events}")
        if not self.consumer_counts or min(self.consumer_counts) < 1:
            raise ValueError(f"consumer_counts must be >= 1, got {self.consumer_counts}")
        if any(not 0 < f <= 1 for f in self.paced_fractions):
            raise ValueError(f"paced_fractions must be in (0, 1], got {self.paced_fractions}")
        settings = [s for lever in self.compare_levers for s in lever]
        if any(not s.startswith("FAME_") or "=" not in s for s in settings):
            raise ValueError(f"levers are FAME_*=value settings, got {self.compare_levers}")


QUICK_END_TO_END = EndToEndSettings(
    consumer_counts=(1, 2),
    burst_events=4,
    paced_events=3,
    paced_fractions=(0.5,),
    compare_exactly_once=False,
    compare_levers=(),
)


def run(
    settings: EndToEndSettings,
    videos: list[Path],
    detector: Path,
    bootstrap: str,
    redis_url: str,
) -> dict[str, Any]:
    """Front-end ceiling, then for each consumer count: burst and paced loads."""
    events = [videos[i % len(videos)] for i in range(settings.burst_events)]
    ceiling = frontend.ceiling(events, detector, settings.workers_total)
    with tempfile.TemporaryDirectory(prefix="fame-bench-") as tmp:
        work = Path(tmp)
        checkpoint = make_checkpoint(
            work, settings.model_name, int8_videos=videos, detector=detector
        )
        has_int8 = find_int8_encoder(checkpoint) is not None
        precision = resolve_precision("auto", machine.device(), int8_encoder=has_int8)

        def consumers(count: int, **mode: Any) -> dict[str, Any]:
            return _run_consumers(
                settings, count, videos, detector, checkpoint, bootstrap, redis_url, work, **mode
            )

        runs = [consumers(count) for count in settings.consumer_counts]
        if settings.compare_exactly_once:
            eos = consumers(1, exactly_once=True)
        levers = {
            " ".join(lever): consumers(1, env_overrides=dict(s.split("=", 1) for s in lever))
            for lever in settings.compare_levers
        }
    first = runs[0]["loads"][0]
    result = {
        "model_name": settings.model_name,
        "precision": precision,
        "videos": [p.name for p in videos],
        "frontend_ceiling": ceiling,
        "runs": runs,
        "e2e_vs_frontend_ceiling": ratio(first["events_per_s"], ceiling["events_per_s"]),
    }
    if settings.compare_exactly_once:
        burst = eos["loads"][0]
        result["exactly_once"] = {
            "burst": burst,
            "events_per_s_vs_at_least_once": ratio(burst["events_per_s"], first["events_per_s"]),
        }
    result["levers"] = [
        {
            "name": name,
            "burst": lever["loads"][0],
            "metrics": lever["metrics"],
            "events_per_s_vs_default": ratio(
                lever["loads"][0]["events_per_s"], first["events_per_s"]
            ),
        }
        for name, lever in levers.items()
    ]
    return result


def _run_consumers(
    settings: EndToEndSettings,
    count: int,
    videos: list[Path],
    detector: Path,
    checkpoint: Path,
    bootstrap: str,
    redis_url: str,
    work: Path,
    exactly_once: bool = False,
    env_overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Burst (and, for one consumer in the default configuration, paced) loads on fresh topics.
    In the exactly-once mode verdicts are read with read_committed: latency includes the commit.
    ``env_overrides`` are extra ``FAME_*`` settings for a comparison run (burst only)."""
    workers = max(1, settings.workers_total // count)
    with live_consumers(
        videos,
        detector,
        checkpoint,
        bootstrap,
        redis_url,
        work,
        workers=workers,
        timeout_s=settings.load_timeout_s,
        count=count,
        partitions=max(settings.consumer_counts),
        exactly_once=exactly_once,
        env_overrides=env_overrides,
    ) as (load, running):
        ports = [port for port, _ in running]
        before = [_scrape(port) for port in ports]
        loads = [load.run(settings.burst_events, interval_s=0.0)]
        max_rate = loads[0]["events_per_s"]
        paced_runs = count == 1 and max_rate > 0 and not exactly_once and not env_overrides
        for fraction in settings.paced_fractions if paced_runs else ():
            paced = load.run(settings.paced_events, interval_s=1.0 / (fraction * max_rate))
            paced["offered_fraction_of_max"] = fraction
            paced["offered_events_per_s"] = fraction * max_rate
            loads.append(paced)
        after = [_scrape(port) for port in ports]
    return {
        "consumers": count,
        "frontend_workers_per_consumer": workers,
        "loads": loads,
        "dead_letters": load.collector.dead_letters,
        "metrics": _metrics_delta(before, after),
    }


@contextmanager
def live_consumers(
    videos: list[Path],
    detector: Path,
    checkpoint: Path,
    bootstrap: str,
    redis_url: str,
    work: Path,
    *,
    workers: int,
    timeout_s: float,
    count: int = 1,
    partitions: int = 1,
    exactly_once: bool = False,
    env_overrides: dict[str, str] | None = None,
) -> Iterator[tuple[_Load, list[tuple[int, int]]]]:
    """`count` `fame-consumer run` processes on fresh topics, warmed by one event per partition;
    yields the load that offers them events (`_Load.run`) and their (HTTP port, process id)
    pairs (`bench.soak` reads their memory). Exactly-once consumers get a transactional id, and
    their verdicts are read with read_committed."""
    topics = _fresh_topics(bootstrap, partitions)
    env = _consumer_env(bootstrap, redis_url, topics, checkpoint, detector, videos, workers)
    if exactly_once:
        env |= {"FAME_EXACTLY_ONCE": "true", "FAME_TRANSACTIONAL_ID": f"tx-{topics['group']}"}
    env |= env_overrides or {}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    collector = _VerdictCollector(
        bootstrap,
        topics["verdicts"],
        topics["dlq"],
        "read_committed" if exactly_once else "read_uncommitted",
    )
    try:
        with _consumers(env, count, work) as running:
            warm = [
                _send(producer, topics["events"], p, videos[p % len(videos)])
                for p in range(partitions)
            ]
            collector.wait_for([event_id for event_id, _ in warm], timeout_s)
            yield _Load(producer, topics, collector, videos, partitions, timeout_s), running
    finally:
        producer.close()
        collector.stop()


@dataclass
class _Load:
    """Offers events to the running consumers and measures what comes back."""

    producer: KafkaProducer
    topics: dict[str, str]
    collector: _VerdictCollector
    videos: list[Path]
    partitions: int
    timeout_s: float

    def run(self, events: int, interval_s: float) -> dict[str, Any]:
        """`events` events, one every `interval_s` (0: all at once, a burst)."""
        sent: dict[str, int] = {}
        started = time.monotonic()
        for i in range(events):
            delay = started + i * interval_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            video = self.videos[i % len(self.videos)]
            event_id, timestamp_ms = _send(
                self.producer, self.topics["events"], i % self.partitions, video
            )
            sent[event_id] = timestamp_ms
        received = self.collector.wait_for(list(sent), self.timeout_s)
        statuses: Counter[str] = Counter(doc["status"] for _, doc in received.values())
        # rates and latencies over judged videos only: a failed verdict or a dead letter is an
        # outcome, but not the work the load measures (statuses and `complete` say if any)
        judged = {e: r for e, r in received.items() if r[1]["status"] not in ("failed", "dlq")}
        latencies_s = [(judged[e][0] - sent[e]) / 1000 for e in sent if e in judged]
        stage_ms: dict[str, float] = defaultdict(float)
        for _, doc in judged.values():
            for stage, ms in doc.get("timings_ms", {}).items():
                if stage not in _DERIVED_STAGES:
                    stage_ms[stage] += ms
        return {
            "kind": "paced" if interval_s > 0 else "burst",
            "events": events,
            "verdicts": len(judged),
            "complete": len(judged) == events,
            "statuses": dict(statuses),
            "events_per_s": outcome_rate(
                [t / 1000 for t in sent.values()],
                [t / 1000 for t, _ in judged.values()],
                paced=interval_s > 0,
            ),
            "latency_s": percentiles(latencies_s),
            "verdict_stage_share": {k: round(v, 4) for k, v in shares(dict(stage_ms)).items()},
        }


# Kafka, processes and metrics ----------------------------------------------------------------


def _fresh_topics(bootstrap: str, partitions: int) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    topics = {
        "events": f"bench-ev-{tag}",
        "verdicts": f"bench-verdicts-{tag}",
        "dlq": f"bench-dlq-{tag}",
        "group": f"bench-group-{tag}",
    }
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(topics["events"], num_partitions=partitions, replication_factor=1),
                NewTopic(topics["verdicts"], num_partitions=1, replication_factor=1),
                NewTopic(topics["dlq"], num_partitions=1, replication_factor=1),
            ]
        )
    finally:
        admin.close()
    return topics


def _consumer_env(
    bootstrap: str,
    redis_url: str,
    topics: dict[str, str],
    checkpoint: Path,
    detector: Path,
    videos: list[Path],
    workers: int,
) -> dict[str, str]:
    roots = sorted({str(p.resolve().parent) for p in videos})
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "FAME_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "FAME_REDIS_URL": redis_url,
        "FAME_EVENTS_TOPIC": topics["events"],
        "FAME_VERDICTS_TOPIC": topics["verdicts"],
        "FAME_DLQ_TOPIC": topics["dlq"],
        "FAME_GROUP_ID": topics["group"],
        "FAME_CHECKPOINT": str(checkpoint),
        "FAME_DETECTOR_MODEL": str(detector),
        "FAME_FILE_ROOTS": json.dumps(roots),
        "FAME_WORKERS": str(workers),
        "FAME_HTTP_PORT": "0",
        "FAME_HTTP_HOST": "127.0.0.1",
        "FAME_SESSION_TIMEOUT_MS": "10000",
    }


@contextmanager
def _consumers(env: dict[str, str], count: int, work: Path) -> Iterator[list[tuple[int, int]]]:
    """`count` consumer processes, each with a partition assigned; yields their (HTTP port,
    process id) pairs."""
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for i in range(count):
            log_path = work / f"consumer-{uuid.uuid4().hex[:6]}-{i}.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    CONSUMER, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
                )
            procs.append((proc, log_path))
        ports = [int(_wait_log(p, log, r"http server on port (\d+)").group(1)) for p, log in procs]
        deadline = time.monotonic() + 120
        while not all(_holds_partitions(log) for _, log in procs):
            if time.monotonic() > deadline:
                raise RuntimeError("consumers did not all get partitions within 120 s")
            time.sleep(0.5)
        yield [(port, proc.pid) for port, (proc, _) in zip(ports, procs, strict=True)]
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def _wait_log(proc: subprocess.Popen[bytes], log: Path, pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text(errors="replace"))
        if match:
            return match
        if proc.poll() is not None:
            raise RuntimeError(f"consumer exited: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.3)
    raise RuntimeError(f"{pattern!r} not logged within 180 s")


def _holds_partitions(log: Path) -> bool:
    """The consumer's latest rebalance event gave it a non-empty assignment."""
    events = re.findall(r"(assigned|revoked) \[(.)", log.read_text(errors="replace"))
    return bool(events) and events[-1][0] == "assigned" and events[-1][1] != "]"


def _send(producer: KafkaProducer, topic: str, partition: int, video: Path) -> tuple[str, int]:
    """Produce one event for `video`; returns its event id and broker timestamp (ms)."""
    event_id = f"ev-{uuid.uuid4().hex[:12]}"
    payload = {
        "schema_version": "1.0",
        "event_id": event_id,
        "video_id": f"vid-{uuid.uuid4().hex[:10]}",
        "source_uri": video.resolve().as_uri(),
        "submitted_at": datetime.now(UTC).isoformat(),
    }
    meta = producer.send(topic, value=json.dumps(payload).encode(), partition=partition).get(30)
    return event_id, int(meta.timestamp)


class _VerdictCollector:
    """Reads the verdicts (and dead letters) topics in the background, by event id."""

    def __init__(
        self, bootstrap: str, verdicts_topic: str, dlq_topic: str, isolation_level: str
    ) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation_level
        )
        self._verdicts = TopicPartition(verdicts_topic, 0)
        self._dlq = TopicPartition(dlq_topic, 0)
        self._consumer.assign([self._verdicts, self._dlq])
        self._consumer.seek_to_beginning(self._verdicts, self._dlq)
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, dict[str, Any]]] = {}
        self.dead_letters = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="bench-verdicts", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for partition, records in self._consumer.poll(timeout_ms=200).items():
                for record in records:
                    doc = json.loads(record.value)
                    with self._lock:
                        if partition == self._dlq:
                            self.dead_letters += 1
                            self._seen.setdefault(
                                doc.get("event_id") or "", (record.timestamp, {"status": "dlq"})
                            )
                        else:
                            self._seen[doc["event_id"]] = (record.timestamp, doc)

    def wait_for(
        self, event_ids: list[str], timeout_s: float
    ) -> dict[str, tuple[int, dict[str, Any]]]:
        """(verdict timestamp ms, verdict) per event id that arrived within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if all(e in self._seen for e in event_ids):
                    break
            time.sleep(0.1)
        with self._lock:
            return {e: self._seen[e] for e in event_ids if e in self._seen}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()


def _scrape(port: int) -> dict[str, dict[tuple[str, str], float]]:
    """Histogram samples of /metrics: {metric: {(label value, sample suffix+le): value}}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return parse_histograms(text)


def parse_histograms(text: str) -> dict[str, dict[tuple[str, str], float]]:
    """``fame_stage_seconds`` and ``fame_batch_items`` samples, keyed by (label, sample).

    The sample key is ``"sum"``, ``"count"`` or ``"le=<bound>"``."""
    wanted = {"fame_stage_seconds": "stage", "fame_batch_items": "kind"}
    out: dict[str, dict[tuple[str, str], float]] = {name: {} for name in wanted}
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        label = wanted[family.name]
        for sample in family.samples:
            suffix = sample.name.removeprefix(family.name).lstrip("_")
            if suffix == "bucket":
                suffix = f"le={sample.labels['le']}"
            elif suffix not in ("sum", "count"):
                continue
            out[family.name][(sample.labels[label], suffix)] = sample.value
    return out


def _metrics_delta(
    before: list[dict[str, dict[tuple[str, str], float]]],
    after: list[dict[str, dict[tuple[str, str], float]]],
) -> dict[str, Any]:
    """Summed over consumers, after minus before: stage seconds and batch-size histograms."""
    total: dict[str, dict[tuple[str, str], float]] = defaultdict(lambda: defaultdict(float))
    for b, a in zip(before, after, strict=True):
        for name, samples in a.items():
            for key, value in samples.items():
                total[name][key] += value - b.get(name, {}).get(key, 0.0)
    return summarize_histograms(total)


def summarize_histograms(samples: dict[str, dict[tuple[str, str], float]]) -> dict[str, Any]:
    """Stage seconds (with shares of the sum of the non-overlapping stages) and, per batch kind,
    the count of model calls in each size bucket (not cumulative) and the mean items per call."""
    stage = samples.get("fame_stage_seconds", {})
    stage_s = {k: v for (k, suffix), v in stage.items() if suffix == "sum"}
    parts = {k: v for k, v in stage_s.items() if k not in _OVERLAPPING_METRIC_STAGES}
    batches: dict[str, Any] = {}
    batch = samples.get("fame_batch_items", {})
    for kind in sorted({k for k, _ in batch}):
        bounds = sorted(
            (float(s.removeprefix("le=")), v)
            for (k, s), v in batch.items()
            if k == kind and s.startswith("le=")
        )
        buckets, previous = {}, 0.0
        for bound, cumulative in bounds:
            label = "+Inf" if bound == float("inf") else f"<={bound:g}"
            if cumulative - previous > 0:
                buckets[label] = round(cumulative - previous)
            previous = cumulative
        calls = batch.get((kind, "count"), 0.0)
        batches[kind] = {
            "calls": round(calls),
            "mean_items": ratio(batch.get((kind, "sum"), 0.0), calls),
            "buckets": buckets,
        }
    return {
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stage_s.items())},
        "stage_share": {k: round(v, 4) for k, v in sorted(shares(parts).items())},
        "batch_items": batches,
    }
