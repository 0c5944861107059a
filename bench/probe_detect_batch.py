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
from typing import Any

from bench import embedded, frontend
from bench.run import EVENT_VIDEOS, shared_media
from bench.stats import ratio


def main(argv: list[str]) -> int:
    batches = [int(b) for b in argv] or [16, 8, 32]
    media = shared_media()
    if media is None:
        return 2
    data, detector = media
    settings = embedded.EmbeddedSettings()
    burst = [data / EVENT_VIDEOS[i % len(EVENT_VIDEOS)] for i in range(settings.events)]
    out = Path(os.environ["OUT"]) / "probe-detect-batch.jsonl" if "OUT" in os.environ else None
    decode = frontend.decode_ceiling(burst, settings.workers)
    _emit(out, {"decode_only_ceiling": decode})
    with tempfile.TemporaryDirectory(prefix="fame-probe-batch-") as tmp:
        work = Path(tmp)
        env = embedded.service_env(settings, work, [data / v for v in EVENT_VIDEOS], detector)
        for batch in batches:
            ceiling = frontend.ceiling(burst, detector, settings.workers, batch)
            result = embedded.fresh_burst(
                {**env, "FAME_DETECT_BATCH": str(batch)}, work / f"batch-{batch}", burst, settings
            )
            _emit(
                out,
                {
                    "detect_batch": batch,
                    "frontend_ceiling": ceiling,
                    **result,
                    "e2e_vs_decode_ceiling": ratio(result["events_per_s"], decode["events_per_s"]),
                    "ceiling_vs_decode_ceiling": ratio(
                        ceiling["events_per_s"], decode["events_per_s"]
                    ),
                },
            )
    return 0


def _emit(out: Path | None, row: dict[str, Any]) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
