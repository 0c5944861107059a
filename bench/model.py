"""FAME inference speed: batch-1 eager fp32 vs the batched service path, in one run.

Inputs are normalised float tensors already on the device, so the numbers are the model's own
(host decode, crops and transfers are the front end's and the end-to-end benchmark's). The
batched path is the one `fame.inference.InferenceEngine` runs: ``embed_frames`` over all frames
of the batch (channels-last), then ``classify_embeddings`` over the windows; where the device
computes bf16 natively (CUDA, CPUs with AVX512-BF16 or AMX) it adds the bf16-autocast variant, and
on CUDA, where it compiles, ``torch.compile`` of the encoder with CUDA graphs. On a CPU it adds
the int8 encoder (`fame.quantize`, calibrated here on random crops: speed does not depend on
the scales), which the engine runs wherever `fame quantize` has been run for the checkpoint, as
the end-to-end benchmark does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.machine import synchronize
from bench.stats import median, ratio, time_calls
from fame.model import FAME, FAMEConfig, build_config, flops_per_frame
from fame.precision import resolve_precision

NUM_CLASSES = 6


@dataclass(frozen=True)
class ModelBenchSettings:
    """How much to measure; `model_name` is a `fame.model.MODEL_REGISTRY` entry."""

    model_name: str = "fame"
    batch_clips: int = 8
    repeats: int = 2
    reuse_track_frames: int = 64
    clip_lens: tuple[int, ...] = (8, 16, 32)
    crop_sizes_px: tuple[int, ...] = (64, 112, 160)
    scaling_repeats: int = 2
    compile: bool = True  # only tried on CUDA: minutes of compile time on a small CPU
    # A GPU is launch-bound at 8 clips (128 face crops): on CUDA the bf16 path is also timed at
    # these batch sizes, the compiled variant at the largest, and scaling at `cuda_scaling_clips`.
    cuda_batch_clips: tuple[int, ...] = (32, 128, 256)
    cuda_scaling_clips: int = 32

    def __post_init__(self) -> None:
        for name in (
            "batch_clips",
            "repeats",
            "reuse_track_frames",
            "scaling_repeats",
            "cuda_scaling_clips",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


QUICK_MODEL = ModelBenchSettings(
    batch_clips=4, repeats=2, reuse_track_frames=32, clip_lens=(8, 16), crop_sizes_px=(64, 112)
)


def run(settings: ModelBenchSettings, dev: torch.device, peak_flops: float) -> dict[str, Any]:
    """Throughput of each variant, FLOPs per frame, fraction of `peak_flops` (the device's
    nominal peak where known: a matmul measured on a busy shared CPU can read lower than what
    the convolutions reach), reuse, scaling."""
    torch.manual_seed(0)
    config = build_config(settings.model_name, NUM_CLASSES, pretrained=None)
    flops = flops_per_frame(config)
    model = FAME(config).to(dev).eval()
    frames_per_clip = config.clip_len
    variants: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for name, clips, step in _variants(model, config, settings, dev, failures):
        seconds = median(time_calls(step, settings.repeats))
        frames_per_s = clips * frames_per_clip / seconds
        variants[name] = {
            "clips_per_call": clips,
            "seconds_per_call": seconds,
            "clips_per_s": clips / seconds,
            "face_frames_per_s": frames_per_s,
            "fraction_of_peak": frames_per_s * flops / peak_flops,
        }
    baseline = variants["eager_fp32_batch1"]["face_frames_per_s"]
    best_name = max(variants, key=lambda k: variants[k]["face_frames_per_s"])
    return {
        "model_name": settings.model_name,
        "config": {"clip_len": config.clip_len, "img_size": config.img_size},
        "flops_per_frame": flops,
        "peak_flops_used": peak_flops,
        "variants": variants,
        "best_variant": best_name,
        # what the service's engine runs at this batch size (auto precision; on a CPU the
        # checkpoint has an int8 encoder, as in the end-to-end benchmark)
        "engine_variant": _engine_variant(settings.batch_clips, dev),
        "failed_variants": failures,
        "best_vs_batch1_ratio": ratio(variants[best_name]["face_frames_per_s"], baseline),
        "embed_once_reuse": _reuse(model, config, settings, dev),
        "scaling": _scaling(config, settings, dev),
    }


def _variants(
    model: FAME,
    config: FAMEConfig,
    settings: ModelBenchSettings,
    dev: torch.device,
    failures: dict[str, str],
) -> Iterator[tuple[str, int, Callable[[], None]]]:
    """(name, clips per call, one synchronised call) for each variant this device supports;
    a variant that cannot be built (compile errors) lands in `failures` instead."""
    t, size, b = config.clip_len, config.img_size, settings.batch_clips
    clip = torch.randn(1, t, 3, size, size, device=dev)

    def eager() -> None:
        with torch.inference_mode():
            model(clip)
        synchronize(dev)

    yield "eager_fp32_batch1", 1, eager

    cl_model = _channels_last_copy(model)
    frames = torch.randn(b * t, 3, size, size, device=dev).contiguous(
        memory_format=torch.channels_last
    )
    yield f"batched{b}_fp32_channels_last", b, _batched(cl_model, frames, b, t, dev, bf16=False)
    if resolve_precision("auto", dev) == "bf16":  # the torch path's precision here
        yield f"batched{b}_bf16_channels_last", b, _batched(cl_model, frames, b, t, dev, bf16=True)
    if dev.type != "cuda":
        yield f"batched{b}_int8_onnxruntime", b, _int8_batched(model, frames, b, t)
        return
    for big in settings.cuda_batch_clips:
        big_frames = torch.randn(big * t, 3, size, size, device=dev).contiguous(
            memory_format=torch.channels_last
        )
        yield (
            f"batched{big}_bf16_channels_last",
            big,
            _batched(cl_model, big_frames, big, t, dev, bf16=True),
        )
    if not settings.compile:
        return
    b = max((b, *settings.cuda_batch_clips))
    frames = torch.randn(b * t, 3, size, size, device=dev).contiguous(
        memory_format=torch.channels_last
    )
    name = f"batched{b}_bf16_channels_last_compiled_cudagraphs"
    compiled = _channels_last_copy(model)
    try:
        compiled.encoder = torch.compile(compiled.encoder, mode="reduce-overhead")  # type: ignore[assignment]
        step = _batched(compiled, frames, b, t, dev, bf16=True)
        step()  # compile (and capture the CUDA graph) outside the timing
    except Exception as error:  # a compile failure is a result, not a crash of the suite
        failures[name] = f"{type(error).__name__}: {error}"[:500]
        return
    yield name, b, step


def _batched(
    model: FAME, frames: torch.Tensor, clips: int, clip_len: int, dev: torch.device, bf16: bool
) -> Callable[[], None]:
    """The engine's path: embed every frame of the batch, then classify the windows."""

    def step() -> None:
        with (
            torch.inference_mode(),
            torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            embeddings = model.embed_frames(frames)
            model.classify_embeddings(embeddings.view(clips, clip_len, -1))
        synchronize(dev)

    return step


def _engine_variant(clips: int, dev: torch.device) -> str:
    precision = resolve_precision("auto", dev, int8_encoder=dev.type == "cpu")
    if precision == "int8":
        return f"batched{clips}_int8_onnxruntime"
    return f"batched{clips}_{precision}_channels_last"


def _int8_batched(
    model: FAME, frames: torch.Tensor, clips: int, clip_len: int
) -> Callable[[], None]:
    """The engine's int8 path: the int8 encoder on ONNX Runtime, then the fp32 classifier."""
    from fame.quantize import Int8Encoder, quantize_encoder

    size = model.config.img_size
    calibration = np.random.default_rng(0).integers(0, 255, (32, size, size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="fame-int8-") as tmp:
        path = quantize_encoder(model, "bench", calibration, Path(tmp) / "encoder.onnx").path
        encoder = Int8Encoder(path, "bench", threads=torch.get_num_threads())
    batch = np.ascontiguousarray(frames.cpu().numpy())

    def step() -> None:
        embeddings = torch.from_numpy(encoder(batch))
        with torch.inference_mode():
            model.classify_embeddings(embeddings.view(clips, clip_len, -1))

    return step


def _channels_last_copy(model: FAME) -> FAME:
    copy = FAME(model.config).to(next(model.parameters()).device).eval()
    copy.load_state_dict(model.state_dict())
    return copy.to(memory_format=torch.channels_last)


def _reuse(
    model: FAME, config: FAMEConfig, settings: ModelBenchSettings, dev: torch.device
) -> dict[str, Any]:
    """One track of L frames scored with windows of T at stride T/2: every window through the
    full model (recompute) vs each frame embedded once and windows built from embeddings."""
    t, size, length = config.clip_len, config.img_size, settings.reuse_track_frames
    stride = max(1, t // 2)
    if length < t:
        raise ValueError(f"reuse_track_frames {length} is shorter than clip_len {t}")
    starts = list(range(0, length - t + 1, stride))
    cl_model = _channels_last_copy(model)
    track = torch.randn(length, 3, size, size, device=dev).contiguous(
        memory_format=torch.channels_last
    )
    index = torch.tensor([[s + i for i in range(t)] for s in starts], device=dev)

    def recompute() -> None:
        with torch.inference_mode():
            clips = track[index.flatten()].contiguous(memory_format=torch.channels_last)
            embeddings = cl_model.embed_frames(clips).view(len(starts), t, -1)
            cl_model.classify_embeddings(embeddings)
        synchronize(dev)

    def reuse() -> None:
        with torch.inference_mode():
            embeddings = cl_model.embed_frames(track)
            cl_model.classify_embeddings(embeddings[index])
        synchronize(dev)

    recompute_s = median(time_calls(recompute, settings.repeats))
    reuse_s = median(time_calls(reuse, settings.repeats))
    return {
        "track_frames": length,
        "clip_len": t,
        "stride": stride,
        "windows": len(starts),
        "frames_embedded_recompute": len(starts) * t,
        "frames_embedded_reuse": length,
        "recompute_s": recompute_s,
        "reuse_s": reuse_s,
        "speedup": ratio(recompute_s, reuse_s),
        "ideal_speedup": len(starts) * t / length,
    }


def _scaling(
    config: FAMEConfig, settings: ModelBenchSettings, dev: torch.device
) -> list[dict[str, Any]]:
    """Cost of one clip (the batched torch path, bf16 where native) as T grows at the
    default crop, and as the crop grows at the default T: FLOPs from the counter, seconds
    measured. One clip per call on a CPU; `cuda_scaling_clips` per call on a GPU, which one
    clip leaves launch-bound."""
    clips = settings.cuda_scaling_clips if dev.type == "cuda" else 1
    rows: list[dict[str, Any]] = []
    shapes = [(t, config.img_size) for t in settings.clip_lens] + [
        (config.clip_len, s) for s in settings.crop_sizes_px if s != config.img_size
    ]
    for clip_len, size in shapes:
        variant = dataclasses.replace(config, clip_len=clip_len, img_size=size)
        model = FAME(variant).to(dev).eval().to(memory_format=torch.channels_last)
        frames = torch.randn(clips * clip_len, 3, size, size, device=dev).contiguous(
            memory_format=torch.channels_last
        )
        step = _batched(
            model, frames, clips, clip_len, dev, bf16=resolve_precision("auto", dev) == "bf16"
        )
        seconds = median(time_calls(step, settings.scaling_repeats)) / clips
        rows.append(
            {
                "clip_len": clip_len,
                "img_size": size,
                "clips_per_call": clips,
                "gflops_per_clip": flops_per_frame(variant) * clip_len / 1e9,
                "ms_per_clip": seconds * 1000,
                "face_frames_per_s": clip_len / seconds,
            }
        )
        del model
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()
    return rows
