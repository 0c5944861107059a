"""``/healthz`` (the run loop is alive), ``/readyz`` (assigned, Redis reachable, model loaded),
``/metrics`` (Prometheus). A small threaded HTTP server; probes never touch the hot path."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumer.metrics import Metrics

Check = Callable[[], dict[str, bool]]


class HealthServer:
    def __init__(self, host: str, port: int, metrics: Metrics, alive: Check, ready: Check) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    outer._send(self, 200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
                elif self.path in ("/healthz", "/readyz"):
                    checks = (alive if self.path == "/healthz" else ready)()
                    ok = all(checks.values())
                    body = "".join(f"{k} {'ok' if v else 'FAIL'}\n" for k, v in checks.items())
                    outer._send(self, 200 if ok else 503, body.encode(), "text/plain")
                else:
                    outer._send(self, 404, b"not found\n", "text/plain")

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds would drown the JSON log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
