"""Fetch an untrusted video reference (``file://``, ``http(s)://``) into a local temp file.

The URI comes from an event anyone may have written, so every hop is checked: scheme and host
allowlists, ``file://`` only under configured roots (symlinks and ``..`` cannot escape), and for
HTTP the host is resolved ONCE, the address is checked (no private, loopback, link-local, metadata,
multicast or reserved address unless allowed), and the connection goes to exactly that address
(Host header and TLS SNI keep the name), so DNS rebinding cannot swap it. Redirects are re-checked
and capped. Bytes and time are capped; the result is verified against ``sha256`` when given. On any
error the partial file is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urljoin, urlsplit

from fame.errors import PoisonError, TransientError
from schemas.errors import ErrorCode

_CHUNK_BYTES = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_SAFE_SUFFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


@dataclass(frozen=True)
class FetchPolicy:
    """What a fetch may touch and how much it may cost.

    ``allowed_hosts`` entries match a host exactly, or any subdomain when written ``.example.com``;
    ``None`` allows every host (addresses are still checked). ``allowed_private_networks`` lets an
    operator reach one internal object store (e.g. ``10.0.5.0/24``) without opening every private
    address, which ``allow_private_addresses=True`` does.
    """

    allowed_schemes: tuple[str, ...] = ("https", "http", "file")
    allowed_hosts: tuple[str, ...] | None = None
    file_roots: tuple[Path, ...] = ()
    allow_private_addresses: bool = False
    allowed_private_networks: tuple[str, ...] = ()
    max_bytes: int = 512 * 1024 * 1024
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 60.0
    max_redirects: int = 3

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {self.max_bytes}")
        if self.max_redirects < 0:
            raise ValueError(f"max_redirects must be >= 0, got {self.max_redirects}")
        for name in ("connect_timeout_s", "read_timeout_s", "total_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for network in self.allowed_private_networks:
            ipaddress.ip_network(network)


def fetch(uri: str, dest_dir: Path, policy: FetchPolicy, sha256: str | None = None) -> Path:
    """Copy ``uri`` into a new file under ``dest_dir`` and return its path (the caller owns it).

    Raises `PoisonError` (fetch_refused, fetch_too_large, checksum_mismatch, fetch_failed for a
    4xx) or `TransientError` (fetch_timeout, fetch_failed for network errors and 5xx).
    """
    try:
        scheme = urlsplit(uri).scheme.lower()
    except ValueError as e:  # "http://[::1/x"
        raise _refused(f"malformed URI {uri!r}: {e}") from e
    if scheme not in policy.allowed_schemes:
        raise PoisonError(f"scheme {scheme!r} not allowed in {uri!r}", code=ErrorCode.FETCH_REFUSED)
    dest_dir.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed and kept or removed below
        dir=dest_dir, prefix="fetch-", suffix=_suffix(uri), delete=False
    )
    path = Path(handle.name)
    try:
        with handle:
            digest = (
                _copy_file(uri, handle, policy)
                if scheme == "file"
                else _copy_http(uri, handle, policy)
            )
        if sha256 is not None and digest != sha256.strip().lower():
            raise PoisonError(
                f"sha256 of {uri!r} is {digest}, event says {sha256}",
                code=ErrorCode.CHECKSUM_MISMATCH,
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _suffix(uri: str) -> str:
    """Keep a short alphanumeric extension (the decoder sniffs content anyway; this helps logs)."""
    ext = Path(unquote(urlsplit(uri).path)).suffix.lower().lstrip(".")
    return f".{ext}" if 0 < len(ext) <= 5 and set(ext) <= _SAFE_SUFFIX_CHARS else ""


def _refused(message: str) -> PoisonError:
    return PoisonError(message, code=ErrorCode.FETCH_REFUSED)


def _copy_file(uri: str, out: IO[bytes], policy: FetchPolicy) -> str:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise _refused(f"file URI with a host is not allowed: {uri!r}")
    raw = unquote(parts.path)
    if ".." in Path(raw).parts:
        raise _refused(f"'..' in file URI {uri!r}")
    roots = [root.resolve() for root in policy.file_roots]
    if "\x00" in raw:
        raise _refused(f"NUL byte in file URI {uri!r}")
    try:
        real = Path(raw).resolve(strict=True)
    except (OSError, RuntimeError) as e:
        raise PoisonError(f"cannot open {raw!r}: {e}", code=ErrorCode.FETCH_FAILED) from e
    if not any(real.is_relative_to(root) for root in roots):
        raise _refused(
            f"{raw!r} (really {real}) is outside the allowed file roots "
            "(the service's FAME_FILE_ROOTS)"
        )
    if not real.is_file():
        raise _refused(f"{real} is not a regular file")
    if real.stat().st_size > policy.max_bytes:
        raise PoisonError(
            f"{real} has {real.stat().st_size} bytes > max_bytes={policy.max_bytes}",
            code=ErrorCode.FETCH_TOO_LARGE,
        )
    # O_NOFOLLOW: the checked real path must not be swapped for a symlink between check and open.
    fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as src:
        return _stream(iter(lambda: src.read(_CHUNK_BYTES), b""), out, policy, deadline=None)


def _stream(
    chunks: Iterator[bytes], out: IO[bytes], policy: FetchPolicy, deadline: float | None
) -> str:
    digest = hashlib.sha256()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > policy.max_bytes:
            raise PoisonError(
                f"more than max_bytes={policy.max_bytes} bytes", code=ErrorCode.FETCH_TOO_LARGE
            )
        if deadline is not None and time.monotonic() > deadline:
            raise _timed_out(policy)
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


class _Watchdog:
    """Shuts the fetch's socket down at the deadline. Per-read timeouts bound one read only: a
    server that drips headers, ``100 Continue`` lines, chunk sizes, trailers or a TLS handshake
    a byte at a time would hold the fetch for ever without this."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def track(self, sock: socket.socket) -> None:
        """The socket that the fetch now waits on (one per connection, redirects included)."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shutdown(self._sock)


def _shutdown(sock: socket.socket) -> None:
    """Both directions, at the socket level: a thread blocked in recv (or in a TLS handshake,
    which `ssl.SSLSocket.shutdown` would disturb) wakes with EOF or an error."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _copy_http(uri: str, out: IO[bytes], policy: FetchPolicy) -> str:
    watchdog = _Watchdog(policy.total_timeout_s)
    try:
        digest = _copy_http_hops(uri, out, policy, watchdog)
    except (PoisonError, TransientError) as e:
        if watchdog.expired:
            raise _timed_out(policy) from e
        raise
    finally:
        watchdog.cancel()
    if watchdog.expired:  # the shutdown can look like a clean end of the body
        raise _timed_out(policy)
    return digest


def _timed_out(policy: FetchPolicy) -> TransientError:
    return TransientError(
        f"fetch took longer than total_timeout_s={policy.total_timeout_s}",
        code=ErrorCode.FETCH_TIMEOUT,
    )


def _copy_http_hops(uri: str, out: IO[bytes], policy: FetchPolicy, watchdog: _Watchdog) -> str:
    deadline = time.monotonic() + policy.total_timeout_s
    url = uri
    for _hop in range(policy.max_redirects + 1):
        response, conn = _open_checked(url, policy, deadline, watchdog)
        try:
            if response.status in _REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise PoisonError(
                        f"redirect without Location from {url!r}", code=ErrorCode.FETCH_FAILED
                    )
                url = urljoin(url, location)
                continue
            _check_status(url, response.status)
            _check_declared_length(response, policy)
            return _stream(_read_chunks(response, conn, policy, deadline), out, policy, deadline)
        except TimeoutError as e:
            raise TransientError(
                f"read from {url!r} timed out", code=ErrorCode.FETCH_TIMEOUT
            ) from e
        except (OSError, http.client.HTTPException) as e:
            raise TransientError(f"reading {url!r} failed: {e}", code=ErrorCode.FETCH_FAILED) from e
        finally:
            conn.close()
    raise _refused(f"more than max_redirects={policy.max_redirects} redirects from {uri!r}")


def _check_status(url: str, status: int) -> None:
    if 200 <= status < 300:
        return
    message = f"GET {url!r} answered HTTP {status}"
    if status >= 500 or status == 429:
        raise TransientError(message, code=ErrorCode.FETCH_FAILED)
    raise PoisonError(message, code=ErrorCode.FETCH_FAILED)


def _check_declared_length(response: http.client.HTTPResponse, policy: FetchPolicy) -> None:
    declared = response.getheader("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > policy.max_bytes:
        raise PoisonError(
            f"Content-Length {declared} > max_bytes={policy.max_bytes}",
            code=ErrorCode.FETCH_TOO_LARGE,
        )


def _read_chunks(
    response: http.client.HTTPResponse,
    conn: http.client.HTTPConnection,
    policy: FetchPolicy,
    deadline: float,
) -> Iterator[bytes]:
    """`read1` returns after one socket read, so a trickling server still meets the deadline."""
    while True:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise _timed_out(policy)
        if conn.sock is not None:
            conn.sock.settimeout(min(policy.read_timeout_s, remaining_s))
        chunk = response.read1(_CHUNK_BYTES)
        if not chunk:
            return
        yield chunk


def _open_checked(
    url: str, policy: FetchPolicy, deadline: float, watchdog: _Watchdog
) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as e:  # "http://[abc]/", a bad port
        raise _refused(f"malformed URL {url!r}: {e}") from e
    if scheme not in policy.allowed_schemes or scheme not in ("http", "https"):
        raise _refused(f"scheme {scheme!r} not allowed in {url!r}")
    if not host:
        raise _refused(f"no host in {url!r}")
    if policy.allowed_hosts is not None and not _host_allowed(host, policy.allowed_hosts):
        raise _refused(f"host {host!r} is not in the allowlist")
    address = _resolve_checked(host, port, policy)
    timeout_s = min(policy.connect_timeout_s, max(deadline - time.monotonic(), 0.001))
    conn_cls = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    conn = conn_cls(host, port, pinned_address=address, timeout=timeout_s, watchdog=watchdog)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        conn.request(
            "GET", target, headers={"User-Agent": "fame-stream", "Accept-Encoding": "identity"}
        )
        if conn.sock is not None:
            conn.sock.settimeout(
                min(policy.read_timeout_s, max(deadline - time.monotonic(), 0.001))
            )
        return conn.getresponse(), conn
    except ssl.SSLCertVerificationError as e:  # the same certificate next time: do not retry
        conn.close()
        raise PoisonError(
            f"TLS certificate of {url!r} failed verification: {e}", code=ErrorCode.FETCH_FAILED
        ) from e
    except (http.client.InvalidURL, UnicodeError) as e:  # a path or Location with bad characters
        conn.close()
        raise _refused(f"malformed URL {url!r}: {e}") from e
    except TimeoutError as e:
        conn.close()
        raise TransientError(
            f"connecting to {url!r} timed out", code=ErrorCode.FETCH_TIMEOUT
        ) from e
    except (OSError, http.client.HTTPException) as e:
        conn.close()
        raise TransientError(
            f"connecting to {url!r} failed: {e}", code=ErrorCode.FETCH_FAILED
        ) from e


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        entry = entry.lower()
        if host == entry.lstrip(".") or (entry.startswith(".") and host.endswith(entry)):
            return True
    return False


def _resolve_checked(host: str, port: int, policy: FetchPolicy) -> str:
    """Resolve once; refuse when ANY address of the name is forbidden (no round-robin games)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise TransientError(f"cannot resolve {host!r}: {e}", code=ErrorCode.FETCH_FAILED) from e
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TransientError(f"{host!r} resolved to nothing", code=ErrorCode.FETCH_FAILED)
    for address in addresses:
        _check_address(address, host, policy)
    return addresses[0]


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


def _check_address(address: str, host: str, policy: FetchPolicy) -> None:
    """Every address the name resolves to, and every IPv4 address an IPv6 address carries
    (mapped, compatible, 6to4, NAT64: an IPv6-only cluster reaches IPv4 through them)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    for carried in [ip, *_embedded_ipv4(ip)]:
        if carried.is_global and not carried.is_multicast:
            continue
        if policy.allow_private_addresses:
            continue
        if any(carried in ipaddress.ip_network(net) for net in policy.allowed_private_networks):
            continue
        raise _refused(f"{host!r} resolves to non-public address {carried}")


def _embedded_ipv4(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> list[ipaddress.IPv4Address]:
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if ip.teredo is not None:
        found += list(ip.teredo)
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the already-checked address while the Host header keeps the name."""

    def __init__(
        self, host: str, port: int, *, pinned_address: str, timeout: float, watchdog: _Watchdog
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._pinned_address = pinned_address
        self._watchdog = watchdog

    def connect(self) -> None:
        self.sock = socket.create_connection((self._pinned_address, self.port), self.timeout)
        self._watchdog.track(self.sock)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Like `_PinnedHTTPConnection`, with TLS verified against the host name (SNI = name)."""

    def __init__(
        self, host: str, port: int, *, pinned_address: str, timeout: float, watchdog: _Watchdog
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._pinned_address = pinned_address
        self._watchdog = watchdog

    def connect(self) -> None:
        raw = socket.create_connection((self._pinned_address, self.port), self.timeout)
        self._watchdog.track(raw)
        context: ssl.SSLContext = self._context  # type: ignore[attr-defined]
        # handshake after wrapping, so that the watchdog holds the socket it happens on
        self.sock = context.wrap_socket(
            raw, server_hostname=self.host, do_handshake_on_connect=False
        )
        self._watchdog.track(self.sock)
        self.sock.do_handshake()
