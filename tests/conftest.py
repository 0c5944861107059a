"""Fixtures shared by the whole suite: the read-only shared/ folder and the local services."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run import REPO_ROOT, services_env
from fame.faces.detector import shared_dir

__all__ = ["REPO_ROOT", "shared_dir"]


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder; tests that need it skip with a reason when it is absent."""
    path = shared_dir()
    if not (path / "data").is_dir():
        pytest.skip(f"shared data folder not found at {path} (set FAME_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap servers of the real local broker started by `make services-up`."""
    value = services_env().get("FAME_KAFKA_BOOTSTRAP_SERVERS")
    if not value:
        pytest.skip("no Kafka: run `make services-up` (writes .services.env)")
    return value


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real local redis-server started by `make services-up`."""
    value = services_env().get("FAME_REDIS_URL")
    if not value:
        pytest.skip("no Redis: run `make services-up` (writes .services.env)")
    return value


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu` tests without CUDA (the only automatic skip; everything else runs in CI)."""
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


CLASSES = ["real", "faceswap", "lightweight", "iae", "dfaker", "dfl-h128"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small, untrained FAME checkpoint: service tests check plumbing, not accuracy."""
    import torch

    from fame.checkpoint import build_meta, save_checkpoint
    from fame.model import create_model

    torch.manual_seed(0)
    model = create_model("fame_tiny", len(CLASSES), clip_len=8)
    path = tmp_path_factory.mktemp("checkpoint") / "tiny.pt"
    save_checkpoint(path, model, build_meta(model, "fame_tiny", CLASSES))
    return path


@pytest.fixture(scope="session")
def detector(shared: Path) -> Path:
    """The SCRFD-500MF detector (with keypoints) from the shared folder."""
    return shared / "models" / "scrfd_500m_bnkps.onnx"
