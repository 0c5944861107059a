"""Static checks of the container image definition (no Docker engine on the CI machine)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy_support import dockerfile_lint
from tests.deploy_support.dockerfile_lint import Dockerfile

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKER_DIR = REPO_ROOT / "deploy" / "docker"


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return dockerfile_lint.load(DOCKER_DIR / "Dockerfile")


def test_dockerfile_passes_every_rule(dockerfile: Dockerfile) -> None:
    assert dockerfile_lint.lint(dockerfile) == []


def test_final_stage_is_cuda_runtime_and_non_root(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    assert re.fullmatch(r"nvidia/cuda:1[23]\.\d+\.\d+-cudnn-runtime-ubuntu24\.04", final.base)
    assert final.of("USER")[-1].args == "10001:10001"
    assert len(dockerfile.stages) >= 2


def test_entrypoint_runs_the_consumer(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    assert final.of("ENTRYPOINT")[-1].exec_form() == ["fame-consumer"]
    assert final.of("CMD")[-1].exec_form() == ["run"]
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "fame-consumer" in scripts


def test_healthcheck_uses_python_against_healthz(dockerfile: Dockerfile) -> None:
    check = dockerfile.final.of("HEALTHCHECK")[-1]
    command = check.args[check.args.index("CMD") + len("CMD") :].strip()
    argv = dockerfile_lint.Instruction("CMD", command, check.line_no).exec_form()
    assert argv is not None
    assert argv[0] == "python"
    assert "/healthz" in argv[-1]
    compile(argv[-1], "<healthcheck>", "exec")


def test_writable_state_points_at_tmp(dockerfile: Dockerfile) -> None:
    env = " ".join(i.args for i in dockerfile.final.of("ENV"))
    for name in ("HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR", "TORCH_HOME"):
        assert re.search(rf"\b{name}=/tmp\b", env), name
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_gpu_runtime_mounts_the_video_decoder(dockerfile: Dockerfile) -> None:
    """FAME_HWACCEL=cuda needs libnvcuvid, which the NVIDIA runtime mounts only for `video`."""
    env = " ".join(i.args for i in dockerfile.final.of("ENV"))
    found = re.search(r"\bNVIDIA_DRIVER_CAPABILITIES=(\S+)", env)
    assert found and "video" in found.group(1).split(",")


def test_models_are_not_baked_in(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for instruction in stage.of("COPY") + stage.of("ADD"):
            assert not re.search(r"\.(pt|pth|onnx|safetensors)\b", instruction.args), instruction


def test_oci_labels_present(dockerfile: Dockerfile) -> None:
    labels = " ".join(i.args for i in dockerfile.final.of("LABEL"))
    for key in ("title", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_builder_installs_with_the_override_file(dockerfile: Dockerfile) -> None:
    runs = " ".join(i.args for s in dockerfile.stages[:-1] for i in s.of("RUN"))
    assert "--override deploy/requirements/overrides.txt" in runs
    assert "--requirement deploy/docker/requirements.lock" in runs
    copied = " ".join(i.args for s in dockerfile.stages for i in s.of("COPY"))
    for path in ("deploy/requirements/overrides.txt", "pyproject.toml", "fame/", "consumer/"):
        assert path in copied
        assert (REPO_ROOT / path).exists(), path


def test_lock_pins_every_runtime_dependency() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    locked = {
        line.split("==")[0].strip().lower()
        for line in (DOCKER_DIR / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
        if name == "onnxruntime":
            continue
        assert name in locked, f"{name} is not pinned in requirements.lock"
    assert "onnxruntime" not in locked
    assert "opencv-python" not in locked


def test_dockerignore_is_an_allow_list() -> None:
    rules = [
        line
        for line in (DOCKER_DIR / "Dockerfile.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert rules[0] == "*"
    assert not any(rule.startswith("!.venv") or rule.startswith("!.cache") for rule in rules)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("FROM python:latest\nUSER 10001\n", "':latest' is not a pin"),
        ("FROM python\nUSER 10001\n", "without a pinned tag"),
        ("FROM python:3.11\n", "has no USER"),
        ("FROM python:3.11\nUSER root\n", "is root"),
        ("FROM python:3.11\nRUN apt-get update && apt-get install -y gcc\n", "build tooling"),
        ("FROM python:3.11\nENV DB_PASSWORD=hunter2\n", "looks like a secret"),
        ("FROM python:3.11\nARG API_TOKEN\n", "looks like a secret"),
        ("FROM python:3.11\nADD https://example.com/x.tgz /x\n", "ADD of a URL"),
        ("FROM python:3.11\nCOPY --from=build /a /a\n", "names no stage"),
        ("FROM python:3.11\nENTRYPOINT fame-consumer run\n", "not in exec form"),
        ("FROM python:3.11\nUSER 10001\n", "no HEALTHCHECK"),
        ("FROM python:3.11\nUSER 10001\n", "no LABEL"),
        ("ARG BASE\nFROM ${BASE}\n", "unresolved build argument"),
    ],
)
def test_rules_catch_bad_dockerfiles(snippet: str, expected: str) -> None:
    problems = dockerfile_lint.lint(dockerfile_lint.parse(snippet))
    assert any(expected in p for p in problems), problems


def test_parser_joins_continuations_and_resolves_args() -> None:
    parsed = dockerfile_lint.parse(
        "# syntax=docker/dockerfile:1.7\nARG IMG=python:3.11\nFROM ${IMG} AS build\n"
        "RUN a \\\n    && b\nFROM build\n"
    )
    assert [s.base for s in parsed.stages] == ["python:3.11", "build"]
    assert parsed.stages[0].of("RUN")[0].args == "a && b"
    assert parsed.stages[0].name == "build"


def test_local_compose_runs_the_image_like_the_chart() -> None:
    """The compose file is not run in CI (no Docker here); this checks its wiring only."""
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "local" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "redis", "topics", "consumer"} <= set(services)
    consumer = services["consumer"]
    assert consumer["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert (REPO_ROOT / "deploy/local" / consumer["build"]["context"] / "pyproject.toml").exists()
    assert consumer["read_only"] is True
    assert consumer["user"] == "10001:10001"
    assert any(mount.startswith("/tmp") for mount in consumer["tmpfs"])
    drain_s = int(consumer["environment"]["FAME_DRAIN_TIMEOUT_S"])
    assert int(consumer["stop_grace_period"].removesuffix("s")) > drain_s
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for service in services.values():
        image = service.get("image", "")
        assert not image.endswith(":latest")


# The lowest Linux driver each CUDA major version runs on (NVIDIA's CUDA release notes).
MIN_DRIVER_FOR_CUDA = {12: 525, 13: 580}


def _prose(path: str) -> str:
    """A file's text with comment marks and line breaks folded into single spaces."""
    return " ".join(re.sub(r"^\s*#", "", line).strip() for line in (REPO_ROOT / path).open())


def test_chart_and_docs_state_the_driver_the_base_image_needs(dockerfile: Dockerfile) -> None:
    found = re.search(r"nvidia/cuda:(\d+)\.", dockerfile.final.base)
    assert found
    cuda_major = int(found.group(1))
    requirement = f"NVIDIA driver >= {MIN_DRIVER_FOR_CUDA[cuda_major]}"
    values = _prose("deploy/helm/fame-consumer/values.yaml")
    assert f"CUDA {cuda_major}" in values and requirement in values
    assert requirement in _prose("docs/service.md")


# The service's startup with the slow part (importing torch, loading the models) replaced by a
# sleep. SIGTERM is ignored first: in a container the service is PID 1, and the kernel drops a
# signal PID 1 has not installed a handler for, exactly as if it were ignored.
SLOW_STARTUP = """
import signal, sys, time
import consumer.cli as cli

def slow_startup(settings):
    print("starting", flush=True)
    time.sleep(60)
    raise AssertionError("SIGTERM did not end the startup")

cli._kafka = slow_startup
signal.signal(signal.SIGTERM, signal.SIG_IGN)
sys.exit(cli.main(["run"]))
"""


def test_sigterm_during_startup_ends_pid_1_promptly() -> None:
    """Deleting a pod that is still loading its models must not wait out the grace period."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAME_")}
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_STARTUP],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        output: list[str] = []
        while not output or output[-1] != "starting\n":
            ready, _, _ = select.select([process.stdout], [], [], 30)
            assert ready and process.poll() is None, "".join(output)
            output.append(process.stdout.readline())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        process.kill()
        process.wait()
