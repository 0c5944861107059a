"""`fame-consumer`: the streaming attribution service.

Configuration comes from ``FAME_*`` environment variables (optionally an env file); flags only
choose the mode. `run` is the service (Kafka + Redis); `run --embedded` is the same pipeline on an
in-process broker and in-memory windows: events from a JSONL file or a folder of videos, verdicts
as JSON lines on stdout or to a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from consumer import logs
from consumer.settings import Settings
from schemas.fields import to_safe_id

if TYPE_CHECKING:
    from consumer.app import Service
    from consumer.backends.local import LocalBroker

log = logging.getLogger("consumer")

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
# Standard input is a feed from another program, so it is bounded like a Kafka topic: a line may
# be at most Kafka's default message.max.bytes (~1 MB; a VideoEvent is a few hundred bytes), and
# at most FEED_BACKLOG events wait unfinished before reading stops, which blocks the writer.
MAX_EVENT_LINE_BYTES = 1 << 20
FEED_BACKLOG = 1024  # the largest FAME_MAX_IN_FLIGHT: it never lowers concurrency
ENV_HELP = textwrap.fill(
    "environment (prefix FAME_, see docs/service.md): "
    + ", ".join(name.upper() for name in Settings.model_fields),
    width=88,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fame-consumer",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser(
        "run",
        help="consume events and publish verdicts",
        description="Consume VideoEvents, publish AttributionVerdicts (and DeadLetters).",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--env-file", type=Path, help="read FAME_* settings from this file too")
    run.add_argument(
        "--embedded",
        action="store_true",
        help="no Kafka, no Redis: in-process broker and in-memory windows",
    )
    run.add_argument(
        "--input",
        type=Path,
        help=(
            "embedded: a JSONL file of VideoEvents, a video or a folder of videos (one event "
            "each; their folder is an allowed file root), or - for VideoEvents on standard "
            "input as they come (runs until end of input). Events naming local files need "
            "their folders in FAME_FILE_ROOTS (a path or a JSON list). Exit status 1 when an "
            "event was dead-lettered"
        ),
    )
    run.add_argument(
        "--output",
        type=Path,
        help="embedded: write verdicts and dead letters here (JSONL; default standard output, "
        "with the logs on standard error)",
    )
    run.add_argument("--checkpoint", type=Path, help="overrides FAME_CHECKPOINT")
    run.add_argument("--detector", type=Path, help="overrides FAME_DETECTOR_MODEL")
    run.set_defaults(func=_run)
    check = sub.add_parser(
        "check-config", help="validate the configuration and print it (secrets masked)"
    )
    check.add_argument("--env-file", type=Path)
    check.set_defaults(func=_check_config)
    return parser


def load_settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("checkpoint", "detector"):
        value = getattr(args, name, None)
        if value is not None:
            overrides["detector_model" if name == "detector" else name] = value
    env_file = getattr(args, "env_file", None)
    return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]


def _valid_settings(args: argparse.Namespace) -> Settings | None:
    """The settings, or None after printing why they are invalid (exit status 2)."""
    try:
        return load_settings(args)
    except (ValidationError, SettingsError) as error:
        print(f"invalid configuration:\n{error}", file=sys.stderr)
        return None


def _check_config(args: argparse.Namespace) -> int:
    """The settings, and under ``resolved`` the model files `run` would load (an unset
    checkpoint or detector is searched for; what it finds, or why not, is shown)."""
    settings = _valid_settings(args)
    if settings is None:
        return 2
    report = json.loads(settings.model_dump_json())
    report["resolved"] = _resolved_models(settings)
    print(json.dumps(report, indent=2))
    return 0


def _resolved_models(settings: Settings) -> dict[str, str | None]:
    from fame.checkpoint import resolve_checkpoint
    from fame.errors import FameError
    from fame.faces.detector import resolve_detector_path

    resolved: dict[str, str | None] = {}
    try:
        resolved["checkpoint"] = str(resolve_checkpoint(settings.checkpoint))
    except FameError as error:
        resolved["checkpoint"] = None
        resolved["checkpoint_error"] = error.message
    resolved["detector_model"] = None
    try:
        detector = resolve_detector_path(settings.detector_model)
    except FameError as error:
        resolved["detector_model_error"] = error.message
    else:
        if detector is None:
            resolved["detector_model_error"] = "no SCRFD model found: the weak fallback would load"
        else:
            resolved["detector_model"] = str(detector)
    return resolved


def _exit_on_sigterm() -> None:
    """Until `Service.run` installs its draining handler, SIGTERM ends the process at once.

    In a container the service is PID 1, and the kernel drops every signal PID 1 has no handler
    for: without this, a pod deleted while it loads torch and the models would wait out its whole
    grace period before the SIGKILL.
    """

    def _exit(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d during startup: exiting", signum)
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit)


def _run(args: argparse.Namespace) -> int:
    settings = _valid_settings(args)
    if settings is None:
        return 2
    # embedded: standard output may carry the verdicts, so the logs go to standard error
    logs.configure(settings.log_level, stderr=args.embedded)
    _exit_on_sigterm()  # before the slow imports (torch) and model loading
    from fame.errors import FameError

    try:
        service = _embedded(settings, args) if args.embedded else _kafka(settings)
        service.build()
    except (FameError, ValueError, OSError) as error:
        log.error("startup failed: %s", error)
        return 2
    try:
        if not args.embedded:
            service.serve_health()
        service.run()
    finally:
        service.close()
    if args.embedded and service.metrics.dead_lettered() > 0:
        log.warning("%d event(s) dead-lettered (see the output)", service.metrics.dead_lettered())
        return 1  # like `fame attribute`: a batch with failures says so
    return 0


def _kafka(settings: Settings) -> Service:
    from kafka.errors import KafkaError

    from consumer.app import Service, retry_policy
    from consumer.backends.kafka import KafkaSink, KafkaSource, transactional_producer
    from consumer.publish import AckedPublisher, Publisher, TransactionalPublisher
    from consumer.store import RedisWindowStore
    from fame.errors import TransientError

    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    publisher: Publisher
    try:
        source = KafkaSource(settings)
        if settings.exactly_once:
            producer = transactional_producer(settings)
            publisher = TransactionalPublisher(producer, source.group_metadata)
        else:
            publisher = AckedPublisher(KafkaSink(settings), source, retry_policy(settings).delay_s)
    except KafkaError as error:  # a startup failure with the reason, not a traceback
        raise TransientError(f"Kafka at {settings.kafka_bootstrap_servers}: {error!r}") from error
    return Service(
        settings=settings,
        source=source,
        publisher=publisher,
        store=RedisWindowStore(settings.redis_url, settings.window_ttl_s, password),
    )


def _embedded(settings: Settings, args: argparse.Namespace) -> Service:
    from consumer.app import Service, retry_policy
    from consumer.backends.local import LineSink, LocalBroker, LocalSource
    from consumer.publish import AckedPublisher
    from consumer.store import MemoryWindowStore

    if args.input is None:
        raise ValueError("--embedded needs --input (a JSONL file of events, videos, or -)")
    if settings.exactly_once:
        raise ValueError("FAME_EXACTLY_ONCE needs Kafka transactions: not with --embedded")
    broker = LocalBroker()
    if str(args.input) == "-":
        broker.expect_more()
        feeder = threading.Thread(
            target=_feed, args=(sys.stdin.fileno(), broker, settings.events_topic), daemon=True
        )
        feeder.start()
    else:
        events, roots = embedded_events(args.input)
        settings = settings.model_copy(update={"file_roots": [*settings.file_roots, *roots]})
        for event in events:
            broker.append(settings.events_topic, None, event)
    output: IO[str] = args.output.open("w") if args.output else sys.stdout
    source = LocalSource(broker, settings.events_topic, settings.group_id)
    return Service(
        settings=settings,
        source=source,
        publisher=AckedPublisher(LineSink(output), source, retry_policy(settings).delay_s),
        store=MemoryWindowStore(settings.window_ttl_s),
        exit_when_idle=True,
    )


def _feed(fd: int, broker: LocalBroker, topic: str, backlog: int = FEED_BACKLOG) -> None:
    """Each non-empty line as one event record, as it arrives, bytes as they are (a line that is
    not an event is dead-lettered, as from Kafka); end of input ends the run.

    Backpressure: while `backlog` records of the topic are not yet committed, it stops reading,
    so the pipe fills and the writer blocks, instead of the backlog growing in memory.
    Reads the descriptor itself (`os.read`), not `sys.stdin.buffer`: a daemon thread blocked
    inside a buffered reader's lock makes the interpreter abort when a signal ends the run."""
    try:
        for line in _lines(fd):
            if line.strip():
                broker.wait_for_room(topic, backlog)
                broker.append(topic, None, line.rstrip(b"\r"))
    finally:
        broker.end_of_input()


def _lines(
    fd: int, chunk_bytes: int = 65536, max_bytes: int = MAX_EVENT_LINE_BYTES
) -> Iterator[bytes]:
    """Lines (without their newline) of what arrives on ``fd``, until end of input.

    A line longer than ``max_bytes`` comes out cut to its first ``max_bytes`` (no event is that
    long, so it is dead-lettered like any bad line) and the rest of it is skipped as it arrives:
    a feed without newlines cannot grow memory without end."""
    pending = b""
    skipping = False  # inside the rest of a line already cut
    while chunk := os.read(fd, chunk_bytes):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if not skipping:
                yield line[:max_bytes]
            skipping = False
        if skipping:
            pending = b""
        elif len(pending) > max_bytes:
            yield pending[:max_bytes]
            pending, skipping = b"", True
    if pending and not skipping:
        yield pending


def embedded_events(path: Path) -> tuple[list[bytes], list[Path]]:
    """Raw event payloads from a JSONL file (as is: bad lines are dead-lettered like in Kafka),
    or one `VideoEvent` per video, for a video file or a folder of them (whose folder becomes an
    allowed file root: events naming other local files need ``FAME_FILE_ROOTS``)."""
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        videos, root = [path], path.parent
    elif path.is_file():
        return [line for line in path.read_bytes().splitlines() if line.strip()], []
    elif path.is_dir():
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        root = path
    else:
        raise ValueError(f"--input {path} is neither a file nor a folder")
    events = [
        json.dumps(
            {
                "schema_version": "1.0",
                "event_id": f"local-{uuid.uuid5(uuid.NAMESPACE_URL, video.resolve().as_uri())}",
                "video_id": to_safe_id(video.stem),
                "source_uri": video.resolve().as_uri(),
                "byte_size": video.stat().st_size,
                "submitted_at": datetime.now(UTC).isoformat(),
            }
        ).encode()
        for video in videos
    ]
    return events, [root.resolve()]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
