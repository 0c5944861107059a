"""Smoke tests of the benchmark harness (bench/): it runs with tiny settings and its bookkeeping
(histogram diffs, shares, the reuse arithmetic) is right. Nothing here is timed."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from prometheus_client import generate_latest

from bench import frontend, redis_memory
from bench import run as bench_run
from bench.end_to_end import parse_histograms, summarize_histograms
from bench.model import ModelBenchSettings
from bench.model import run as run_model
from bench.stats import outcome_rate, percentiles, shares, time_calls
from consumer.metrics import Metrics
from fame.precision import resolve_precision


def test_model_bench_runs_tiny_and_counts_reuse() -> None:
    settings = ModelBenchSettings(
        model_name="fame_tiny",
        batch_clips=2,
        repeats=1,
        reuse_track_frames=16,
        clip_lens=(8,),
        crop_sizes_px=(64, 96),
        scaling_repeats=1,
        compile=False,
    )
    result = run_model(settings, torch.device("cpu"), peak_flops=1e11)
    expected = {"eager_fp32_batch1", "batched2_fp32_channels_last", "batched2_int8_onnxruntime"}
    if resolve_precision("auto", torch.device("cpu")) == "bf16":  # the torch path's choice here
        expected.add("batched2_bf16_channels_last")
    assert set(result["variants"]) == expected
    assert result["engine_variant"] == "batched2_int8_onnxruntime"  # benches quantize on a CPU
    assert all(v["face_frames_per_s"] > 0 for v in result["variants"].values())
    assert result["flops_per_frame"] > 0
    reuse = result["embed_once_reuse"]
    # T=8, stride 4 over 16 frames: windows at 0, 4, 8 -> 24 frames recomputed vs 16 embedded.
    assert (reuse["windows"], reuse["frames_embedded_recompute"]) == (3, 24)
    assert reuse["ideal_speedup"] == pytest.approx(1.5)
    assert [(r["clip_len"], r["img_size"]) for r in result["scaling"]] == [(8, 64), (8, 96)]
    small, large = result["scaling"]
    assert large["gflops_per_clip"] > small["gflops_per_clip"]


def test_model_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="repeats"):
        ModelBenchSettings(repeats=0)


def test_histogram_bookkeeping_from_real_service_metrics() -> None:
    metrics = Metrics()
    metrics.observe_batch("embed", 16, 0.5)
    metrics.observe_batch("embed", 40, 0.5)
    metrics.observe_batch("classify", 3, 0.1)
    metrics.stage_seconds.labels(stage="decode").observe(1.0)
    metrics.stage_seconds.labels(stage="detect").observe(3.0)
    metrics.stage_seconds.labels(stage="total").observe(4.5)
    summary = summarize_histograms(parse_histograms(generate_latest(metrics.registry).decode()))
    embed = summary["batch_items"]["embed"]
    assert embed["calls"] == 2 and embed["mean_items"] == pytest.approx(28.0)
    assert embed["buckets"] == {"<=16": 1, "<=64": 1}
    # total and the model thread's own stages overlap the per-event stages: not in the shares.
    assert summary["stage_share"] == {"decode": 0.25, "detect": 0.75}
    assert summary["stage_seconds"]["total"] == pytest.approx(4.5)


def test_stats_helpers() -> None:
    assert math.isnan(percentiles([])["p95"])
    assert percentiles([1.0, 2.0, 3.0])["p50"] == pytest.approx(2.0)
    assert shares({"a": 1.0, "b": 3.0}) == {"a": 0.25, "b": 0.75}
    assert len(time_calls(lambda: None, repeats=3, warmup=0)) == 3
    with pytest.raises(ValueError, match="repeats"):
        time_calls(lambda: None, repeats=0)


def test_outcome_rates_of_bursts_and_paced_loads() -> None:
    """A paced load of 5 events, one every 2 s, each done 1 s after it was sent: 0.5/s, not
    5 events over 9 s (which grows with latency) nor 5 over 8 s (N over N-1 intervals)."""
    sent = [0.0, 2.0, 4.0, 6.0, 8.0]
    done = [t + 1.0 for t in sent]
    assert outcome_rate(sent, done, paced=True) == pytest.approx(0.5)
    assert outcome_rate(sent, [1.0, 1.5, 2.0, 2.5, 3.0], paced=False) == pytest.approx(5 / 3)
    assert outcome_rate(sent, [], paced=True) == 0.0


def test_frontend_bench_on_one_video(shared: Path, detector: Path) -> None:
    result = frontend.run([shared / "data" / "samples" / "carphone_pristine.mp4"], detector)
    (row,) = result["videos"]
    assert row["sampled_frames"] == 32  # 120 frames at 30 fps sampled at 8 fps
    assert row["tracks"] >= 1
    assert row["decode_only_fps"] > 0 and row["decode_detect_fps"] > 0  # which is faster: bench
    assert row["full_stage_ms"]["detect"] > 0
    # each lever keeps the crops close (another face would be tens of grey levels away)
    other = frontend.other_backend(result["detector"])  # torch on a CPU
    assert set(row["levers"]) == {*frontend.LEVERS, f"detector_backend_{other}"}
    for lever in row["levers"].values():
        assert lever["detect_ms"] > 0 and lever["speedup"] > 0
        assert lever["crop_mad"] is not None and 0 <= lever["crop_mad"] < 20
    # the other detector runtime finds the same faces
    runtime = row["levers"][f"detector_backend_{other}"]
    assert runtime["detector"] != result["detector"]
    assert runtime["crop_mad"] < 0.5
    network = result["detector_network"]
    assert {r["runtime"] for r in network} >= {"onnxruntime:cpu"}
    assert len({r["input"] for r in network}) == len(frontend.NETWORK_SIZES)
    for r in network:
        assert r["ms"] > 0 and r["max_abs_diff"] < 1e-3


def test_bench_offers_the_services_detector_backends() -> None:
    from bench.run import BACKENDS, parse_args
    from fame.faces.detector import DETECTOR_BACKENDS

    assert BACKENDS == DETECTOR_BACKENDS
    assert parse_args(["--detector-backend", "torch"]).detector_backend == "torch"
    assert parse_args([]).detector_backend == "auto"


def test_a_batch_of_frames_through_scrfd_is_each_frame_alone(detector: Path) -> None:
    """The premise of batching detections: PyTorch runs SCRFD's graph on several frames in one
    call, and the outputs split frame by frame into what each frame alone gives."""
    import onnxruntime

    from fame.faces.scrfd_graph import free_size_graph
    from fame.faces.torch_session import TorchSession

    graph = free_size_graph(detector)
    assert graph is not None
    reference = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    row = frontend.network_batch_row(TorchSession(graph, "cpu"), reference, 3, (160, 96), 1)
    assert (row["input"], row["batch"]) == ("160x96", 3)
    assert row["ms_per_frame"] == pytest.approx(row["ms"] / 3)
    assert row["max_abs_diff"] < 1e-4
    # the same comparison catches frames out of order: ONNX Runtime itself, frames reversed
    reversed_frames = _ReversedBatch(reference)
    assert (
        frontend.network_batch_row(reversed_frames, reference, 3, (160, 96), 1)["max_abs_diff"]
        > 1e-2
    )


class _ReversedBatch:
    """A session that runs each frame alone but returns them last frame first."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def run(self, names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        ((name, blob),) = feed.items()
        alone = [self._session.run(names, {name: blob[i : i + 1]}) for i in range(len(blob))]
        return [np.concatenate(outputs[::-1], axis=1) for outputs in zip(*alone, strict=True)]


def test_detector_host_work_on_either_runtime(shared: Path, detector: Path) -> None:
    """PyTorch letterboxes a frame smaller than the input on its device, so its runtime call
    includes that resize; ONNX Runtime's gets the host's letterbox."""
    from fame.faces.detector import ScrfdDetector

    video = shared / "data" / "samples" / "carphone_pristine.mp4"  # 176x144: enlarged
    for backend, letterbox_on in (("onnxruntime", "host"), ("torch", "device")):
        scrfd = ScrfdDetector(detector, backend=backend)
        calls: list[str] = []  # which runtime call each measurement made

        def spy(name: str, method: Any, calls: list[str] = calls) -> Any:
            return lambda *a, **k: calls.append(name) or method(*a, **k)

        for name in ("_candidates", "_candidates_of_frames"):
            setattr(scrfd, name, spy(name, getattr(scrfd, name)))
        (row,) = frontend.detector_host([video], scrfd, frames=3, repeats=1)
        # 3 frames, warmed once and timed once: detect and the network call go through the
        # device letterbox where it is used; the host path's call on the letterboxed image
        # always runs
        on_device = letterbox_on == "device"
        assert calls.count("_candidates_of_frames") == (12 if on_device else 0)
        assert calls.count("_candidates") == (6 if on_device else 12)
        assert row["letterbox_on"] == letterbox_on
        assert row["input"] == "640x544"
        assert row["network_ms"] > 0
        assert row["host_ms"] == pytest.approx(row["detect_ms"] - row["network_ms"])
        if letterbox_on == "device":
            host_path = row["letterbox_ms"] + row["letterboxed_network_ms"]
            assert row["device_letterbox_speedup"] == pytest.approx(host_path / row["network_ms"])
        else:
            assert "letterbox_ms" not in row


@pytest.mark.integration
def test_redis_memory_of_a_real_state_key(redis_url: str) -> None:
    result = redis_memory.run(redis_url, track_counts=(1, 2))
    one, two = result["rows"]
    assert one["memory_usage_bytes"] >= result["tail_bytes"]  # the float16 tail is all there
    assert two["memory_usage_bytes"] > one["memory_usage_bytes"]
    record = result["event_record"]  # the verdict, kept per event for the TTL
    assert record["tracks"] >= 1 and record["memory_usage_bytes"] >= record["verdict_bytes"] > 500


@pytest.mark.integration
def test_cli_writes_results_and_prints_targets(
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAME_REDIS_URL", redis_url)
    monkeypatch.setenv("FAME_KAFKA_BOOTSTRAP_SERVERS", "unused:9092")
    out = tmp_path / "result.json"
    assert bench_run.main(["--only", "redis", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["machine"]["torch"] == torch.__version__
    assert saved["redis"]["rows"][0]["tracks"] == 1
    assert "target <= 32 KiB/track" in capsys.readouterr().out


def test_synth_separability_probe_runs_and_scores_every_condition() -> None:
    """One training step on noise faces: the probe's plumbing (train, render, windows, fit, one
    score per fitted instance count on the held-out instances), not its numbers."""
    from bench.synth_separability import run as run_probe

    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 255, (20, 128, 128, 3), dtype=np.uint8) for _ in range(4)]
    (row,) = run_probe([1], 1e-3, faces, instances=3, fit_instances=(1, 2))
    assert row["steps"] == 1
    assert row["held_out_instances"] == [2]
    assert [f["fit_instances"] for f in row["fits"]] == [1, 2]
    for fit in row["fits"]:
        assert set(fit["accuracy"]) == {
            "same_instance_same_people",
            "same_instance_new_people",
            "new_instance_new_people",
        }
        assert all(0.0 <= v <= 1.0 for v in fit["accuracy"].values())
        assert set(fit["new_instance_recall"]) == {"faceswap", "lightweight", "iae"}
    assert row["fits"][1]["fit_windows"] == 2 * row["fits"][0]["fit_windows"]
    assert len(row["final_loss"]) == 9  # three architectures x three instances


def test_synth_separability_probe_refuses_fits_without_held_out_instances() -> None:
    from bench.synth_separability import run as run_probe

    faces = [np.zeros((20, 128, 128, 3), dtype=np.uint8) for _ in range(4)]
    with pytest.raises(ValueError, match="held-out"):
        run_probe([1], 1e-3, faces, instances=2, fit_instances=(2,))


def test_fidelity_compares_labels_and_probabilities() -> None:
    from bench.fidelity import compare

    def verdict(video: str, label: str, p_real: float) -> dict[str, object]:
        probabilities = {"real": p_real, "faceswap": 1 - p_real}
        return {"video_id": video, "label": label, "tracks": [{"probabilities": probabilities}]}

    base = [verdict("a", "real", 0.9), verdict("b", "faceswap", 0.45)]
    other = [verdict("a", "real", 0.85), verdict("b", "real", 0.55)]
    row = compare(base, other)
    assert row["videos"] == 2 and row["same_label"] == 1
    assert row["max_probability_change"] == pytest.approx(0.1)
    assert row["mean_max_probability_change"] == pytest.approx(0.075)
    with pytest.raises(ValueError):
        compare(base, other[:1])


def test_fidelity_compares_a_detector_runtime_with_onnx_runtime(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`auto` may be PyTorch on a GPU machine: the runtime lever is measured against ONNX
    Runtime, the other levers against the default."""
    from bench import fidelity

    def attribute(videos: list[Path], options: list[str]) -> list[dict[str, object]]:
        p_real = {(): 0.9, ("--detector-backend", "onnxruntime"): 0.8}.get(tuple(options), 0.7)
        probabilities = {"real": p_real, "faceswap": 1 - p_real}
        return [
            {
                "video_id": v.name,
                "label": "real",
                "model": {"name": "fame"},
                "tracks": [{"probabilities": probabilities}],
            }
            for v in videos
        ]

    monkeypatch.setattr(fidelity, "attribute", attribute)
    out = tmp_path / "fidelity.json"
    assert fidelity.main(["--every", "2", "--size", "--backend", "torch", "--out", str(out)]) == 0
    levers = json.loads(out.read_text())["levers"]
    assert set(levers) == {"detect_every=2", "detector_backend=torch"}
    assert levers["detect_every=2"]["max_probability_change"] == pytest.approx(0.2)  # vs 0.9
    assert levers["detector_backend=torch"]["max_probability_change"] == pytest.approx(0.1)


def test_embedded_bench_runs_the_service_without_kafka_or_redis(
    shared: Path, detector: Path
) -> None:
    from bench import embedded

    carphone = shared / "data" / "samples" / "carphone_pristine.mp4"
    settings = embedded.EmbeddedSettings(
        model_name="fame_tiny", events=2, latency_events=2, workers=1
    )
    result = embedded.run(settings, [carphone], detector, latency_source=carphone)
    assert (result["verdicts"], result["dead_letters"]) == (2, 0)
    assert result["statuses"] == ["attributed"]
    assert result["events_per_s"] > 0 and result["e2e_vs_frontend_ceiling"] > 0
    assert math.isfinite(result["e2e_vs_decode_ceiling"]) and result["e2e_vs_decode_ceiling"] > 0
    burst, paced = result["latency"]["burst"], result["latency"]["paced"]
    assert burst["verdicts"] == paced["verdicts"] == 2
    assert paced["interval_s"] == pytest.approx(2 / burst["events_per_s"])
    assert 0 < paced["latency_s"]["p50"] <= paced["latency_s"]["p95"]
    wide = result["latency_wide_workers"]  # the same loads, fewer and wider front-end workers
    assert (wide["workers"], wide["detector_threads"]) == settings.wide_split()
    assert wide["paced"]["verdicts"] == 2 and wide["paced"]["latency_s"]["p95"] > 0
    assert result["ceiling_by_workers"] == []  # detection on this CPU: no GPU to share
    assert result["frame_by_frame_detection"] == {}  # measured where detection shares a GPU
    with pytest.raises(ValueError, match="events >= 2"):
        embedded.EmbeddedSettings(events=1)


def test_frame_by_frame_burst_runs_the_service_one_frame_per_detector_call(
    shared: Path, detector: Path, tmp_path: Path
) -> None:
    """What a GPU run adds (`embedded._frame_by_frame`), run here on the CPU: the front-end
    ceiling and a burst of the service detecting one frame per call, every verdict made."""
    from bench import embedded

    carphone = shared / "data" / "samples" / "carphone_pristine.mp4"
    settings = embedded.EmbeddedSettings(model_name="fame_tiny", events=2, workers=1)
    env = embedded.service_env(settings, tmp_path, [carphone], detector)
    burst = [carphone] * 2
    decode = {"events_per_s": 100.0}
    default = {"events_per_s": 2.0}
    result = embedded._frame_by_frame(env, tmp_path, burst, settings, default, decode)
    assert result["detect_batch"] == result["frontend_ceiling"]["detect_batch"] == 1
    assert (result["verdicts"], result["dead_letters"]) == (2, 0)
    assert result["events_per_s_vs_default"] == pytest.approx(result["events_per_s"] / 2.0)
    assert result["e2e_vs_decode_ceiling"] == pytest.approx(result["events_per_s"] / 100.0)
    log = (tmp_path / "frame-by-frame" / "consumer.log").read_text()
    assert "1 key frame(s) per detector call" in log


def test_soak_reads_the_memory_of_the_service_and_its_workers_round_after_round(
    shared: Path, detector: Path
) -> None:
    from bench import embedded, soak

    carphone = shared / "data" / "samples" / "carphone_pristine.mp4"
    settings = embedded.EmbeddedSettings(model_name="fame_tiny", events=2, workers=1)
    result = soak.run([carphone], detector, rounds=3, events=2, settings=settings)
    assert result["all_complete"] and [r["events_so_far"] for r in result["series"]] == [2, 4, 6]
    for row in result["series"]:
        assert row["service_rss_kib"] > 50_000  # torch alone is more than 50 MB resident
        assert row["child_rss_kib"] and max(row["child_rss_kib"]) > 20_000  # the worker
    assert math.isfinite(result["service_growth_kib_per_event_second_half"])


@pytest.mark.integration
def test_soak_on_kafka_and_redis_reads_redis_memory_too(
    shared: Path, detector: Path, kafka_bootstrap: str, redis_url: str
) -> None:
    from bench import embedded, soak

    carphone = shared / "data" / "samples" / "carphone_pristine.mp4"
    settings = embedded.EmbeddedSettings(model_name="fame_tiny", events=2, workers=1)
    services = {"FAME_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "FAME_REDIS_URL": redis_url}
    result = soak.run_kafka([carphone], detector, 2, 2, settings, services)
    assert result["mode"] == "kafka" and result["all_complete"]
    for row in result["series"]:
        assert row["service_rss_kib"] > 50_000 and row["redis_used_memory_bytes"] > 0
    assert math.isfinite(result["redis_growth_bytes_per_event_second_half"])


def test_soak_slope_is_least_squares() -> None:
    from bench.soak import slope

    assert slope([1, 2, 3, 4], [10, 12, 14, 16]) == pytest.approx(2.0)
    assert slope([1, 2, 3], [5, 9, 5]) == pytest.approx(0.0)
    assert slope([1], [5]) == 0.0


@pytest.mark.parametrize(("cpus", "events"), [(2, 16), (4, 16), (16, 64)])
def test_a_burst_offers_each_worker_four_events(
    monkeypatch: pytest.MonkeyPatch, cpus: int, events: int
) -> None:
    """One event per worker would be one round, timed by its slowest video."""
    from bench import embedded

    monkeypatch.setattr(embedded, "available_cpus", lambda: cpus)
    assert embedded.EmbeddedSettings().events == events


def test_ceiling_by_workers_only_where_detection_shares_a_gpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bench import embedded

    calls: list[tuple[int, int, int]] = []

    def ceiling(
        videos: list[Path], detector: Path, workers: int, detect_batch: int
    ) -> dict[str, int]:
        calls.append((len(videos), workers, detect_batch))
        return {"workers": workers}

    monkeypatch.setattr(embedded.frontend, "ceiling", ceiling)
    burst = [tmp_path / f"{i}.mp4" for i in range(64)]
    name = "scrfd:scrfd_500m_bnkps.onnx@torch:cuda"
    sixteen = embedded.EmbeddedSettings(workers=16)
    assert embedded._ceiling_by_workers(burst, tmp_path, sixteen, name) == [
        {"workers": 1},
        {"workers": 4},
        {"workers": 8},
    ]
    assert calls == [(4, 1, 0), (16, 4, 0), (32, 8, 0)]  # the service's default batching
    four = embedded.EmbeddedSettings(workers=4, detect_batch=1)
    assert [c["workers"] for c in embedded._ceiling_by_workers(burst, tmp_path, four, name)] == [1]
    assert calls[-1] == (4, 1, 1)
    cpu_name = "scrfd:scrfd_500m_bnkps.onnx@CPUExecutionProvider"
    assert embedded._ceiling_by_workers(burst, tmp_path, sixteen, cpu_name) == []


@pytest.mark.parametrize(
    ("cpus", "split"), [(1, (1, 1)), (2, (1, 2)), (4, (1, 4)), (8, (2, 4)), (16, (4, 4))]
)
def test_wide_split_gives_each_video_several_cores(
    monkeypatch: pytest.MonkeyPatch, cpus: int, split: tuple[int, int]
) -> None:
    from bench import embedded

    monkeypatch.setattr(embedded, "available_cpus", lambda: cpus)
    assert embedded.EmbeddedSettings(workers=1).wide_split() == split


def test_end_to_end_levers_must_be_fame_settings() -> None:
    from bench.end_to_end import EndToEndSettings

    assert EndToEndSettings().compare_levers  # the full run compares some
    with pytest.raises(ValueError, match="levers"):
        EndToEndSettings(compare_levers=(("DETECT_SIZE=320",),))
    with pytest.raises(ValueError, match="levers"):
        EndToEndSettings(compare_levers=(("FAME_DETECT_SIZE",),))


def test_default_results_file_never_overwrites_a_recorded_run(tmp_path: Path) -> None:
    from bench.run import default_out

    first = default_out("cpu", quick=False, results_dir=tmp_path)
    assert first.name.startswith("cpu-") and first.suffix == ".json"
    first.write_text("{}")
    second = default_out("cpu", quick=False, results_dir=tmp_path)
    assert second != first and second.stem == f"{first.stem}-2"
    assert default_out("cpu", quick=True, results_dir=tmp_path).stem == f"{first.stem}-quick"


def test_summary_prints_the_gpu_only_measurements() -> None:
    """The lines only a GPU run produces (NVDEC, SCRFD on the GPU vs the CPU) print from a
    recorded CPU run with those fields added as a GPU run adds them: no GPU session should
    lose its summary to a KeyError."""
    import copy
    import json

    from bench.run import REPO_ROOT, summary

    recorded = REPO_ROOT / "bench" / "results" / "cpu-2026-11-26-detector-runtime.json"
    results = copy.deepcopy(json.loads(recorded.read_text()))
    video = results["frontend"]["videos"][0]
    video.update(decode_only_nvdec_fps=900.0, nvdec_speedup=1.5, nvdec_in_hardware=True)
    lever = dict(video["levers"]["detect_every_2"])
    lever["settings"] = {**lever["settings"], "hwaccel": "cuda"}
    video["levers"]["hwaccel_cuda"] = {**lever, "hardware_decoding": True}
    results["frontend"]["videos"][1]["nvdec_error"] = "[corrupt_stream] cannot open"
    results["frontend"]["detector_network"].append(
        {"runtime": "torch:cuda graphs", "input": "640x384", "ms": 0.4, "max_abs_diff": 2e-3}
    )
    results["frontend"]["detector_network"].append(
        {
            "runtime": "torch:cuda graphs",
            "input": "640x640",
            "batch": 8,
            "ms": 1.6,
            "ms_per_frame": 0.2,
            "max_abs_diff": 5e-6,
        }
    )
    results["frontend"].setdefault("detector_host", []).append(
        {
            "video": "carphone_pristine.mp4",
            "resolution": "176x144",
            "input": "640x544",
            "letterbox_on": "device",
            "detect_ms": 0.9,
            "network_ms": 0.6,
            "host_ms": 0.3,
            "insightface_detect_ms": 3.0,
            "speedup_vs_insightface": 3.33,
            "letterbox_ms": 0.35,
            "letterboxed_network_ms": 0.55,
            "device_letterbox_speedup": 1.5,
        }
    )
    embedded = results["embedded"]
    embedded["detector_onnxruntime_cpu"] = {"events_per_s": 1.0, "events_per_s_vs_default": 0.3}
    busy = {"mean_percent": 97.4, "max_percent": 100.0, "samples": 60.0}
    embedded["ceiling_by_workers"] = [
        {"workers": 4, "events_per_s": 2.5, "sampled_frames_per_s": 110.0, "gpu_busy": busy}
    ]
    embedded["frontend_ceiling"]["gpu_busy"] = busy
    embedded["frame_by_frame_detection"] = {
        "detect_batch": 1,
        "events_per_s": 20.0,
        "events_per_s_vs_default": 0.7,
        "e2e_vs_decode_ceiling": 0.55,
        "frontend_ceiling": {"events_per_s": 31.0, "sampled_frames_per_s": 2400.0},
        "gpu_busy": busy,
    }
    embedded["nvdec"] = {
        "events_per_s": 4.0,
        "events_per_s_vs_software_decoding": 1.2,
        "decode_only_ceiling": {"events_per_s": 5.0},
        "e2e_vs_decode_ceiling": 0.8,
    }
    text = summary(results)
    assert "decode-only on NVDEC   900.0 (1.50x; in hardware: True)" in text
    assert "decode-only on NVDEC failed: [corrupt_stream] cannot open" in text
    assert "NVDEC really decoded: True" in text
    assert "torch:cuda graphs" in text
    assert "8 frames a call: 0.20 ms a frame" in text
    assert "letterbox on the device, in the network's call: 1.50x the host's letterbox" in text
    assert "FAME_DETECTOR_BACKEND=onnxruntime (SCRFD on the CPU), burst: 1.000" in text
    assert "FAME_HWACCEL=cuda (NVDEC), burst: 4.000 events/s (1.20x" in text
    assert (
        "front-end ceiling with 4 workers: 2.500 events/s, 110 sampled frames/s, "
        "GPU busy mean 97%, max 100%"
    ) in text
    assert "GPU busy during the front-end ceiling: mean 97%, max 100%" in text
    assert (
        "FAME_DETECT_BATCH=1 (frame by frame; the default batches on a GPU), burst: 20.000 "
        "events/s (0.70x the default; ratio to the decode-only ceiling 0.550); front-end "
        "ceiling 31.000 events/s, 2400 sampled frames/s, GPU busy mean 97%"
    ) in text
    assert "GPU busy during the burst" not in text  # a CPU run's burst has no reading
    embedded["nvdec"] = {"error": "RuntimeError('no NVDEC')"}
    assert "NVDEC) burst failed: RuntimeError('no NVDEC')" in summary(results)
    embedded["nvdec"] = {"unavailable": "OSError: [Errno 95] Operation not supported"}
    assert "NVDEC) not measured: OSError: [Errno 95]" in summary(results)


def test_gpu_busy_samples_while_the_block_runs() -> None:
    from bench.machine import GpuBusy

    readings = iter([20, 100, 60] + [60] * 1000)
    with GpuBusy(interval_s=0.001, read=lambda: next(readings)) as busy:
        deadline = time.monotonic() + 5
        while busy.result() is None or busy.result()["samples"] < 3:  # type: ignore[index]
            assert time.monotonic() < deadline, "the sampler never ran"
            time.sleep(0.001)
    result = busy.result()
    assert result is not None and result["max_percent"] == 100.0
    assert 20 < result["mean_percent"] <= 100
    after = result["samples"]
    time.sleep(0.01)
    assert busy.result() == result and after == result["samples"]  # stopped with the block


def test_gpu_busy_is_none_without_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """No nvidia-ml-py (as in this project's environment): nothing read, nothing claimed."""
    import sys

    from bench.machine import GpuBusy

    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    with GpuBusy(interval_s=0.001) as busy:
        time.sleep(0.01)
    assert busy.result() is None


def test_gpu_front_end_probes_write_each_measurement_as_it_comes(
    shared: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """bench.probe_detect_batch / probe_cuda_wait run on a lent GPU, where a call cut short must
    still return what was measured: each row is a JSON line in $OUT as soon as it exists."""
    from bench import probe_cuda_wait, probe_detect_batch
    from fame.faces import torch_session

    def decode_ceiling(videos: list[Path], workers: int) -> dict[str, float]:
        return {"events_per_s": 10.0, "videos": len(videos), "workers": workers}

    monkeypatch.setattr(probe_detect_batch.frontend, "decode_ceiling", decode_ceiling)
    monkeypatch.setenv("OUT", str(tmp_path))
    probe = probe_detect_batch.Probe.start("probe.jsonl")
    assert probe is not None and probe.out == tmp_path / "probe.jsonl"
    assert probe.decode_ceiling["videos"] == len(probe.burst) == probe.settings.events
    probe.emit({"wait": "spin", "events_per_s": 5.0})
    assert probe.vs_decode({"events_per_s": 5.0}) == 0.5
    rows = [json.loads(line) for line in probe.out.read_text().splitlines()]
    assert rows == [
        {"decode_only_ceiling": probe.decode_ceiling},
        {"wait": "spin", "events_per_s": 5.0},
    ]
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows
    monkeypatch.setattr(torch_session, "BLOCKING_WAIT", False)
    probe_cuda_wait.blocking_wait()  # what each worker runs first in the "block" variant
    assert torch_session.BLOCKING_WAIT is True
