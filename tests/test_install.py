"""The installation ends with exactly one ONNX Runtime distribution and a usable provider list.

insightface 2.x declares the CPU `onnxruntime`, which shares its module files with
`onnxruntime-gpu`; installing both silently drops the CUDA provider. `make install` overrides it.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata

import onnxruntime
import pytest

from fame.video.decode import hwaccel_unavailable
from tests.conftest import REPO_ROOT


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def _gpu_platform() -> bool:
    return platform.system() == "Linux" and platform.machine() == "x86_64"


def test_exactly_one_onnxruntime_distribution() -> None:
    installed = {name for name in ("onnxruntime", "onnxruntime-gpu") if _installed(name)}
    expected = {"onnxruntime-gpu"} if _gpu_platform() else {"onnxruntime"}
    assert installed == expected


def test_onnxruntime_providers_match_the_distribution() -> None:
    providers = onnxruntime.get_available_providers()
    assert "CPUExecutionProvider" in providers
    if _gpu_platform():
        assert "CUDAExecutionProvider" in providers
    assert "AzureExecutionProvider" not in providers


def test_gui_opencv_is_not_installed() -> None:
    assert _installed("opencv-python-headless")
    assert not _installed("opencv-python")


@pytest.mark.parametrize("script", ["fame", "fame-consumer"])
def test_console_scripts_have_help(script: str) -> None:
    exe = REPO_ROOT / ".venv" / "bin" / script
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", script.replace("-", "_")]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


_IMPORT_ALL = """
import importlib, pkgutil, sys
package = importlib.import_module({package!r})
for info in pkgutil.walk_packages(package.__path__, prefix={package!r} + "."):
    importlib.import_module(info.name)
print(",".join(sorted(name.split(".")[0] for name in sys.modules)))
"""


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("schemas", {"fame", "consumer", "kafka", "redis", "torch"}),
        ("fame", {"consumer", "kafka", "redis"}),
    ],
)
def test_packages_import_in_one_direction(package: str, forbidden: set[str]) -> None:
    """Imports flow one way: `schemas` imports nothing of ours, `fame` nothing of the service."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL.format(package=package)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=REPO_ROOT,
    )
    loaded = set(result.stdout.strip().split(","))
    assert not loaded & forbidden


def test_fame_info_says_what_this_machine_can_run_on() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fame.cli", "info"], capture_output=True, text=True, check=True
    ).stdout
    facts = json.loads(out)
    assert facts["onnxruntime_providers"] == onnxruntime.get_available_providers()
    assert facts["av"] == metadata.version("av")
    # the same probe the decoder uses: a reason string on a machine without NVDEC
    assert facts["nvdec_unavailable"] == hwaccel_unavailable("cuda")
