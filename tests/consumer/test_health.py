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


def test_metrics_carry_the_standard_process_series_for_memory_alerts() -> None:
    """Operators alert on `process_resident_memory_bytes` (a leak) as on any Prometheus job."""
    import urllib.request

    from consumer.health import HealthServer
    from consumer.metrics import Metrics

    server = HealthServer("127.0.0.1", 0, Metrics(), lambda: {}, lambda: {})
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.close()
    values = {
        line.split()[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["process_resident_memory_bytes"] > 10e6  # this Python process: > 10 MB
    assert values["process_open_fds"] > 0
    assert any(name.startswith("python_info{") for name in values)
