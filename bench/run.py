"""`python -m bench.run [--quick]`: the benchmark suite on this machine's device.

Sections: model, frontend, e2e (needs Kafka + Redis: ``make services-up``), embedded (the same
service on its in-process broker, for machines without Kafka and Redis), redis. Prints the
ratios of the performance issue and writes every raw number, with the machine and the command, to
``bench/results/<device>-<date>[-quick].json``. The same command runs the GPU variants when CUDA
is present.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine

# fame.faces.detector.DETECTOR_BACKENDS (a test checks): not imported, since `--only model` must
# run where only torch is installed
BACKENDS = ("auto", "onnxruntime", "torch")

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SECTIONS = ("model", "frontend", "e2e", "embedded", "redis")
FRONTEND_VIDEOS = (
    "samples/carphone_pristine.mp4",
    "faces/driving_d18.mp4",
    "faces/driving_d11.mp4",
    "faces/source_s32.mp4",
)
# Short face videos (3-9 s, 176x144 to 512x512): one event each, cycled.
EVENT_VIDEOS = (
    "faces/driving_d18.mp4",
    "faces/driving_d0.mp4",
    "samples/carphone_pristine.mp4",
    "faces/driving_d19.mp4",
)
GPU_MIN_FACE_FRAMES_PER_S = 20_000
GPU_MIN_BATCHED_VS_BATCH1 = 10.0
CPU_MIN_E2E_VS_FRONTEND = 0.5
GPU_MIN_E2E_VS_DECODE = 0.8
GPU_MAX_P95_HALF_LOAD_S = 2.0


def services_env() -> dict[str, str]:
    """Kafka and Redis addresses: the environment, else ``.services.env`` (make services-up)."""
    env: dict[str, str] = {}
    path = REPO_ROOT / ".services.env"
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip()
    for key in ("FAME_KAFKA_BOOTSTRAP_SERVERS", "FAME_REDIS_URL"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


def shared_media(detector: str | None = None) -> tuple[Path, Path] | None:
    """The shared media folder and the face detector (default: the shared SCRFD-500M), or None
    after saying which is missing."""
    from fame.faces.detector import shared_dir  # the face stack: not for `--only model`

    data = shared_dir() / "data"
    model = Path(detector or shared_dir() / "models" / "scrfd_500m_bnkps.onnx")
    if not (data.is_dir() and model.is_file()):
        print(f"shared media or detector missing ({data}, {model}): set FAME_SHARED_DIR")
        return None
    return data, model


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and events (~3 min)")
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run"
    )
    parser.add_argument(
        "--detector",
        type=Path,
        default=os.environ.get("FAME_DETECTOR_MODEL"),
        help="SCRFD .onnx (default: FAME_DETECTOR_MODEL, else shared/models/scrfd_500m_bnkps)",
    )
    parser.add_argument(
        "--detector-backend",
        choices=BACKENDS,
        default="auto",
        help="the front-end section's detector runtime (FAME_DETECTOR_BACKEND; default: auto)",
    )
    parser.add_argument("--model", default="fame", help="FAME registry name (default: fame)")
    parser.add_argument("--out", type=Path, help="result file (default: bench/results/...)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data, detector = Path(), Path()
    if {"frontend", "e2e", "embedded"} & set(args.only):
        # Only the media sections load the face stack: `--only model` needs torch alone, which
        # is all a bare GPU image may have.
        media = shared_media(args.detector)
        if media is None:
            return 2
        data, detector = media
    dev = machine.device()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine.machine_info([sys.executable, "-m", "bench.run", *sys.argv[1:]]),
    }
    started = time.perf_counter()
    out = args.out or default_out(dev.type, args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        """After every section: a later one that fails (or a device call cut short) loses only
        itself."""
        results["wall_s"] = time.perf_counter() - started
        out.write_text(json.dumps(results, indent=2, default=_json_default) + "\n")

    if "model" in args.only:
        _progress("model: peak matmul and FAME variants")
        from bench import model

        results["peak"] = machine.peak_flops(dev, args.quick)
        settings = model.QUICK_MODEL if args.quick else model.ModelBenchSettings()
        settings = dataclasses.replace(settings, model_name=args.model)
        if dev.type == "cuda":  # calls are milliseconds there: more of them for a stable median
            settings = dataclasses.replace(settings, repeats=10, scaling_repeats=5)
        peak = results["peak"]
        results["model"] = model.run(
            settings, dev, peak["nominal_flops"] or peak["measured_matmul_flops"]
        )
        save()
    if "frontend" in args.only:
        _progress("front end: decode / decode+detect / full per video")
        from bench import frontend

        videos = [data / v for v in FRONTEND_VIDEOS[: 2 if args.quick else None]]
        results["frontend"] = frontend.run(videos, detector, args.detector_backend)
        save()
    if "e2e" in args.only or "redis" in args.only:
        services = services_env()
        needed = ("FAME_KAFKA_BOOTSTRAP_SERVERS", "FAME_REDIS_URL")
        missing = [k for k in needed if k not in services]
        if missing:
            print(f"no {missing}: run `make services-up` first (writes .services.env)")
            return 2
    if "redis" in args.only:
        _progress("redis: MEMORY USAGE of window state")
        from bench import redis_memory

        results["redis"] = redis_memory.run(services["FAME_REDIS_URL"])
        save()
    if "e2e" in args.only:
        _progress("end to end: front-end ceiling, then consumers under load (minutes)")
        from bench import end_to_end

        e2e = end_to_end.QUICK_END_TO_END if args.quick else end_to_end.EndToEndSettings()
        e2e = end_to_end.EndToEndSettings(**{**e2e.__dict__, "model_name": args.model})
        results["e2e"] = end_to_end.run(
            e2e,
            [data / v for v in EVENT_VIDEOS],
            detector,
            services["FAME_KAFKA_BOOTSTRAP_SERVERS"],
            services["FAME_REDIS_URL"],
        )
        save()
    if "embedded" in args.only:
        _progress("embedded: the service without Kafka and Redis, burst vs front-end ceiling")
        from bench import embedded

        embedded_settings = embedded.EmbeddedSettings(model_name=args.model)
        if args.quick:
            embedded_settings = dataclasses.replace(embedded_settings, events=4, latency_events=3)
        results["embedded"] = embedded.run(
            embedded_settings,
            [data / v for v in EVENT_VIDEOS],
            detector,
            data / embedded.LATENCY_SOURCE,
        )
    for section in ("e2e", "embedded"):
        if section in results and "model" in results:
            results[section]["compute_bound"] = compute_bound(
                results["model"], results[section]["frontend_ceiling"], dev.type
            )
    save()
    print(summary(results))
    print(f"raw results: {out}")
    return 0


def compute_bound(
    model: dict[str, Any], ceiling: dict[str, Any], device_type: str
) -> dict[str, Any]:
    """The events/s that the front end's and the model's measured compute allow together.

    The model alone manages (engine path face-frames/s) / (sampled frames per event) events/s.
    On a CPU it shares the cores with the front end, so the two add up per event:
    1 / (1/front end + 1/model); on a GPU they run side by side: the slower of the two.
    """
    frames_per_event = ceiling["sampled_frames_per_s"] / ceiling["events_per_s"]
    engine = model["variants"][model["engine_variant"]]["face_frames_per_s"]
    model_events_per_s = engine / frames_per_event
    frontend_events_per_s = ceiling["events_per_s"]
    if device_type == "cpu":
        bound = 1 / (1 / frontend_events_per_s + 1 / model_events_per_s)
    else:
        bound = min(frontend_events_per_s, model_events_per_s)
    return {
        "frames_per_event": frames_per_event,
        "model_events_per_s": model_events_per_s,
        "events_per_s": bound,
        "shared_device": device_type == "cpu",
    }


def default_out(device_type: str, quick: bool, results_dir: Path = RESULTS_DIR) -> Path:
    """``<device>-<date>[-quick].json``, then ``-2``, ``-3``...: a second run the same day never
    overwrites a recorded one."""
    name = "cpu" if device_type == "cpu" else _gpu_slug()
    stem = f"{name}-{datetime.now(UTC):%Y-%m-%d}{'-quick' if quick else ''}"
    path, n = results_dir / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = results_dir / f"{stem}-{n}.json"
    return path


def _gpu_slug() -> str:
    import torch

    return "gpu-" + "".join(c if c.isalnum() else "-" for c in torch.cuda.get_device_name(0))


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _busy(busy: dict[str, float]) -> str:
    return f"mean {busy['mean_percent']:.0f}%, max {busy['max_percent']:.0f}%"


def _check(value: float, target: float, higher_is_better: bool = True) -> str:
    if math.isnan(value):
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "MET" if ok else "MISSED"


def summary(results: dict[str, Any]) -> str:
    """The ratios and targets, one line each, for the terminal."""
    lines = [f"== FAME bench on {_device_name(results)} ({results['wall_s']:.0f} s) =="]
    cuda = bool(results["machine"].get("cuda"))
    if "model" in results:
        m, peak = results["model"], results["peak"]
        lines.append(
            f"model {m['model_name']} T={m['config']['clip_len']} {m['config']['img_size']}px: "
            f"{m['flops_per_frame'] / 1e9:.2f} GFLOP/frame; % of peak below is of "
            f"{m['peak_flops_used'] / 1e9:.0f} GFLOP/s {peak['precision']} "
            f"({peak['nominal_source'] or 'measured matmul'}); measured matmul "
            f"{peak['measured_matmul_flops'] / 1e9:.0f} GFLOP/s"
        )
        for name, v in m["variants"].items():
            lines.append(
                f"  {name:<48} {v['face_frames_per_s']:>10.1f} face-frames/s "
                f"{v['clips_per_s']:>8.2f} clips/s  {100 * v['fraction_of_peak']:5.1f}% of peak"
            )
        for name, error in m.get("failed_variants", {}).items():
            lines.append(f"  {name}: FAILED {error[:120]}")
        best = m["variants"][m["best_variant"]]["face_frames_per_s"]
        ratio_line = f"  best batched / batch-1 eager: {m['best_vs_batch1_ratio']:.2f}x"
        if cuda:
            ratio_line += (
                f" [target >= {GPU_MIN_BATCHED_VS_BATCH1:.0f}x: "
                f"{_check(m['best_vs_batch1_ratio'], GPU_MIN_BATCHED_VS_BATCH1)}]; "
                f"{best:.0f} face-frames/s [target >= {GPU_MIN_FACE_FRAMES_PER_S}: "
                f"{_check(best, GPU_MIN_FACE_FRAMES_PER_S)}]"
            )
        lines.append(ratio_line)
        r = m["embed_once_reuse"]
        lines.append(
            f"  embed-once reuse (track {r['track_frames']} frames, T={r['clip_len']}, stride "
            f"{r['stride']}): {r['speedup']:.2f}x faster than recomputing windows "
            f"(ideal {r['ideal_speedup']:.2f}x)"
        )
        lines.append("  scaling: T  px  GFLOP/clip  ms/clip  frames/s")
        for row in m["scaling"]:
            lines.append(
                f"          {row['clip_len']:>2} {row['img_size']:>3} "
                f"{row['gflops_per_clip']:>10.1f} {row['ms_per_clip']:>8.2f} "
                f"{row['face_frames_per_s']:>9.1f}"
            )
    if "frontend" in results:
        lines.append(f"front end ({results['frontend']['detector']}), sampled frames/s:")
        lines.append("  video                     res        decode  +detect     full")
        for v in results["frontend"]["videos"]:
            lines.append(
                f"  {v['video']:<25} {v['resolution']:<9} {v['decode_only_fps']:>7.1f} "
                f"{v['decode_detect_fps']:>8.1f} {v['full_fps']:>8.1f}"
            )
            if "nvdec_error" in v:
                lines.append(f"    decode-only on NVDEC failed: {v['nvdec_error']}")
            if "decode_only_nvdec_fps" in v:
                lines.append(
                    f"    decode-only on NVDEC {v['decode_only_nvdec_fps']:>7.1f} "
                    f"({v['nvdec_speedup']:.2f}x; in hardware: {v['nvdec_in_hardware']})"
                )
            for name, lever in v["levers"].items():
                if "error" in lever:
                    lines.append(f"    full, {name:<24} failed: {lever['error']}")
                    continue
                mad = lever["crop_mad"]
                lines.append(
                    f"    full, {name:<24} {lever['full_fps']:>7.1f} ({lever['speedup']:.2f}x, "
                    f"crops {'n/a' if mad is None else f'{mad:.1f} grey levels'} from default"
                    + (
                        f"; NVDEC really decoded: {lever['hardware_decoding']})"
                        if lever["settings"].get("hwaccel", "none") != "none"
                        else ")"
                    )
                )
        lines.append(
            "  SCRFD network alone, ms per call (max output difference from onnxruntime:cpu):"
        )
        for row in results["frontend"].get("detector_network", []):
            batch = row.get("batch", 1)
            lines.append(
                f"    {row['runtime']:<20} {row['input']:<8} {row['ms']:>7.2f} ms  "
                f"({row['max_abs_diff']:.1e})"
                + (
                    f"  {batch} frames a call: {row['ms_per_frame']:.2f} ms a frame"
                    if batch > 1
                    else ""
                )
            )
        host = results["frontend"].get("detector_host", [])
        if host:
            lines.append(
                "  SCRFD per frame, ms: detect = network (+ candidate selection) + host work "
                "around it; InsightFace's detect on the same frames"
            )
        for row in host:
            lines.append(
                f"    {row['video']:<24} {row['resolution']:>9} -> {row['input']:<8} "
                f"{row['detect_ms']:>6.2f} = {row['network_ms']:.2f} + {row['host_ms']:.2f}; "
                f"InsightFace {row['insightface_detect_ms']:.2f} "
                f"({row['speedup_vs_insightface']:.2f}x)"
            )
            if row.get("letterbox_on") == "device":
                lines.append(
                    f"      letterbox on the device, in the network's call: "
                    f"{row['device_letterbox_speedup']:.2f}x the host's letterbox "
                    f"({row['letterbox_ms']:.2f}) + call ({row['letterboxed_network_ms']:.2f})"
                )
    if "e2e" in results:
        e = results["e2e"]
        c = e["frontend_ceiling"]
        lines.append(
            f"end to end (model {e['model_name']} in {e['precision']}, Kafka + Redis); "
            "front-end-only ceiling "
            f"{c['events_per_s']:.3f} events/s ({c['workers']} workers)"
        )
        for run in e["runs"]:
            for load in run["loads"]:
                lat = load["latency_s"]
                offered = (
                    "burst"
                    if load["kind"] == "burst"
                    else f"{100 * load['offered_fraction_of_max']:.0f}% of max"
                )
                lines.append(
                    f"  {run['consumers']} consumer(s) {offered:<11} {load['events_per_s']:.3f} "
                    f"events/s  latency p50/p95/p99 {lat['p50']:.1f}/{lat['p95']:.1f}/"
                    f"{lat['p99']:.1f} s  ({load['verdicts']}/{load['events']} verdicts)"
                )
            batches = run["metrics"]["batch_items"]
            sizes = ", ".join(f"{k} mean {v['mean_items']:.1f}" for k, v in batches.items())
            lines.append(f"    batch items per model call: {sizes}")
        top = sorted(e["runs"][0]["loads"][0]["verdict_stage_share"].items(), key=lambda kv: -kv[1])
        lines.append(
            "  stage share (1 consumer, burst): "
            + ", ".join(f"{k} {100 * v:.0f}%" for k, v in top if v >= 0.005)
        )
        lines.append(
            f"  e2e / front-end ceiling: {e['e2e_vs_frontend_ceiling']:.3f} "
            f"[CPU target >= {CPU_MIN_E2E_VS_FRONTEND}: "
            f"{_check(e['e2e_vs_frontend_ceiling'], CPU_MIN_E2E_VS_FRONTEND)}]"
        )
        if "compute_bound" in e:
            lines.append(_bound_line(e["compute_bound"], e["runs"][0]["loads"][0]["events_per_s"]))
        if "exactly_once" in e:
            eos = e["exactly_once"]
            lat = eos["burst"]["latency_s"]
            lines.append(
                "  exactly-once mode, burst: "
                f"{eos['burst']['events_per_s']:.3f} events/s "
                f"({eos['events_per_s_vs_at_least_once']:.2f}x at-least-once), "
                f"p50/p95 {lat['p50']:.1f}/{lat['p95']:.1f} s"
            )
        for lever in e.get("levers", []):
            lines.append(
                f"  {lever['name']}, burst: {lever['burst']['events_per_s']:.3f} events/s "
                f"({lever['events_per_s_vs_default']:.2f}x the default settings)"
            )
    if "embedded" in results:
        b = results["embedded"]
        lines.append(
            f"embedded service (no Kafka/Redis), burst of {b['events']}: "
            f"{b['events_per_s']:.3f} events/s ({b['verdicts']} verdicts, {b['dead_letters']} "
            f"dead letters); front-end ceiling {b['frontend_ceiling']['events_per_s']:.3f} "
            f"(ratio {b['e2e_vs_frontend_ceiling']:.3f}), decode-only ceiling "
            f"{b['decode_only_ceiling']['events_per_s']:.3f} (ratio "
            f"{b['e2e_vs_decode_ceiling']:.3f}"
            + (
                f" [GPU target >= {GPU_MIN_E2E_VS_DECODE}: "
                f"{_check(b['e2e_vs_decode_ceiling'], GPU_MIN_E2E_VS_DECODE)}])"
                if cuda
                else ")"
            )
        )
        for name, busy in [
            ("front-end ceiling", b["frontend_ceiling"].get("gpu_busy")),
            ("burst", b.get("gpu_busy")),
        ]:
            if busy:
                lines.append(f"  GPU busy during the {name}: {_busy(busy)}")
        for c in b.get("ceiling_by_workers", []):
            lines.append(
                f"  front-end ceiling with {c['workers']} workers: {c['events_per_s']:.3f} "
                f"events/s, {c['sampled_frames_per_s']:.0f} sampled frames/s"
                + (f", GPU busy {_busy(c['gpu_busy'])}" if c.get("gpu_busy") else "")
            )
        cpu = b.get("detector_onnxruntime_cpu", {})
        if cpu.get("error"):
            lines.append(f"  FAME_DETECTOR_BACKEND=onnxruntime burst failed: {cpu['error']}")
        elif cpu:
            lines.append(
                f"  FAME_DETECTOR_BACKEND=onnxruntime (SCRFD on the CPU), burst: "
                f"{cpu['events_per_s']:.3f} events/s ({cpu['events_per_s_vs_default']:.2f}x the "
                "default, SCRFD on the GPU)"
            )
        single = b.get("frame_by_frame_detection", {})
        if single.get("error"):
            lines.append(f"  FAME_DETECT_BATCH=1 burst failed: {single['error']}")
        elif single:
            c = single["frontend_ceiling"]
            lines.append(
                "  FAME_DETECT_BATCH=1 (frame by frame; the default batches on a GPU), burst: "
                f"{single['events_per_s']:.3f} events/s "
                f"({single['events_per_s_vs_default']:.2f}x the default; ratio to the "
                f"decode-only ceiling {single['e2e_vs_decode_ceiling']:.3f}); front-end "
                f"ceiling {c['events_per_s']:.3f} events/s, {c['sampled_frames_per_s']:.0f} "
                "sampled frames/s"
                + (f", GPU busy {_busy(single['gpu_busy'])}" if single.get("gpu_busy") else "")
            )
        if b.get("nvdec", {}).get("error"):
            lines.append(f"  FAME_HWACCEL=cuda (NVDEC) burst failed: {b['nvdec']['error']}")
        elif b.get("nvdec", {}).get("unavailable"):
            lines.append(f"  FAME_HWACCEL=cuda (NVDEC) not measured: {b['nvdec']['unavailable']}")
        elif b.get("nvdec"):
            n = b["nvdec"]
            lines.append(
                f"  FAME_HWACCEL=cuda (NVDEC), burst: {n['events_per_s']:.3f} events/s "
                f"({n['events_per_s_vs_software_decoding']:.2f}x software decoding); NVDEC "
                f"decode-only ceiling {n['decode_only_ceiling']['events_per_s']:.3f} (ratio "
                f"{n['e2e_vs_decode_ceiling']:.3f})"
            )
        if "compute_bound" in b:
            lines.append(_bound_line(b["compute_bound"], b["events_per_s"]))
        front_ends = f"{b['settings']['workers']} workers x 1 detector thread"
        if b["latency"]:
            lines.append(_latency_line(b["latency"], front_ends, cuda))
        if b.get("latency_wide_workers"):
            wide = b["latency_wide_workers"]
            lines.append(
                _latency_line(
                    wide, f"{wide['workers']} workers x {wide['detector_threads']} threads", cuda
                )
            )
    if "redis" in results:
        r = results["redis"]
        per = ", ".join(
            f"{row['tracks']} track(s) {row['memory_usage_bytes']} B "
            f"({row['bytes_per_track'] / 1024:.1f} KiB/track)"
            for row in r["rows"]
        )
        lines.append(
            f"redis {r['redis_version']} MEMORY USAGE, T-1={r['tail_rows']} x {r['embed_dim']} "
            f"float16: {per} [target <= 32 KiB/track: {'MET' if r['meets_target'] else 'MISSED'}]"
        )
        if record := r.get("event_record"):  # measured since the tenth CPU run of 2026-11-26
            lines.append(
                f"  processed-event record (a {record['tracks']}-track verdict of "
                f"{record['verdict_bytes']} B): {record['memory_usage_bytes']} B, kept for "
                "FAME_WINDOW_TTL_S per event"
            )
    return "\n".join(lines)


def _latency_line(latency: dict[str, Any], front_ends: str, cuda: bool) -> str:
    most, paced = latency["burst"], latency["paced"]
    lat = paced["latency_s"]
    return (
        f"  {latency['video']} ({front_ends}): max {most['events_per_s']:.3f} events/s (burst "
        f"of {most['events']}); paced at {100 * paced['offered_fraction_of_max']:.0f}%: "
        f"latency p50/p95/p99 {lat['p50']:.2f}/{lat['p95']:.2f}/{lat['p99']:.2f} s"
        + (
            f" [GPU target p95 < {GPU_MAX_P95_HALF_LOAD_S:.0f} s: "
            f"{_check(lat['p95'], GPU_MAX_P95_HALF_LOAD_S, higher_is_better=False)}]"
            if cuda
            else ""
        )
    )


def _bound_line(bound: dict[str, Any], events_per_s: float) -> str:
    how = "sharing the CPU" if bound["shared_device"] else "the slower of the two"
    return (
        f"  compute bound (front-end ceiling and model, {how}): {bound['events_per_s']:.3f} "
        f"events/s (model alone {bound['model_events_per_s']:.3f} at "
        f"{bound['frames_per_event']:.1f} frames/event); burst / bound: "
        f"{events_per_s / bound['events_per_s']:.2f}"
    )


def _device_name(results: dict[str, Any]) -> str:
    info = results["machine"]
    if info.get("cuda"):
        return str(info.get("gpu"))
    return f"{info['cpu_model']} x{info['cpu_cores']} (CPU)"


if __name__ == "__main__":
    sys.exit(main())
