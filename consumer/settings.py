"""Service configuration: environment variables with the prefix ``FAME_``, or a ``.env``-style file.

Every option has a default that works for the local stack except the ones that name things only an
operator knows (bootstrap servers, checkpoint). Invalid values fail at startup with the variable's
name in the message (pydantic-settings does that), never later inside a worker.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_HOST_ENTRY = re.compile(r"^\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):\d{1,5}$")


class Settings(BaseSettings):
    """All knobs of `fame-consumer run` (see its ``--help`` and docs/integration.md)."""

    model_config = SettingsConfigDict(
        env_prefix="FAME_",
        env_file=None,
        extra="ignore",
        validate_default=True,
        allow_inf_nan=False,  # FAME_RETRY_BASE_MS=inf would fail later, inside a worker
    )

    # Kafka
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="host:port[,host:port]")
    events_topic: str = Field("fame.video-events", min_length=1)
    verdicts_topic: str = Field("fame.verdicts", min_length=1)
    dlq_topic: str = Field("fame.dead-letters", min_length=1)
    group_id: str = Field("fame-consumer", min_length=1)
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    exactly_once: bool = Field(
        False, description="publish outcomes and offsets in Kafka transactions"
    )
    transactional_id: str | None = Field(
        None,
        min_length=1,
        description="exactly-once: stable per replica, distinct between replicas "
        "(default: <group>-<hostname>)",
    )
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    session_timeout_ms: int = Field(45_000, ge=6_000)

    # Redis
    redis_url: str = Field("redis://127.0.0.1:6379/0", pattern=r"^(rediss?|unix)://")
    redis_password: SecretStr | None = None
    window_ttl_s: int = Field(
        24 * 3600,
        ge=60,
        description="TTL of window and dedupe keys (in Redis, or in memory when embedded)",
    )

    # Models and the front end
    checkpoint: Path | None = Field(None, description="FAME checkpoint (.pt)")
    int8_encoder: Path | None = Field(
        None, description="int8 encoder (default: the checkpoint's .int8.onnx sidecar, if any)"
    )
    detector_model: Path | None = Field(None, description="SCRFD .onnx or InsightFace pack dir")
    file_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="roots for file:// sources (a path or a JSON list)"
    )
    allow_private_addresses: bool = False
    allowed_hosts: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="the only hosts http(s) sources may name: exact, or '.example.com' for its "
        "subdomains (a name or a JSON list; unset: any host with a public address)",
    )
    allowed_private_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="private networks (CIDR) sources may reach, e.g. one internal object store "
        "(a network or a JSON list), without FAME_ALLOW_PRIVATE_ADDRESSES opening them all",
    )
    max_video_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    sample_fps: float = Field(8.0, gt=0, le=60)
    window_stride: int = Field(8, ge=1)
    detect_every: int = Field(
        1, ge=1, le=8, description="detect faces on every k-th sampled frame, interpolate between"
    )
    detect_batch: int = Field(
        0,
        ge=0,
        le=32,  # fame.faces.frontend.MAX_DETECT_BATCH (not imported: settings load light)
        description="key frames per face-detector call; 0 = auto: 8 where the detector runs on "
        "a GPU (1.43x the events/s there), 1 on a CPU (no faster batched; docs/benchmarks.md)",
    )
    detect_size: int = Field(
        640,
        ge=128,
        le=1280,
        multiple_of=32,
        description="long side of the face detector's input, px (smaller: faster, misses more "
        "small faces)",
    )
    detector_backend: Literal["auto", "onnxruntime", "torch"] = Field(
        "auto",
        description="runtime for the face detector: auto = ONNX Runtime, or PyTorch where only "
        "PyTorch reaches the GPU (onnxruntime CPU build, or onnxruntime-gpu missing its CUDA "
        "libraries)",
    )
    hwaccel: Literal["none", "cuda"] = Field(
        "none",
        description="decode on the GPU's video engine (cuda: NVDEC) where the process can open "
        "it, else in software with a warning",
    )
    workers: int = Field(2, ge=1, le=64, description="front-end worker processes")
    detector_threads: int = Field(
        0,
        ge=0,
        le=64,
        description="CPU threads per front-end worker, for its detector (ONNX Runtime) and its "
        "decoder (frame threads) (0: the CPUs / FAME_WORKERS)",
    )
    task_timeout_s: float = Field(120.0, gt=0)
    worker_memory_limit_mb: int | None = Field(None, ge=256)

    # Flow control and batching
    max_in_flight: int = Field(8, ge=1, le=1024)
    max_batch: int = Field(64, ge=1, le=4096, description="windows per model call")
    max_wait_ms: float = Field(10.0, ge=0, le=1000)
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto",
        description="model precision: auto = bf16 on CUDA; on CPUs int8 where the checkpoint "
        "has an int8 encoder, else bf16 where native, else fp32",
    )
    max_verdict_tracks: int = Field(
        256,
        ge=1,
        le=1000,
        description="tracks listed in a verdict: the most likely manipulated, then the longest "
        "(the video's label still weighs every track); keeps a crowded video's verdict within "
        "Kafka's 1 MiB record limit",
    )
    max_attempts: int = Field(4, ge=1, le=20)
    retry_base_ms: float = Field(200.0, gt=0)
    retry_max_ms: float = Field(10_000.0, gt=0)
    drain_timeout_s: float = Field(30.0, ge=0)
    commit_interval_ms: int = Field(500, ge=0)

    # HTTP and logs
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        servers = [server.strip() for server in value.split(",")]
        bad = [server for server in servers if not _HOST_PORT.match(server)]
        if bad:
            raise ValueError(f"bootstrap servers must be host:port[,host:port], got {value!r}")
        return ",".join(servers)

    @field_validator(
        "kafka_ssl_cafile", "checkpoint", "int8_encoder", "detector_model", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``FAME_CHECKPOINT=`` means no path, not the working directory (``Path("")``)."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("file_roots", "allowed_hosts", "allowed_private_networks", mode="before")
    @classmethod
    def _json_list(cls, value: object) -> object:
        """Accept a JSON list (``FAME_FILE_ROOTS='["/data"]'``) or a single entry."""
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return []
            if text.startswith("["):
                return json.loads(text)
            return [text]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str] | None) -> list[str] | None:
        """Host names only (no scheme, port or path), lower case; an empty list means unset,
        never "no host": ``FAME_ALLOWED_HOSTS=`` must not silently refuse every video."""
        if not value:
            return None
        hosts = [host.strip().lower() for host in value]
        for host in hosts:
            if not _HOST_ENTRY.fullmatch(host):
                raise ValueError(f"{host!r} is not a host name or '.domain' (no scheme or port)")
        return hosts

    @field_validator("allowed_private_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network)  # ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "FAME_KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol} needs FAME_KAFKA_SASL_MECHANISM, "
                "FAME_KAFKA_SASL_USERNAME and FAME_KAFKA_SASL_PASSWORD"
            )
        if len({self.events_topic, self.verdicts_topic, self.dlq_topic}) != 3:
            raise ValueError("events, verdicts and DLQ topics must be three different topics")
        if self.retry_max_ms < self.retry_base_ms:
            raise ValueError(
                f"FAME_RETRY_MAX_MS={self.retry_max_ms} is below FAME_RETRY_BASE_MS="
                f"{self.retry_base_ms}"
            )
        return self

    def kafka_client_options(self) -> dict[str, object]:
        """Security options shared by the consumer and the producers."""
        options: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap_servers.split(","),
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile:
            options["ssl_cafile"] = str(self.kafka_ssl_cafile)
        return options
