"""GPU probe: the embedded service's burst and its front-end ceiling at several detector batch
sizes (`FAME_DETECT_BATCH`), against one decode-only ceiling, in one run. Why: with SCRFD on
CUDA the 16 workers' detections take turns on the GPU (GPU 93-96 % busy at batch 1), and 8
frames per call lifted the burst from 0.54 to 0.775 of the decode-only ceiling with the GPU
57 % busy (bench.run, 2026-11-26): do larger batches close the rest? One JSON line per
measurement, on stdout and in ``$OUT/probe-detect-batch.jsonl`` when OUT is set; run on a lent
GPU with ``python3 -m bench.probe_detect_batch [BATCH ...]`` (default 16 8 32, in that order, so
that a call cut short loses the least asked-for size). Runs on a CPU too (slowly), as a check."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from bench import embedded, frontend
from bench.run import EVENT_VIDEOS, shared_media
from bench.stats import ratio


class Probe(NamedTuple):
    """What a front-end probe on the GPU measures against: the embedded section's burst and
    detector, and the decode-only ceiling of that burst (measured first, and reported)."""

    data: Path
    detector: Path
    settings: embedded.EmbeddedSettings
    burst: list[Path]
    decode_ceiling: dict[str, Any]
    out: Path | None  # JSON lines, under $OUT when set

    @classmethod
    def start(cls, filename: str) -> Probe | None:
        """None after saying what is missing (`shared_media`)."""
        media = shared_media()
        if media is None:
            return None
        data, detector = media
        settings = embedded.EmbeddedSettings()
        burst = [data / EVENT_VIDEOS[i % len(EVENT_VIDEOS)] for i in range(settings.events)]
        out = Path(os.environ["OUT"]) / filename if "OUT" in os.environ else None
        probe = cls(data, detector, settings, burst, {}, out)
        decode = frontend.decode_ceiling(burst, settings.workers)
        probe.emit({"decode_only_ceiling": decode})
        return probe._replace(decode_ceiling=decode)

    def vs_decode(self, result: dict[str, Any]) -> float:
        return ratio(result["events_per_s"], self.decode_ceiling["events_per_s"])

    def emit(self, row: dict[str, Any]) -> None:
        """One measurement: a JSON line on stdout and in ``out``."""
        line = json.dumps(row)
        print(line, flush=True)
        if self.out is not None:
            with self.out.open("a") as f:
                f.write(line + "\n")


def main(argv: list[str]) -> int:
    batches = [int(b) for b in argv] or [16, 8, 32]
    probe = Probe.start("probe-detect-batch.jsonl")
    if probe is None:
        return 2
    settings, burst = probe.settings, probe.burst
    with tempfile.TemporaryDirectory(prefix="fame-probe-batch-") as tmp:
        work = Path(tmp)
        videos = [probe.data / v for v in EVENT_VIDEOS]
        env = embedded.service_env(settings, work, videos, probe.detector)
        for batch in batches:
            ceiling = frontend.ceiling(burst, probe.detector, settings.workers, batch)
            result = embedded.fresh_burst(
                {**env, "FAME_DETECT_BATCH": str(batch)}, work / f"batch-{batch}", burst, settings
            )
            probe.emit(
                {
                    "detect_batch": batch,
                    "frontend_ceiling": ceiling,
                    **result,
                    "e2e_vs_decode_ceiling": probe.vs_decode(result),
                    "ceiling_vs_decode_ceiling": probe.vs_decode(ceiling),
                }
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
