"""End to end without Kafka or Redis: `fame-consumer run --embedded` over a burst of events,
against the front-end ceiling on the same machine.

For machines where a broker and Redis cannot run (the lent GPU image has neither a JVM nor a
redis-server): the production `Service` with its pipeline, front-end worker pool and batched
inference engine, fed by the in-process broker and keeping windows in memory. Throughput is
events over the time from the start of the first event's work (its verdict's time less its
`timings_ms` total) to the last verdict, so process start-up and model load are left out, as
the ceiling leaves out its warm-up. The Kafka + Redis section (`e2e`) stays the
reference wherever those services run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import frontend
from bench.stats import percentiles, ratio
from bench.untrained import make_checkpoint


@dataclass(frozen=True)
class EmbeddedSettings:
    model_name: str = "fame"
    events: int = 16
    workers: int = 2
    detect_every: int = 1

    def __post_init__(self) -> None:
        if self.events < 2 or self.workers < 1 or self.detect_every < 1:
            raise ValueError(f"need events >= 2, workers >= 1, detect_every >= 1: {self}")


def run(settings: EmbeddedSettings, videos: list[Path], detector: Path) -> dict[str, Any]:
    """Front-end ceiling, then one embedded consumer over the same burst of events."""
    burst = [videos[i % len(videos)] for i in range(settings.events)]
    ceiling = frontend.ceiling(burst, detector, settings.workers)
    with tempfile.TemporaryDirectory(prefix="fame-embedded-") as tmp:
        work = Path(tmp)
        events = work / "events.jsonl"
        events.write_text("".join(json.dumps(_event(video)) + "\n" for video in burst))
        out = work / "out.jsonl"
        env = {
            **os.environ,
            "FAME_CHECKPOINT": str(make_checkpoint(work, settings.model_name)),
            "FAME_DETECTOR_MODEL": str(detector),
            "FAME_FILE_ROOTS": json.dumps(sorted({str(v.parent.resolve()) for v in videos})),
            "FAME_WORKERS": str(settings.workers),
            "FAME_MAX_IN_FLIGHT": str(settings.events),
            "FAME_DETECT_EVERY": str(settings.detect_every),
        }
        command = [sys.executable, "-m", "consumer.cli", "run", "--embedded"]
        command += ["--input", str(events), "--output", str(out)]
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        wall_s = time.perf_counter() - started
        records = [json.loads(line) for line in out.read_text().splitlines()]
    verdicts = [r for r in records if "verdict_id" in r]
    totals = [v["timings_ms"].get("total", 0.0) / 1000 for v in verdicts]
    done = [datetime.fromisoformat(v["produced_at"]).timestamp() for v in verdicts]
    first_start = min(t - total for t, total in zip(done, totals, strict=True))
    events_per_s = ratio(len(verdicts), max(done) - first_start)
    return {
        "settings": settings.__dict__,
        "frontend_ceiling": ceiling,
        "verdicts": len(verdicts),
        "statuses": sorted({v["status"] for v in verdicts}),
        "dead_letters": len(records) - len(verdicts),
        "process_wall_s": wall_s,
        "events_per_s": events_per_s,
        "verdict_total_s": percentiles(totals),
        "e2e_vs_frontend_ceiling": ratio(events_per_s, ceiling["events_per_s"]),
    }


def _event(video: Path) -> dict[str, Any]:
    return {
        "schema_version": "1.0",
        "event_id": f"bench-{uuid.uuid4().hex[:12]}",
        "video_id": f"vid-{uuid.uuid4().hex[:8]}",
        "source_uri": video.resolve().as_uri(),
        "submitted_at": datetime.now(UTC).isoformat(),
    }
