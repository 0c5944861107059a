"""Safe fetch against a real local HTTP server (127.0.0.1, allowed only where a test says so)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fame.errors import FameError, PoisonError
from fame.video.fetch import FetchPolicy, fetch
from schemas.errors import ErrorCode

BODY = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        if self.path == "/video.mp4":
            self._send(BODY)
        elif self.path == "/nolength":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(BODY)
            self.close_connection = True
        elif self.path == "/slow":
            self.send_response(200)
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gives up first
                for _ in range(40):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
        elif self.path.startswith("/loop"):
            hop = int(self.path.removeprefix("/loop") or 0)
            self._redirect(f"/loop{hop + 1}")
        elif self.path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif self.path == "/to-other-loopback":
            self._redirect(f"http://127.0.0.2:{port}/video.mp4")
        elif self.path == "/to-video":
            self._redirect("/video.mp4")
        elif self.path == "/to-unicode":
            self._redirect("/vid\u00e9o.mp4")
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


# Only 127.0.0.1 is opened for the local server; every other private address stays refused.
LOCAL = FetchPolicy(allowed_private_networks=("127.0.0.1/32",), total_timeout_s=5.0)


def _code(uri: str, tmp_path: Path, policy: FetchPolicy, sha256: str | None = None) -> ErrorCode:
    with pytest.raises(FameError) as info:
        fetch(uri, tmp_path, policy, sha256)
    assert list(tmp_path.iterdir()) == [], "partial download left behind"
    return info.value.code


def test_downloads_and_verifies_checksum(server: str, tmp_path: Path) -> None:
    path = fetch(f"{server}/video.mp4", tmp_path, LOCAL, hashlib.sha256(BODY).hexdigest())
    assert path.read_bytes() == BODY
    assert path.suffix == ".mp4"


def test_follows_a_short_redirect(server: str, tmp_path: Path) -> None:
    assert fetch(f"{server}/to-video", tmp_path, LOCAL).read_bytes() == BODY


def test_checksum_mismatch(server: str, tmp_path: Path) -> None:
    code = _code(f"{server}/video.mp4", tmp_path, LOCAL, "0" * 64)
    assert code == ErrorCode.CHECKSUM_MISMATCH


@pytest.mark.parametrize("path", ["/video.mp4", "/nolength"])
def test_size_cap(server: str, tmp_path: Path, path: str) -> None:
    policy = FetchPolicy(allowed_private_networks=("127.0.0.1/32",), max_bytes=1000)
    assert _code(f"{server}{path}", tmp_path, policy) == ErrorCode.FETCH_TOO_LARGE


def test_slow_server_hits_total_timeout(server: str, tmp_path: Path) -> None:
    policy = FetchPolicy(allowed_private_networks=("127.0.0.1/32",), total_timeout_s=1.0)
    started = time.monotonic()
    assert _code(f"{server}/slow", tmp_path, policy) == ErrorCode.FETCH_TIMEOUT
    assert time.monotonic() - started < 3.0


def test_redirect_chain_is_capped(server: str, tmp_path: Path) -> None:
    assert _code(f"{server}/loop0", tmp_path, LOCAL) == ErrorCode.FETCH_REFUSED


@pytest.mark.parametrize("path", ["/to-metadata", "/to-other-loopback"])
def test_redirect_to_private_address_is_refused(server: str, tmp_path: Path, path: str) -> None:
    assert _code(f"{server}{path}", tmp_path, LOCAL) == ErrorCode.FETCH_REFUSED


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1/x.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.mp4",
        "http://10.0.0.1/x.mp4",
        "http://localhost/x.mp4",
        "ftp://example.com/x.mp4",
        "gopher://example.com/",
        # IPv6 forms that carry an IPv4 address: mapped, compatible, 6to4, NAT64
        "http://[::ffff:127.0.0.1]/x.mp4",
        "http://[::127.0.0.1]/x.mp4",
        "http://[2002:7f00:1::]/x.mp4",
        "http://[64:ff9b::a9fe:a9fe]/x.mp4",
        # malformed: a typed refusal, not an internal error
        "http://[abc]/x.mp4",
        "http://[::1/x.mp4",
        "http://example.com:99999/x.mp4",
    ],
)
def test_refused_by_default(uri: str, tmp_path: Path) -> None:
    assert _code(uri, tmp_path, FetchPolicy()) == ErrorCode.FETCH_REFUSED


def test_a_redirect_to_a_location_with_bad_characters_is_refused(
    server: str, tmp_path: Path
) -> None:
    assert _code(f"{server}/to-unicode", tmp_path, LOCAL) == ErrorCode.FETCH_REFUSED


# What a hostile server sends, a line at a time, each well inside the read timeout: it never
# finishes, so only the total deadline can end the fetch.
DRIPS = {
    "continue-flood": (b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
    "header-drip": (b"HTTP/1.1 200 OK\r\n", b"X-Drip: 1\r\n"),
    "trailer-flood": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n",
        b"X-Trailer: 1\r\n",
    ),
}


@pytest.fixture
def dripping_server(request: pytest.FixtureRequest) -> Iterator[str]:
    head, line = DRIPS[request.param]
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(head)
            while not stop.wait(0.1):
                conn.sendall(line)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/video.mp4"
    stop.set()
    listener.close()


@pytest.mark.parametrize("dripping_server", list(DRIPS), indirect=True)
def test_a_server_that_never_finishes_hits_the_total_timeout(
    dripping_server: str, tmp_path: Path
) -> None:
    policy = FetchPolicy(allowed_private_networks=("127.0.0.1/32",), total_timeout_s=1.0)
    started = time.monotonic()
    assert _code(dripping_server, tmp_path, policy) == ErrorCode.FETCH_TIMEOUT
    assert time.monotonic() - started < 3.0


def test_host_allowlist(server: str, tmp_path: Path) -> None:
    policy = FetchPolicy(allowed_hosts=(".example.com",), allow_private_addresses=True)
    assert _code(f"{server}/video.mp4", tmp_path, policy) == ErrorCode.FETCH_REFUSED


def test_file_uri_only_under_roots(tmp_path: Path) -> None:
    root, outside, dest = tmp_path / "root", tmp_path / "outside", tmp_path / "dest"
    root.mkdir()
    outside.mkdir()
    (root / "ok.mp4").write_bytes(BODY)
    (outside / "secret.mp4").write_bytes(b"secret")
    (root / "link.mp4").symlink_to(outside / "secret.mp4")
    policy = FetchPolicy(file_roots=(root,))
    assert fetch(f"file://{root}/ok.mp4", tmp_path / "ok", policy).read_bytes() == BODY
    for uri in (
        f"file://{outside}/secret.mp4",
        f"file://{root}/link.mp4",
        f"file://{root}/../outside/secret.mp4",
        "file://otherhost/etc/passwd",
        f"file://{root}/ok%00.mp4",
    ):
        assert _code(uri, dest, policy) == ErrorCode.FETCH_REFUSED, uri
    assert _code(f"file://{root}/ok.mp4", dest, FetchPolicy()) == ErrorCode.FETCH_REFUSED


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        FetchPolicy(max_bytes=0)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts the connection and says nothing: a TLS handshake that never completes."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}/video.mp4"
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_handshake_that_never_finishes_hits_the_total_timeout(
    silent_server: str, tmp_path: Path
) -> None:
    policy = FetchPolicy(
        allowed_private_networks=("127.0.0.1/32",), total_timeout_s=1.0, connect_timeout_s=10.0
    )
    started = time.monotonic()
    assert _code(silent_server, tmp_path, policy) == ErrorCode.FETCH_TIMEOUT
    assert time.monotonic() - started < 3.0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_certificate_that_fails_verification_is_poison(tmp_path: Path) -> None:
    """The same certificate fails again on every retry: dead-letter it, do not retry."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        uri = f"https://127.0.0.1:{httpd.server_address[1]}/video.mp4"
        with pytest.raises(PoisonError) as info:
            fetch(uri, tmp_path / "out", LOCAL)
        assert info.value.code == ErrorCode.FETCH_FAILED and "certificate" in str(info.value)
    finally:
        httpd.shutdown()
