"""End to end without Kafka or Redis: `fame-consumer run --embedded --input -`, fed live.

For machines where a broker and Redis cannot run (the lent GPU image has neither a JVM nor a
redis-server): the production `Service` with its pipeline, front-end worker pool and batched
inference engine, fed events on standard input as they are offered and keeping windows in memory.
One process, warmed by one event (model and detector loaded), then:

- a **burst** of `events` events cycling the event videos, against the front-end ceiling (same
  workers, same burst) and the decode-only ceiling measured just before;
- the **latency** loads of the GPU target: a 10-s 512x512 clip (the first 10 s of driving_d10,
  re-encoded), first as a burst of `latency_events` (its maximum rate), then paced at
  `paced_fraction` of that rate;
- with `wide_workers`, the same latency loads on a second process whose front end has fewer,
  wider workers (`wide_split`): one video's detection then runs on several cores, the setting
  to choose where the latency of single long uploads matters more than throughput;
- where the front end detects on the GPU through PyTorch, the burst again with SCRFD on ONNX
  Runtime's CPU provider (`FAME_DETECTOR_BACKEND=onnxruntime`): what detecting on the GPU buys;
  and the front-end ceiling and the burst again detecting frame by frame (`FAME_DETECT_BATCH=1`,
  against the default's `GPU_DETECT_BATCH` there): what batching buys where the workers'
  detections take turns on the shared GPU;
- with `nvdec`, where this process can decode on the GPU's NVDEC: the burst again on a process
  with `FAME_HWACCEL=cuda`, against the decode-only ceiling on NVDEC.

Throughput is events over the time from the first event offered to the last verdict; latency is
each verdict's ``produced_at`` less the wall time its event was written (one clock). The Kafka +
Redis section (`e2e`) stays the reference wherever those services run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench import frontend
from bench.machine import GpuBusy
from bench.stats import outcome_rate, percentiles, ratio
from bench.untrained import make_checkpoint
from fame.faces.detector import runs_on_gpu
from fame.faces.frontend import available_cpus
from fame.video.decode import hwaccel_unavailable

LATENCY_SOURCE = "faces/driving_d10.mp4"  # 512x512, 15 s at 30 fps: its first 10 s
LATENCY_CLIP_S = 10.0


@dataclass(frozen=True)
class EmbeddedSettings:
    model_name: str = "fame"
    # four events per worker (at least 16): with one event per worker, a burst is one round and
    # its rate is the slowest video's (the H200 host's 16-event bursts read 0.80 and 0.95 of
    # the decode-only ceiling in two runs of the same code)
    events: int = field(default_factory=lambda: max(16, 4 * available_cpus()))
    latency_events: int = 6
    paced_fraction: float = 0.5
    # one front-end process per CPU, each detector single-threaded (the service's default split)
    workers: int = field(default_factory=available_cpus)
    detect_every: int = 1
    detect_batch: int = 0  # the service's default: auto
    timeout_s: float = 600.0
    wide_workers: bool = True
    nvdec: bool = True  # where NVDEC can be opened (never on a CPU-only machine)

    def __post_init__(self) -> None:
        if self.events < 2 or self.workers < 1 or self.detect_every < 1:
            raise ValueError(f"need events >= 2, workers >= 1, detect_every >= 1: {self}")
        if self.latency_events < 0 or not 0 < self.paced_fraction <= 1:
            raise ValueError(f"need latency_events >= 0, paced_fraction in (0, 1]: {self}")

    def wide_split(self) -> tuple[int, int]:
        """(workers, detector threads each) for the latency-first run: 4 threads per worker
        where there are 8 or more CPUs, else one worker with every CPU."""
        cpus = available_cpus()
        workers = max(1, cpus // 4) if cpus >= 8 else 1
        return workers, max(1, cpus // workers)


def run(
    settings: EmbeddedSettings, videos: list[Path], detector: Path, latency_source: Path | None
) -> dict[str, Any]:
    """Ceilings, then one embedded consumer: burst, and (given a source) the latency loads."""
    burst = [videos[i % len(videos)] for i in range(settings.events)]
    ceiling = frontend.ceiling(burst, detector, settings.workers, settings.detect_batch)
    decode_ceiling = frontend.decode_ceiling(burst, settings.workers)
    by_workers = _ceiling_by_workers(burst, detector, settings, ceiling["detector"])
    with tempfile.TemporaryDirectory(prefix="fame-embedded-") as tmp:
        work = Path(tmp)
        clip = None
        if latency_source is not None and settings.latency_events:
            clip = ten_second_clip(latency_source, work / "clip-10s.mp4")
        env = service_env(settings, work, videos, detector, clip)
        latency: dict[str, Any] = {}
        wide: dict[str, Any] = {}
        with LiveService(env, work / "default", settings.timeout_s) as service:
            _warm_up(service, burst, settings.workers)
            with GpuBusy() as busy:
                result = service.offer(burst, interval_s=0.0)
            result["gpu_busy"] = busy.result()
            if clip is not None and latency_source is not None:
                latency = _latency(service, clip, latency_source, settings)
        if clip is not None and latency_source is not None and settings.wide_workers:
            workers, threads = settings.wide_split()
            wide_env = {
                **env,
                "FAME_WORKERS": str(workers),
                "FAME_DETECTOR_THREADS": str(threads),
            }
            with LiveService(wide_env, work / "wide", settings.timeout_s) as service:
                _warm_up(service, [clip], workers)
                wide = {
                    "workers": workers,
                    "detector_threads": threads,
                    **_latency(service, clip, latency_source, settings),
                }
        detector_on_cpu: dict[str, Any] = {}
        if "@torch:cuda" in ceiling["detector"]:
            try:
                cpu_env = {**env, "FAME_DETECTOR_BACKEND": "onnxruntime"}
                detector_on_cpu = fresh_burst(cpu_env, work / "detector-cpu", burst, settings)
                detector_on_cpu["events_per_s_vs_default"] = ratio(
                    detector_on_cpu["events_per_s"], result["events_per_s"]
                )
            except Exception as e:  # measured only where a GPU is lent: keep what came before
                detector_on_cpu = {"error": repr(e)}
        frame_by_frame: dict[str, Any] = {}
        if runs_on_gpu(ceiling["detector"]) and settings.detect_batch == 0:  # auto batched
            try:
                frame_by_frame = _frame_by_frame(env, work, burst, settings, result, decode_ceiling)
            except Exception as e:  # measured only where a GPU is lent: keep what came before
                frame_by_frame = {"error": repr(e)}
        nvdec: dict[str, Any] = {}
        if settings.nvdec and (reason := hwaccel_unavailable("cuda")) is not None:
            nvdec = {"unavailable": reason}  # why it was not measured, for the next session
        elif settings.nvdec:
            try:
                nvdec = _nvdec_burst(env, work, burst, settings, result["events_per_s"])
            except Exception as e:  # measured only where a GPU is lent: keep what came before
                nvdec = {"error": repr(e)}
    return {
        "settings": settings.__dict__,
        "frontend_ceiling": ceiling,
        "ceiling_by_workers": by_workers,
        "decode_only_ceiling": decode_ceiling,
        **result,
        "e2e_vs_frontend_ceiling": ratio(result["events_per_s"], ceiling["events_per_s"]),
        "e2e_vs_decode_ceiling": ratio(result["events_per_s"], decode_ceiling["events_per_s"]),
        "latency": latency,
        "latency_wide_workers": wide,
        "detector_onnxruntime_cpu": detector_on_cpu,
        "frame_by_frame_detection": frame_by_frame,
        "nvdec": nvdec,
    }


def service_env(
    settings: EmbeddedSettings,
    work: Path,
    videos: list[Path],
    detector: Path,
    clip: Path | None = None,
) -> dict[str, str]:
    """The environment of the embedded consumer: an untrained checkpoint of the settings'
    model written under ``work`` (its int8 encoder calibrated on ``videos`` where the CPU runs
    it), this detector, and file roots that admit ``videos`` and the latency ``clip``."""
    roots = {str(video.parent.resolve()) for video in [*videos, *([clip] if clip else [])]}
    checkpoint = make_checkpoint(work, settings.model_name, int8_videos=videos, detector=detector)
    return {
        **os.environ,
        "FAME_CHECKPOINT": str(checkpoint),
        "FAME_DETECTOR_MODEL": str(detector),
        "FAME_FILE_ROOTS": json.dumps(sorted(roots)),
        "FAME_WORKERS": str(settings.workers),
        "FAME_MAX_IN_FLIGHT": str(max(settings.events, settings.latency_events)),
        "FAME_DETECT_EVERY": str(settings.detect_every),
        "FAME_DETECT_BATCH": str(settings.detect_batch),
    }


def _ceiling_by_workers(
    burst: list[Path], detector: Path, settings: EmbeddedSettings, detector_name: str
) -> list[dict[str, Any]]:
    """Where detection runs on a GPU: the front-end ceiling at 1, 4 and 8 workers (those below
    `workers`), four events each. Why: CUDA runs one process's kernels at a time (without MPS),
    so where the workers' detections take turns on the GPU, sampled frames/s stop growing with
    workers while the GPU reads near 100 % busy (frame by frame on the H200: 288, 630, 796 and
    879 at 1, 4, 8 and 16 workers, 96 % busy); where their CPUs bound it, they keep growing."""
    if not runs_on_gpu(detector_name):
        return []
    return [
        frontend.ceiling(burst[: 4 * n], detector, n, settings.detect_batch)
        for n in (1, 4, 8)
        if n < settings.workers
    ]


def _frame_by_frame(
    env: dict[str, str],
    work: Path,
    burst: list[Path],
    settings: EmbeddedSettings,
    default: dict[str, Any],
    decode_ceiling: dict[str, Any],
) -> dict[str, Any]:
    """The front-end ceiling and the burst detecting one frame per call (`FAME_DETECT_BATCH=1`),
    against the default burst (`GPU_DETECT_BATCH` frames per call on a GPU) and the decode-only
    ceiling. Why: the workers' detections take turns on the GPU, and a batch of them keeps it
    busy for less time than its frames one by one: this is what the default's batching buys."""
    ceiling = frontend.ceiling(burst, Path(env["FAME_DETECTOR_MODEL"]), settings.workers, 1)
    one_env = {**env, "FAME_DETECT_BATCH": "1"}
    result = fresh_burst(one_env, work / "frame-by-frame", burst, settings)
    return {
        "detect_batch": 1,
        "frontend_ceiling": ceiling,
        **result,
        "events_per_s_vs_default": ratio(result["events_per_s"], default["events_per_s"]),
        "e2e_vs_decode_ceiling": ratio(result["events_per_s"], decode_ceiling["events_per_s"]),
    }


def _nvdec_burst(
    env: dict[str, str],
    work: Path,
    burst: list[Path],
    settings: EmbeddedSettings,
    software_events_per_s: float,
) -> dict[str, Any]:
    """The burst on a process decoding with NVDEC, against NVDEC's decode-only ceiling."""
    ceiling = frontend.decode_ceiling(burst, settings.workers, "cuda")
    result = fresh_burst({**env, "FAME_HWACCEL": "cuda"}, work / "nvdec", burst, settings)
    return {
        "decode_only_ceiling": ceiling,
        **result,
        "e2e_vs_decode_ceiling": ratio(result["events_per_s"], ceiling["events_per_s"]),
        "events_per_s_vs_software_decoding": ratio(result["events_per_s"], software_events_per_s),
    }


def fresh_burst(
    env: dict[str, str], work: Path, burst: list[Path], settings: EmbeddedSettings
) -> dict[str, Any]:
    """The burst alone on a fresh process configured by ``env`` (warmed up first), with how
    busy the GPU was meanwhile (`GpuBusy`: None without NVML)."""
    with LiveService(env, work, settings.timeout_s) as service:
        _warm_up(service, burst, settings.workers)
        with GpuBusy() as busy:
            result = service.offer(burst, interval_s=0.0)
    return {**result, "gpu_busy": busy.result()}


def _warm_up(service: LiveService, videos: list[Path], workers: int) -> None:
    """Untimed, as the front-end ceiling is warmed (`frontend.warm_up_videos`)."""
    service.offer(frontend.warm_up_videos(videos, workers), 0.0)


def _latency(
    service: LiveService, clip: Path, source: Path, settings: EmbeddedSettings
) -> dict[str, Any]:
    """The clip as a burst (its maximum rate), then paced at `paced_fraction` of that rate."""
    most = service.offer([clip] * settings.latency_events, interval_s=0.0)
    rate = most["events_per_s"] * settings.paced_fraction
    paced = service.offer([clip] * settings.latency_events, interval_s=1.0 / rate)
    return {
        "video": f"first {LATENCY_CLIP_S:.0f} s of {source.name}",
        "burst": most,
        "paced": {**paced, "offered_fraction_of_max": settings.paced_fraction},
    }


def ten_second_clip(source: Path, out: Path) -> Path:
    """The first `LATENCY_CLIP_S` seconds of `source`, re-encoded (H.264) at its own size."""
    import av

    with av.open(str(source)) as src, av.open(str(out), "w") as dst:
        stream = src.streams.video[0]
        rate = stream.average_rate or 30
        encoder = dst.add_stream("libx264", rate=rate)
        encoder.width, encoder.height, encoder.pix_fmt = stream.width, stream.height, "yuv420p"
        for index, frame in enumerate(src.decode(stream)):
            if index >= round(LATENCY_CLIP_S * float(rate)):
                break
            dst.mux(encoder.encode(frame.reformat(format="yuv420p")))
        dst.mux(encoder.encode(None))
    return out


class LiveService:
    """One `fame-consumer run --embedded --input -` process; events in on stdin, verdicts read
    back from its output file as they are written (`bench.soak` reuses it)."""

    def __init__(self, env: dict[str, str], work: Path, timeout_s: float) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self._out = work / "out.jsonl"
        self._out.touch()
        self._log = (work / "consumer.log").open("wb")
        command = [sys.executable, "-m", "consumer.cli", "run", "--embedded", "--input", "-"]
        self._proc = subprocess.Popen(
            [*command, "--output", str(self._out)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._proc.stdin is not None
        self._stdin: IO[str] = self._proc.stdin
        self._timeout_s = timeout_s
        self._read_at = 0
        self._records: dict[str, dict[str, Any]] = {}  # verdicts by event id
        self._dead_letters: set[str] = set()

    def __enter__(self) -> LiveService:
        return self

    @property
    def pid(self) -> int:
        return self._proc.pid

    def __exit__(self, *_: object) -> None:
        self._stdin.close()
        try:
            self._proc.wait(timeout=120)
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
            self._log.close()

    def offer(self, videos: list[Path], interval_s: float) -> dict[str, Any]:
        """One event per video, one every `interval_s` (0: all at once); waits for them all."""
        sent: dict[str, float] = {}
        started = time.time()
        for i, video in enumerate(videos):
            delay = started + i * interval_s - time.time()
            if delay > 0:
                time.sleep(delay)
            event_id = f"bench-{uuid.uuid4().hex[:12]}"
            sent[event_id] = time.time()
            self._stdin.write(json.dumps(_event(event_id, video)) + "\n")
            self._stdin.flush()
        verdicts = self._wait_for(list(sent))  # every event ends in a verdict, failed or not
        judged = {e: v for e, v in verdicts.items() if v["status"] != "failed"}
        done = {e: datetime.fromisoformat(v["produced_at"]).timestamp() for e, v in judged.items()}
        return {
            "events": len(videos),
            "interval_s": interval_s,
            "verdicts": len(judged),
            "complete": len(judged) == len(videos),
            "statuses": sorted({v["status"] for v in verdicts.values()}),
            "dead_letters": sum(e in self._dead_letters for e in sent),
            "events_per_s": outcome_rate(list(sent.values()), list(done.values()), interval_s > 0),
            "latency_s": percentiles([done[e] - sent[e] for e in judged]),
            "verdict_total_s": percentiles(
                [v["timings_ms"].get("total", 0.0) / 1000 for v in judged.values()]
            ),
        }

    def _wait_for(self, event_ids: list[str]) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + self._timeout_s
        while not all(e in self._records for e in event_ids):
            if self._proc.poll() is not None:
                raise RuntimeError(f"the embedded consumer exited with {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no outcome for some of {len(event_ids)} events in time")
            time.sleep(0.02)
            self._read()
        return {e: self._records[e] for e in event_ids}

    def _read(self) -> None:
        with self._out.open("rb") as f:
            f.seek(self._read_at)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._read_at += len(complete)
        for line in complete.splitlines():
            record = json.loads(line)
            if "verdict_id" in record:  # a failed event also writes a dead letter, after it
                self._records[record["event_id"]] = record
            elif record.get("event_id"):
                self._dead_letters.add(record["event_id"])


def _event(event_id: str, video: Path) -> dict[str, Any]:
    return {
        "schema_version": "1.0",
        "event_id": event_id,
        "video_id": f"vid-{uuid.uuid4().hex[:8]}",
        "source_uri": video.resolve().as_uri(),
        "submitted_at": datetime.now(UTC).isoformat(),
    }
