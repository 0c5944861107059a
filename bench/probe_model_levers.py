"""GPU-only probe of model levers the `model` section does not time: cuDNN autotuning
(``torch.backends.cudnn.benchmark``), bf16 weights instead of autocast, and the compiled encoder
at 512 clips per call. One JSON line per measurement; run on a lent GPU with
``python3 -m bench.probe_model_levers`` (about 45 s on an H200). Output of 2026-11-26:
``bench/results/gpu-h200-2026-11-26-s8-model-levers.txt``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.model import NUM_CLASSES, _batched, _channels_last_copy
from bench.stats import median, time_calls
from fame.model import FAME, build_config


def main() -> None:
    dev = torch.device("cuda")
    torch.manual_seed(0)
    config = build_config("fame", NUM_CLASSES, pretrained=None)
    model = FAME(config).to(dev).eval()
    t, size = config.clip_len, config.img_size
    channels_last = _channels_last_copy(model)
    clip = torch.randn(1, t, 3, size, size, device=dev)

    def frames(clips: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        x = torch.randn(clips * t, 3, size, size, device=dev, dtype=dtype)
        return x.contiguous(memory_format=torch.channels_last)

    def eager_batch1() -> None:
        with torch.inference_mode():
            model(clip)
        torch.cuda.synchronize()

    def rate(step: Callable[[], None], clips: int, repeats: int = 10) -> float:
        return round(clips * t / median(time_calls(step, repeats, warmup=2)), 1)

    for autotune in (False, True):
        torch.backends.cudnn.benchmark = autotune
        _emit(cudnn_benchmark=autotune, eager_fp32_batch1=rate(eager_batch1, 1, 20))
        for clips in (128, 256):
            step = _batched(channels_last, frames(clips), clips, t, dev, bf16=True)
            _emit(cudnn_benchmark=autotune, clips=clips, bf16_autocast=rate(step, clips))
    bf16_weights = _channels_last_copy(model).to(torch.bfloat16)
    step = _batched(bf16_weights, frames(128, torch.bfloat16), 128, t, dev, bf16=False)
    _emit(cudnn_benchmark=True, clips=128, bf16_weights=rate(step, 128))
    for clips in (256, 512):
        compiled = _channels_last_copy(model)
        compiled.encoder = torch.compile(compiled.encoder, mode="reduce-overhead")  # type: ignore[assignment]
        step = _batched(compiled, frames(clips), clips, t, dev, bf16=True)
        started = time.perf_counter()
        step()
        step()
        compile_s = round(time.perf_counter() - started, 1)
        _emit(cudnn_benchmark=True, clips=clips, compiled=rate(step, clips), compile_s=compile_s)
    torch.backends.cudnn.benchmark = False
    # the first batch-1 figure above includes the process's first CUDA work: measured again
    _emit(cudnn_benchmark=False, eager_fp32_batch1_again=rate(eager_batch1, 1, 20))


def _emit(**fields: Any) -> None:
    print("PROBE " + json.dumps(fields), flush=True)


if __name__ == "__main__":
    main()
