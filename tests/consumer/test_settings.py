"""Configuration: FAME_* variables, clear startup failures naming the bad variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from consumer.app import frontend_config
from consumer.cli import main
from consumer.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("FAME_")]:
        monkeypatch.delenv(key)


def test_environment_sets_fields_and_file_roots_take_a_json_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAME_EVENTS_TOPIC", "uploads")
    monkeypatch.setenv("FAME_FILE_ROOTS", '["/data/a", "/data/b"]')
    monkeypatch.setenv("FAME_MAX_IN_FLIGHT", "3")
    monkeypatch.setenv("FAME_DETECT_EVERY", "2")
    monkeypatch.setenv("FAME_DETECT_BATCH", "8")
    monkeypatch.setenv("FAME_DETECT_SIZE", "320")
    monkeypatch.setenv("FAME_DETECTOR_THREADS", "3")
    monkeypatch.setenv("FAME_DETECTOR_BACKEND", "torch")
    monkeypatch.setenv("FAME_HWACCEL", "cuda")
    monkeypatch.setenv("FAME_PRECISION", "int8")
    monkeypatch.setenv("FAME_INT8_ENCODER", "/models/fame.int8.onnx")
    settings = Settings()
    assert settings.precision == "int8"
    assert settings.int8_encoder == Path("/models/fame.int8.onnx")
    assert settings.events_topic == "uploads"
    assert settings.file_roots == [Path("/data/a"), Path("/data/b")]
    assert settings.max_in_flight == 3
    assert frontend_config(settings).detect_every == 2
    assert frontend_config(settings).detect_batch == 8
    assert frontend_config(settings).det_size == 320
    assert frontend_config(settings).detector_threads == 3
    assert frontend_config(settings).detector_backend == "torch"
    assert frontend_config(settings).hwaccel == "cuda"
    assert frontend_config(settings).sampling.refuse_longer  # never a verdict on a video's start


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FAME_MAX_IN_FLIGHT": "0"}, "max_in_flight"),
        ({"FAME_DETECT_EVERY": "0"}, "detect_every"),
        ({"FAME_DETECT_BATCH": "33"}, "detect_batch"),
        ({"FAME_DETECT_SIZE": "300"}, "detect_size"),
        ({"FAME_PRECISION": "fp16"}, "precision"),
        ({"FAME_DETECTOR_BACKEND": "tensorrt"}, "detector_backend"),
        ({"FAME_HWACCEL": "vaapi"}, "hwaccel"),
        ({"FAME_REDIS_URL": "http://redis:6379"}, "redis_url"),
        ({"FAME_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "FAME_KAFKA_SASL_MECHANISM"),
        ({"FAME_VERDICTS_TOPIC": "fame.video-events"}, "three different topics"),
        ({"FAME_RETRY_BASE_MS": "500", "FAME_RETRY_MAX_MS": "100"}, "FAME_RETRY_MAX_MS"),
        ({"FAME_RETRY_BASE_MS": "inf", "FAME_RETRY_MAX_MS": "inf"}, "retry_base_ms"),
        ({"FAME_DRAIN_TIMEOUT_S": "nan"}, "drain_timeout_s"),
        ({"FAME_KAFKA_BOOTSTRAP_SERVERS": ""}, "bootstrap servers"),
        ({"FAME_KAFKA_BOOTSTRAP_SERVERS": "kafka-0:9092,kafka-1"}, "bootstrap servers"),
        ({"FAME_FILE_ROOTS": '["/data"'}, "file_roots"),
        ({"FAME_MAX_VERDICT_TRACKS": "0"}, "max_verdict_tracks"),
        ({"FAME_ALLOWED_HOSTS": "https://cdn.example.com"}, "no scheme or port"),
        ({"FAME_ALLOWED_HOSTS": '["cdn.example.com:443"]'}, "no scheme or port"),
        ({"FAME_ALLOWED_PRIVATE_NETWORKS": "10.0.0.1/8"}, "host bits set"),
        ({"FAME_ALLOWED_PRIVATE_NETWORKS": "intranet"}, "allowed_private_networks"),
    ],
)
def test_invalid_configuration_names_the_problem(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_file_roots_take_a_plain_path_and_empty_values_mean_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAME_FILE_ROOTS", "/data")
    monkeypatch.setenv("FAME_KAFKA_SSL_CAFILE", "")
    monkeypatch.setenv("FAME_CHECKPOINT", " ")
    monkeypatch.setenv("FAME_KAFKA_BOOTSTRAP_SERVERS", "kafka-0:9092, [::1]:9093")
    settings = Settings()
    assert settings.file_roots == [Path("/data")]
    assert settings.kafka_ssl_cafile is None and settings.checkpoint is None
    assert "ssl_cafile" not in settings.kafka_client_options()
    assert settings.kafka_client_options()["bootstrap_servers"] == ["kafka-0:9092", "[::1]:9093"]
    monkeypatch.setenv("FAME_FILE_ROOTS", "")
    assert Settings().file_roots == []


def test_fetch_allowlists_reach_the_front_end(monkeypatch: pytest.MonkeyPatch) -> None:
    assert frontend_config(Settings()).fetch.allowed_hosts is None  # unset: any public host
    monkeypatch.setenv("FAME_ALLOWED_HOSTS", '["cdn.example.com", ".Videos.example.org"]')
    monkeypatch.setenv("FAME_ALLOWED_PRIVATE_NETWORKS", "10.0.5.0/24")
    fetch = frontend_config(Settings()).fetch
    assert fetch.allowed_hosts == ("cdn.example.com", ".videos.example.org")
    assert fetch.allowed_private_networks == ("10.0.5.0/24",)
    assert not fetch.allow_private_addresses
    monkeypatch.setenv("FAME_ALLOWED_HOSTS", "")  # empty is unset, never "no host at all"
    assert frontend_config(Settings()).fetch.allowed_hosts is None


@pytest.mark.parametrize(
    "env",
    [
        {"FAME_FILE_ROOTS": '["/data"'},
        {"FAME_KAFKA_BOOTSTRAP_SERVERS": ""},
        {"FAME_RETRY_BASE_MS": "inf"},
    ],
)
def test_check_config_reports_bad_values_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["check-config"]) == 2
    assert capsys.readouterr().err.startswith("invalid configuration:")


def test_sasl_password_is_masked_in_check_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in {
        "FAME_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "FAME_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "FAME_KAFKA_SASL_USERNAME": "svc",
        "FAME_KAFKA_SASL_PASSWORD": "hunter2",
    }.items():
        monkeypatch.setenv(key, value)
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "SCRAM-SHA-512" in out


def test_check_config_shows_the_model_files_run_would_load(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from fame.checkpoint import DEFAULT_CHECKPOINT

    monkeypatch.setenv("FAME_DETECTOR_MODEL", str(tmp_path / "missing.onnx"))
    assert main(["check-config"]) == 0
    resolved = json.loads(capsys.readouterr().out)["resolved"]
    assert resolved["checkpoint"] == str(DEFAULT_CHECKPOINT)  # the committed default
    assert resolved["detector_model"] is None and "missing.onnx" in resolved["detector_model_error"]


def test_check_config_fails_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAME_MAX_BATCH", "-1")
    assert main(["check-config"]) == 2
    assert "max_batch" in capsys.readouterr().err


def test_run_without_a_checkpoint_is_a_startup_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent.pt"
    (tmp_path / "videos").mkdir()
    code = main(
        ["run", "--embedded", "--input", str(tmp_path / "videos"), "--checkpoint", str(missing)]
    )
    assert code == 2
    assert str(missing) in capsys.readouterr().err  # embedded: logs on stderr


def test_detect_batch_has_the_front_ends_bound() -> None:
    """Settings load without the front end (light), so the bound is written twice: one value."""
    from fame.faces.frontend import GPU_DETECT_BATCH, MAX_DETECT_BATCH, FrontEndConfig

    assert Settings().detect_batch == 0  # auto: the front end's own default
    description = Settings.model_fields["detect_batch"].description
    assert description is not None and f"auto: {GPU_DETECT_BATCH} where" in description
    assert FrontEndConfig().detect_batch == 0
    Settings(detect_batch=MAX_DETECT_BATCH)
    for outside in (-1, MAX_DETECT_BATCH + 1):
        with pytest.raises(ValidationError, match="detect_batch"):
            Settings(detect_batch=outside)


def test_a_live_feeds_backlog_never_limits_the_events_in_flight() -> None:
    """Standard input stops being read at FEED_BACKLOG unfinished events: at least as many as
    the largest FAME_MAX_IN_FLIGHT, so backpressure never lowers the configured concurrency."""
    from consumer.cli import FEED_BACKLOG

    Settings(max_in_flight=FEED_BACKLOG)
    with pytest.raises(ValidationError, match="max_in_flight"):
        Settings(max_in_flight=FEED_BACKLOG + 1)
