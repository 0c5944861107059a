"""Soak: does a long-running service's memory stay flat?

A consumer runs for days, so memory that grows with every event ends in an out-of-memory kill
(or, in a front-end worker, in its `FAME_WORKER_MEMORY_LIMIT_MB` cap killing a good video). One
consumer, `rounds` bursts of `events` events cycling the event videos; after each burst, the
resident memory (VmRSS) of the service process and of each of its children (front-end workers,
multiprocessing's resource tracker). By default the embedded consumer fed on standard input
(`bench.embedded.LiveService`: the production pipeline, front-end worker pool and engine;
in-process broker and window store); with ``--kafka`` `fame-consumer run` on real Kafka and
Redis (`make services-up`), and Redis's ``used_memory`` too. The growth is the least-squares
slope over the second half of the rounds (the first half warms allocators and caches), per
event. Not part of `bench.run` (its length is the point):

    .venv/bin/python -m bench.soak                        # 60 x 16 events: ~12 min on 2 cores
    .venv/bin/python -m bench.soak --kafka                # the same on Kafka + Redis
    .venv/bin/python -m bench.soak --rounds 4 --events 4  # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench import embedded, end_to_end, machine
from bench.run import EVENT_VIDEOS, RESULTS_DIR, services_env, shared_media
from bench.untrained import make_checkpoint


def rss_kib(pid: int) -> int:
    """Resident memory of a live process, KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """The process's direct children (its front-end workers and their resource tracker)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 for fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def measure(
    burst: Callable[[], dict[str, Any]],
    pid: int,
    rounds: int,
    events: int,
    redis_client: redis.Redis | None = None,
) -> dict[str, Any]:
    """`rounds` calls of ``burst`` (each offers `events` events and waits for their outcomes);
    after each, the resident memory of process `pid` and of its children, and Redis's
    ``used_memory`` where a client is given."""
    series: list[dict[str, Any]] = []
    for index in range(rounds):
        result = burst()
        row: dict[str, Any] = {
            "round": index,
            "events_so_far": (index + 1) * events,
            "service_rss_kib": rss_kib(pid),
            "child_rss_kib": sorted(rss_kib(kid) for kid in children(pid)),
            "events_per_s": result["events_per_s"],
            "complete": result["complete"],
        }
        if redis_client is not None:
            row["redis_used_memory_bytes"] = int(redis_client.info("memory")["used_memory"])
        series.append(row)
        print(
            f"[soak {time.strftime('%H:%M:%S')}] round {index + 1}/{rounds}: service "
            f"{row['service_rss_kib'] / 1024:.0f} MiB, children "
            f"{[round(k / 1024) for k in row['child_rss_kib']]} MiB"
            + (f", redis {row['redis_used_memory_bytes'] / 2**20:.1f} MiB" if redis_client else ""),
            file=sys.stderr,
            flush=True,
        )
    late = series[len(series) // 2 :]
    xs = [float(r["events_so_far"]) for r in late]
    summary: dict[str, Any] = {
        "rounds": rounds,
        "events_per_round": events,
        "all_complete": all(r["complete"] for r in series),
        "service_rss_mib": {
            "first_round": series[0]["service_rss_kib"] / 1024,
            "last_round": series[-1]["service_rss_kib"] / 1024,
            "max": max(r["service_rss_kib"] for r in series) / 1024,
        },
        "service_growth_kib_per_event_second_half": slope(
            xs, [float(r["service_rss_kib"]) for r in late]
        ),
        "largest_child_growth_kib_per_event_second_half": max(
            (
                slope(xs, [float(r["child_rss_kib"][i]) for r in late])
                for i in range(min(len(r["child_rss_kib"]) for r in late))
            ),
            default=0.0,
        ),
    }
    if redis_client is not None:
        summary["redis_growth_bytes_per_event_second_half"] = slope(
            xs, [float(r["redis_used_memory_bytes"]) for r in late]
        )
    return {**summary, "series": series}


def run(
    videos: list[Path],
    detector: Path,
    rounds: int,
    events: int,
    settings: embedded.EmbeddedSettings,
) -> dict[str, Any]:
    """The embedded consumer (in-process broker, in-memory windows), fed on standard input."""
    burst = [videos[i % len(videos)] for i in range(events)]
    with tempfile.TemporaryDirectory(prefix="fame-soak-") as tmp:
        work = Path(tmp)
        env = embedded.service_env(settings, work, videos, detector)
        with embedded.LiveService(env, work / "soak", settings.timeout_s) as service:
            result = measure(
                lambda: service.offer(burst, interval_s=0.0), service.pid, rounds, events
            )
    return {"mode": "embedded", "workers": settings.workers, **result}


def run_kafka(
    videos: list[Path],
    detector: Path,
    rounds: int,
    events: int,
    settings: embedded.EmbeddedSettings,
    services: dict[str, str],
) -> dict[str, Any]:
    """`fame-consumer run` on real Kafka and Redis (`make services-up`), one partition; Redis's
    memory too, where the processed-event records accumulate for `FAME_WINDOW_TTL_S`."""
    redis_url = services["FAME_REDIS_URL"]
    client = redis.Redis.from_url(redis_url)
    try:
        with tempfile.TemporaryDirectory(prefix="fame-soak-") as tmp:
            work = Path(tmp)
            checkpoint = make_checkpoint(
                work, settings.model_name, int8_videos=videos, detector=detector
            )
            with end_to_end.live_consumers(
                videos,
                detector,
                checkpoint,
                services["FAME_KAFKA_BOOTSTRAP_SERVERS"],
                redis_url,
                work,
                workers=settings.workers,
                timeout_s=settings.timeout_s,
            ) as (load, [(_, pid)]):
                result = measure(
                    lambda: load.run(events, interval_s=0.0), pid, rounds, events, client
                )
    finally:
        client.close()
    return {"mode": "kafka", "workers": settings.workers, **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="bursts (default 60)")
    parser.add_argument("--events", type=int, default=16, help="events per burst (default 16)")
    parser.add_argument(
        "--kafka",
        action="store_true",
        help="the Kafka + Redis service (`make services-up`) instead of the embedded one",
    )
    parser.add_argument("--model", default="fame", help="FAME registry name (default: fame)")
    parser.add_argument("--out", type=Path, help="result file (default bench/results/...)")
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.events < 1:
        parser.error("need --rounds >= 2 and --events >= 1")
    media = shared_media()
    if media is None:
        return 2
    data, detector = media
    services = services_env()
    if args.kafka and not {"FAME_KAFKA_BOOTSTRAP_SERVERS", "FAME_REDIS_URL"} <= set(services):
        print("--kafka needs Kafka and Redis: run `make services-up`")
        return 2
    settings = embedded.EmbeddedSettings(model_name=args.model, events=max(2, args.events))
    videos = [data / v for v in EVENT_VIDEOS]
    if args.kafka:
        result = run_kafka(videos, detector, args.rounds, args.events, settings, services)
    else:
        result = run(videos, detector, args.rounds, args.events, settings)
    result["machine"] = machine.machine_info([sys.executable, "-m", "bench.soak", *sys.argv[1:]])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    name = f"{machine.device().type}-{stamp}-soak{'-kafka' if args.kafka else ''}.json"
    out = args.out or RESULTS_DIR / name
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['mode']}: service memory {result['service_rss_mib']['first_round']:.0f} -> "
        f"{result['service_rss_mib']['last_round']:.0f} MiB over {args.rounds * args.events} "
        f"events; growth over the second half "
        f"{result['service_growth_kib_per_event_second_half']:.1f} KiB/event (service), "
        f"{result['largest_child_growth_kib_per_event_second_half']:.1f} KiB/event "
        f"(largest child)"
        + (
            f", Redis {result['redis_growth_bytes_per_event_second_half']:.0f} B/event"
            if args.kafka
            else ""
        )
        + f"; all complete: {result['all_complete']}"
    )
    print(f"raw results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
