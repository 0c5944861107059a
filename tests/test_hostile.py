"""A hostile corpus, generated here: each input fails with its own code, fast, in-process and in
the worker pool, and the pool keeps serving real videos afterwards."""

from __future__ import annotations

import contextlib
import http.server
import struct
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from fame.errors import FameError, PoisonError
from fame.faces.frontend import FrontEnd, FrontEndConfig, FrontEndPool
from fame.video.decode import DecodeLimits
from fame.video.fetch import FetchPolicy
from schemas.errors import ErrorCode
from tests.test_decode import write_video

LIMITS = DecodeLimits(max_frames=200, max_duration_s=60.0, max_streams=2)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(idat))
        + b"IDAT"
        + idat
        + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    )


def _long_by_time(path: Path) -> None:
    """Three frames an hour apart: tiny file, header duration of two hours."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            frame.pts = i * 3600
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            samples = np.zeros((1, 1024), np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _three_streams(path: Path) -> None:
    with av.open(str(path), "w") as container:
        streams = [container.add_stream("mpeg4", rate=5) for _ in range(3)]
        for stream in streams:
            stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for stream in streams:
            for _ in range(2):
                image = np.zeros((16, 16, 3), np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def build_corpus(root: Path) -> dict[str, tuple[Path, ErrorCode]]:
    """name -> (file, the one code it must fail with)."""
    good = write_video(root / "good.mp4", frames=20)
    data = good.read_bytes()
    files: dict[str, tuple[Path, ErrorCode]] = {}

    def add(name: str, code: ErrorCode, make: Callable[[Path], object]) -> None:
        path = root / name
        make(path)
        files[name] = (path, code)

    add("truncated.mp4", ErrorCode.CORRUPT_STREAM, lambda p: p.write_bytes(data[: len(data) // 2]))
    add("zero.mp4", ErrorCode.CORRUPT_STREAM, lambda p: p.write_bytes(b""))
    add("text.mp4", ErrorCode.UNSUPPORTED_FORMAT, lambda p: p.write_text("not a video\n" * 50))
    add(
        "local.m3u8",
        ErrorCode.UNSUPPORTED_FORMAT,
        lambda p: p.write_text(
            f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{good}\n#EXT-X-ENDLIST\n"
        ),
    )
    add(
        "remote.mp4",
        ErrorCode.UNSUPPORTED_FORMAT,
        lambda p: p.write_text(
            "#EXTM3U\n#EXTINF:10,\nhttp://169.254.169.254/latest/meta-data/seg.ts\n#EXT-X-ENDLIST\n"
        ),
    )
    add(
        "list.ffconcat",
        ErrorCode.UNSUPPORTED_FORMAT,
        lambda p: p.write_text(
            f"ffconcat version 1.0\nfile '{good}'\nfile 'http://127.0.0.1/x.mp4'\n"
        ),
    )
    add("huge.png", ErrorCode.TOO_MANY_PIXELS, lambda p: p.write_bytes(_png_header(16000, 16000)))
    add(
        "many_frames.mp4",
        ErrorCode.TOO_LONG,
        lambda p: write_video(p, frames=250, width=16, height=16),
    )
    add("two_hours.mp4", ErrorCode.TOO_LONG, _long_by_time)
    # libav itself zeroes sizes beyond ~16k x 16k; ours must refuse what it would still allocate.
    add("absurd.png", ErrorCode.CORRUPT_STREAM, lambda p: p.write_bytes(_png_header(50000, 50000)))
    add("audio_only.mp4", ErrorCode.NO_VIDEO_STREAM, _audio_only)
    add("three_streams.mp4", ErrorCode.TOO_MANY_STREAMS, _three_streams)
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, ErrorCode]]:
    return build_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def config(shared: Path) -> FrontEndConfig:
    return FrontEndConfig(limits=LIMITS, detector_path=str(shared / "models/scrfd_500m_bnkps.onnx"))


def test_each_hostile_input_gets_its_code(
    corpus: dict[str, tuple[Path, ErrorCode]], config: FrontEndConfig
) -> None:
    frontend = FrontEnd(config)
    for name, (path, code) in corpus.items():
        with pytest.raises(PoisonError) as info:
            frontend.process(path)
        assert info.value.code == code, f"{name}: {info.value}"


def test_bit_flips_decode_or_fail_typed(tmp_path: Path, config: FrontEndConfig) -> None:
    data = bytearray(write_video(tmp_path / "v.mp4", frames=20).read_bytes())
    rng = np.random.default_rng(0)
    frontend = FrontEnd(config)
    for trial in range(8):
        flipped = bytearray(data)
        for pos in rng.integers(32, len(data), size=20):
            flipped[pos] ^= 1 << int(rng.integers(0, 8))
        path = tmp_path / f"flip{trial}.mp4"
        path.write_bytes(bytes(flipped))
        try:
            frontend.process(path)
        except FameError as e:
            assert e.code in (
                ErrorCode.CORRUPT_STREAM,
                ErrorCode.UNSUPPORTED_FORMAT,
                ErrorCode.TOO_LONG,
                ErrorCode.TOO_MANY_PIXELS,
                ErrorCode.NO_VIDEO_STREAM,
            ), str(e)


def test_pool_survives_hostile_inputs(
    corpus: dict[str, tuple[Path, ErrorCode]], config: FrontEndConfig, shared: Path
) -> None:
    uris = {
        "http://127.0.0.1/x.mp4": ErrorCode.FETCH_REFUSED,
        "http://169.254.169.254/latest/meta-data/": ErrorCode.FETCH_REFUSED,
        "file:///etc/passwd": ErrorCode.FETCH_REFUSED,
    }
    carphone = shared / "data/samples/carphone_pristine.mp4"
    with FrontEndPool(config, workers=2, task_timeout_s=60.0, memory_limit_mb=1024) as pool:
        futures = {name: (pool.submit(path), code) for name, (path, code) in corpus.items()}
        futures |= {uri: (pool.submit(uri), code) for uri, code in uris.items()}
        futures["file_outside_roots"] = (
            pool.submit(f"file://{carphone}", sha256="0" * 64),
            ErrorCode.FETCH_REFUSED,
        )
        for name, (future, code) in futures.items():
            error = future.exception(timeout=60)
            assert isinstance(error, PoisonError) and error.code == code, f"{name}: {error!r}"
        result = pool.submit(carphone).result(timeout=60)
    assert len(result.tracks) == 1 and result.tracks[0].stats.coverage >= 0.9


def test_pool_checksum_mismatch(shared: Path, config: FrontEndConfig) -> None:
    carphone = shared / "data/samples/carphone_pristine.mp4"
    policy_config = FrontEndConfig(
        limits=config.limits,
        detector_path=config.detector_path,
        fetch=type(config.fetch)(file_roots=(shared,)),
    )
    with FrontEndPool(policy_config, workers=1, task_timeout_s=60.0) as pool:
        error = pool.submit(f"file://{carphone}", sha256="0" * 64).exception(timeout=60)
        assert isinstance(error, PoisonError) and error.code == ErrorCode.CHECKSUM_MISMATCH
        assert pool.submit(f"file://{carphone}").result(timeout=60).sampled_frames > 0


def test_pool_timeout_kills_and_replaces_worker(shared: Path, config: FrontEndConfig) -> None:
    video = shared / "data/faces/driving_d13.mp4"
    unlimited = FrontEndConfig(detector_path=config.detector_path)
    with FrontEndPool(unlimited, workers=1, task_timeout_s=0.3) as pool:
        error = pool.submit(video).exception(timeout=60)
        assert isinstance(error, PoisonError) and error.code == ErrorCode.DECODE_TIMEOUT
        image = pool.submit(shared / "data/samples/group_t1.jpg").result(timeout=60)
    assert len(image.tracks) == 6


def test_missing_detector_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(FameError) as info:
        FrontEndPool(FrontEndConfig(detector_path=str(tmp_path / "nope.onnx")), workers=1)
    assert info.value.code == ErrorCode.MODEL_MISSING


def _toy_init(scale: int) -> int:
    return scale


def _toy_run(scale: int, task: str) -> int:
    if task == "segfault":
        import ctypes

        ctypes.string_at(0)
    if task == "hog":
        return len(bytearray(512 * 1024 * 1024))
    if task == "refuse":
        raise PoisonError("bad input", code=ErrorCode.UNSUPPORTED_FORMAT)
    return scale * len(task)


def test_sandbox_crash_and_memory_limit_cost_one_task() -> None:
    from fame.video.sandbox import SandboxPool

    with SandboxPool(
        init=_toy_init, init_arg=2, run=_toy_run, workers=1, task_timeout_s=30, memory_limit_mb=128
    ) as pool:
        crash, hog, refuse = pool.submit("segfault"), pool.submit("hog"), pool.submit("refuse")
        ok = pool.submit("abc")
        for future in (crash, hog):
            error = future.exception(timeout=30)
            assert isinstance(error, PoisonError) and error.code == ErrorCode.DECODE_CRASHED
        error = refuse.exception(timeout=30)
        assert type(error) is PoisonError and error.code == ErrorCode.UNSUPPORTED_FORMAT
        assert ok.result(timeout=30) == 6


class _TrickleHandler(http.server.BaseHTTPRequestHandler):
    """Sends a body a byte every 50 ms: the worker is killed for time mid-download."""

    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(400):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)


def test_a_worker_killed_mid_download_leaves_no_file(
    shared: Path, config: FrontEndConfig, tmp_path: Path
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TrickleHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    local = FrontEndConfig(
        detector_path=config.detector_path,
        fetch=FetchPolicy(allowed_private_networks=("127.0.0.1/32",), total_timeout_s=60.0),
        work_dir=work_dir,
    )
    try:
        with FrontEndPool(local, workers=1, task_timeout_s=1.0) as pool:
            uri = f"http://127.0.0.1:{server.server_address[1]}/slow.mp4"
            error = pool.submit(uri).exception(timeout=60)
            assert isinstance(error, PoisonError) and error.code == ErrorCode.DECODE_TIMEOUT
            carphone = shared / "data/samples/carphone_pristine.mp4"
            assert pool.submit(carphone.as_uri()).exception(timeout=60) is not None  # no roots
            deadline = time.monotonic() + 10
            while any(work_dir.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.05)  # the folder goes in the future's done-callback
            assert list(work_dir.iterdir()) == []
    finally:
        server.shutdown()
