"""GPU probe: does the way a front-end worker waits for its detection on the GPU cost the
service's decoders their cores? CUDA's default wait spins a core (while a process has no more
CUDA contexts than cores); `fame.faces.torch_session.BLOCKING_WAIT` makes the worker sleep on a
blocking-sync event instead. The front-end ceiling (all workers, the embedded section's burst)
with each wait, frame by frame and at the GPU's auto batch, against one decode-only ceiling, in
one run. One JSON line per measurement, on stdout and in ``$OUT/probe-cuda-wait.jsonl`` when OUT
is set; run on a lent GPU with ``python3 -m bench.probe_cuda_wait`` (about 2 minutes). Runs on a
CPU too, where both waits are the same code (a check)."""

from __future__ import annotations

import sys

from bench import frontend
from bench.probe_detect_batch import Probe


def blocking_wait() -> None:
    """Worker setup: wait for the GPU on a blocking-sync event (picklable: module level)."""
    from fame.faces import torch_session

    torch_session.BLOCKING_WAIT = True


def main() -> int:
    probe = Probe.start("probe-cuda-wait.jsonl")
    if probe is None:
        return 2
    for batch in (0, 1):
        for wait, setup in (("block", blocking_wait), ("spin", None)):
            ceiling = frontend.ceiling(
                probe.burst, probe.detector, probe.settings.workers, batch, setup
            )
            probe.emit(
                {
                    "wait": wait,
                    "frontend_ceiling": ceiling,
                    "vs_decode_ceiling": probe.vs_decode(ceiling),
                }
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
