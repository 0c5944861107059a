"""What `/healthz` reports (`Service._alive`), beyond what the integration tests reach."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from consumer.app import Service


def _service(**parts: Any) -> Service:
    return Service(settings=None, source=None, publisher=None, store=None, **parts)  # type: ignore[arg-type]


def test_liveness_fails_while_the_front_end_pool_cannot_run_tasks() -> None:
    """The pool says so when no worker can start or its dispatcher failed: restart the pod."""
    assert _service()._alive()["frontend_pool"]  # not built yet: nothing to judge
    assert _service(frontend=SimpleNamespace(healthy=True))._alive()["frontend_pool"]
    assert not _service(frontend=SimpleNamespace(healthy=False))._alive()["frontend_pool"]
