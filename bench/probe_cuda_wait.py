"""GPU probe: does the way a front-end worker waits for its detection on the GPU cost the
service's decoders their cores? CUDA's default wait spins a core (while a process has no more
CUDA contexts than cores); `fame.faces.torch_session.BLOCKING_WAIT` makes the worker sleep on a
blocking-sync event instead. The front-end ceiling (all workers, the embedded section's burst)
with each wait, frame by frame and at the GPU's auto batch, against one decode-only ceiling, in
one run. One JSON line per measurement, on stdout and in ``$OUT/probe-cuda-wait.jsonl`` when OUT
is set; run on a lent GPU with ``python3 -m bench.probe_cuda_wait`` (about 2 minutes). Runs on a
CPU too, where both waits are the same code (a check)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from bench import embedded, frontend
from bench.run import EVENT_VIDEOS, shared_media
from bench.stats import ratio


def blocking_wait() -> None:
    """Worker setup: wait for the GPU on a blocking-sync event (picklable: module level)."""
    from fame.faces import torch_session

    torch_session.BLOCKING_WAIT = True


def main() -> int:
    media = shared_media()
    if media is None:
        return 2
    data, detector = media
    settings = embedded.EmbeddedSettings()
    burst = [data / EVENT_VIDEOS[i % len(EVENT_VIDEOS)] for i in range(settings.events)]
    out = Path(os.environ["OUT"]) / "probe-cuda-wait.jsonl" if "OUT" in os.environ else None
    decode = frontend.decode_ceiling(burst, settings.workers)
    _emit(out, {"decode_only_ceiling": decode})
    for batch in (0, 1):
        for wait, setup in (("block", blocking_wait), ("spin", None)):
            ceiling = frontend.ceiling(burst, detector, settings.workers, batch, setup)
            vs_decode = ratio(ceiling["events_per_s"], decode["events_per_s"])
            _emit(out, {"wait": wait, "frontend_ceiling": ceiling, "vs_decode_ceiling": vs_decode})
    return 0


def _emit(out: Path | None, row: dict[str, Any]) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
