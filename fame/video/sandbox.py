"""A pool of sandboxed worker processes for work on untrusted input (decoders can hang or crash).

Each worker runs ``init(init_arg)`` once (e.g. loads a model), then ``run(state, task)`` per task.
One dispatcher thread in the parent waits on pipes and process sentinels (blocking in the OS, not
holding the GIL), enforces a wall-clock limit per task by killing the worker, and replaces dead
workers. A task's `Future` fails with a `FameError`: the worker's own error (class and code kept),
``decode_timeout`` when it was killed for time, ``decode_crashed`` when it died.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import pickle
import resource
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

from fame.errors import FameError, PoisonError, TransientError
from schemas.errors import ErrorCode

log = logging.getLogger(__name__)

A = TypeVar("A")
S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

_READY = "ready"
_INIT_FAILED = "init_failed"
_KILL_GRACE_S = 5.0
_RESPAWN_BASE_S = 1.0  # a replacement that cannot start is tried again after 1, 2, 4... s
_RESPAWN_MAX_S = 60.0


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False
    init_error: FameError | None = None
    task_id: int | None = None
    future: Future[Any] | None = None
    deadline: float = 0.0
    started: float = field(default_factory=time.monotonic)


class SandboxPool(Generic[A, S, T, R]):
    """`submit` is thread-safe and never blocks; `close` cancels what has not run."""

    def __init__(
        self,
        *,
        init: Callable[[A], S],
        init_arg: A,
        run: Callable[[S, T], R],
        workers: int,
        task_timeout_s: float,
        memory_limit_mb: int | None = None,
        start_timeout_s: float = 120.0,
        start_method: str = "spawn",
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if task_timeout_s <= 0:
            raise ValueError(f"task_timeout_s must be positive, got {task_timeout_s}")
        if memory_limit_mb is not None and memory_limit_mb <= 0:
            raise ValueError(f"memory_limit_mb must be positive, got {memory_limit_mb}")
        self._ctx = multiprocessing.get_context(start_method)
        self._worker_args = (init, init_arg, run, memory_limit_mb)
        self._task_timeout_s = task_timeout_s
        self._queue: collections.deque[tuple[int, T, Future[R]]] = collections.deque()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._closed = False
        self._broken: FameError | None = None
        self._start_timeout_s = start_timeout_s
        self._failed_starts = 0  # in a row, since a worker last became ready
        self._respawn_at: list[float] = []  # slots whose replacement could not start
        self._wake_reader, self._wake_writer = self._ctx.Pipe(duplex=False)
        self._workers = [self._spawn() for _ in range(workers)]
        self._await_ready(start_timeout_s)
        self._thread = threading.Thread(
            target=self._dispatch_loop, name="sandbox-pool", daemon=True
        )
        self._thread.start()

    def submit(self, task: T) -> Future[R]:
        future: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("SandboxPool is closed")
            if self._broken is not None:
                future.set_exception(self._broken)
                return future
            self._queue.append((next(self._ids), task, future))
            self._wake_writer.send_bytes(b"w")
        return future

    @property
    def healthy(self) -> bool:
        """False once the dispatcher has failed, or while no worker can start (a replacement's
        start-up keeps failing: tasks wait for one): what a liveness probe should see."""
        with self._lock:
            if self._broken is not None:
                return False
        return self._failed_starts == 0 or any(w.ready for w in self._workers)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake_writer.send_bytes(b"c")
        self._thread.join()

    def __enter__(self) -> SandboxPool[A, S, T, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=_worker_main,
            args=(child_conn, *self._worker_args),
            name="sandbox-worker",
            daemon=True,
        )
        process.start()
        child_conn.close()
        return _Worker(process=process, conn=parent_conn)

    def _await_ready(self, timeout_s: float) -> None:
        """Start-up errors (a missing model) surface here, in the constructor, not per task."""
        deadline = time.monotonic() + timeout_s
        try:
            for worker in self._workers:
                if not worker.conn.poll(max(deadline - time.monotonic(), 0.0)):
                    raise FameError(
                        f"worker did not start within {timeout_s}s", code=ErrorCode.INTERNAL_ERROR
                    )
                self._on_message(worker)
                if not worker.ready:
                    raise worker.init_error or FameError(
                        "worker failed to start", code=ErrorCode.INTERNAL_ERROR
                    )
        except BaseException:
            for worker in self._workers:
                _kill(worker)
            raise

    def _dispatch_loop(self) -> None:
        try:
            self._dispatch()
        except BaseException as e:  # a bug or the OS (no fds, no memory): fail loudly, not hang
            log.exception("sandbox pool dispatcher failed")
            self._fail_everything(
                TransientError(f"front-end pool failed: {e!r}", code=ErrorCode.INTERNAL_ERROR)
            )

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                closing = self._closed
            if closing:
                self._shut_down()
                return
            self._assign()
            timeout_s = self._next_timeout_s()
            waitables: list[Any] = [self._wake_reader]
            for worker in self._workers:
                waitables += [worker.conn, worker.process.sentinel]
            ready = multiprocessing.connection.wait(waitables, timeout_s)
            if self._wake_reader in ready:
                with contextlib.suppress(EOFError, OSError):
                    while self._wake_reader.poll():
                        self._wake_reader.recv_bytes()
            for worker in list(self._workers):
                if worker.conn in ready:
                    self._on_message(worker)
            self._reap()

    def _assign(self) -> None:
        for worker in self._workers:
            while worker.ready and worker.task_id is None:
                with self._lock:
                    if not self._queue:
                        return
                    task_id, task, future = self._queue.popleft()
                if not future.set_running_or_notify_cancel():
                    continue  # cancelled while queued: the next task is this worker's
                try:
                    worker.conn.send((task_id, task))
                except (OSError, pickle.PicklingError, TypeError, AttributeError) as e:
                    future.set_exception(
                        FameError(f"cannot send task: {e}", code=ErrorCode.INTERNAL_ERROR)
                    )
                    continue
                worker.task_id, worker.future = task_id, future
                worker.deadline = time.monotonic() + self._task_timeout_s

    def _next_timeout_s(self) -> float | None:
        """Until the next task deadline, start deadline or due respawn."""
        deadlines = [w.deadline for w in self._workers if w.task_id is not None]
        deadlines += [w.started + self._start_timeout_s for w in self._workers if not w.ready]
        deadlines += self._respawn_at
        return max(min(deadlines) - time.monotonic(), 0.0) if deadlines else None

    def _on_message(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            return  # the worker died mid-send; `_reap` sees its sentinel
        if message[0] == _READY:
            worker.ready = True
            self._failed_starts = 0
        elif message[0] == _INIT_FAILED:
            worker.init_error = message[1]
            log.error("sandbox worker failed to start: %s", message[1])
        elif message[0] == worker.task_id and worker.future is not None:
            _, ok, payload = message
            future = worker.future
            worker.task_id, worker.future = None, None
            if ok:
                future.set_result(payload)
            else:
                future.set_exception(payload)

    def _reap(self) -> None:
        """Kill workers past their deadline and replace dead ones. A replacement that fails to
        start (or hangs starting) is tried again after a growing pause: its slot is never given
        up, so a passing failure (a GPU still freeing the killed worker's memory) costs time,
        not every later task."""
        now = time.monotonic()
        survivors: list[_Worker] = []
        for worker in self._workers:
            if not worker.ready and (why := self._start_failure(worker, now)) is not None:
                _kill(worker)
                self._schedule_respawn(now, why)
                continue
            timed_out = worker.task_id is not None and now >= worker.deadline
            if not (timed_out or not worker.process.is_alive()):
                survivors.append(worker)
                continue
            _kill(worker)
            if worker.future is not None:
                worker.future.set_exception(self._death_error(timed_out, worker))
            survivors.append(self._spawn())
        due = [at for at in self._respawn_at if at <= now]
        self._respawn_at = [at for at in self._respawn_at if at > now]
        self._workers = survivors + [self._spawn() for _ in due]

    def _start_failure(self, worker: _Worker, now: float) -> str | None:
        """Why a worker that is not ready yet has failed to start, or None while it may."""
        if worker.init_error is not None:
            return str(worker.init_error)
        if not worker.process.is_alive():  # died before it could say why (a crash in init)
            return f"exited with code {worker.process.exitcode} while starting"
        if now >= worker.started + self._start_timeout_s:
            return f"not ready within {self._start_timeout_s} s"
        return None

    def _schedule_respawn(self, now: float, why: str) -> None:
        self._failed_starts += 1
        delay_s = min(_RESPAWN_BASE_S * 2 ** (self._failed_starts - 1), _RESPAWN_MAX_S)
        log.error("sandbox worker could not start (%s); trying again in %.0f s", why, delay_s)
        self._respawn_at.append(now + delay_s)

    def _death_error(self, timed_out: bool, worker: _Worker) -> PoisonError:
        if timed_out:
            return PoisonError(
                f"task exceeded task_timeout_s={self._task_timeout_s}; worker killed",
                code=ErrorCode.DECODE_TIMEOUT,
            )
        return PoisonError(
            f"worker died (exit code {worker.process.exitcode}) while running the task",
            code=ErrorCode.DECODE_CRASHED,
        )

    def _fail_queue(self, error: FameError) -> None:
        with self._lock:
            self._broken = error
            pending, self._queue = list(self._queue), collections.deque()
        for _, _, future in pending:
            if future.set_running_or_notify_cancel():
                future.set_exception(error)

    def _fail_everything(self, error: FameError) -> None:
        self._fail_queue(error)
        for worker in self._workers:
            _kill(worker)
            if worker.future is not None and not worker.future.done():
                worker.future.set_exception(error)

    def _shut_down(self) -> None:
        self._fail_queue(TransientError("front-end pool closed before the task ran"))
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(_KILL_GRACE_S)
            _kill(worker)
            if worker.future is not None:
                worker.future.set_exception(TransientError("front-end pool closed during the task"))


def _kill(worker: _Worker) -> None:
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join(_KILL_GRACE_S)
    worker.conn.close()


def _worker_main(
    conn: Connection,
    init: Callable[[Any], Any],
    init_arg: Any,
    run: Callable[[Any, Any], Any],
    memory_limit_mb: int | None,
) -> None:
    try:
        state = init(init_arg)
        if memory_limit_mb is not None:
            _limit_address_space(memory_limit_mb)
    except BaseException as e:
        conn.send((_INIT_FAILED, _portable(e)))
        return
    conn.send((_READY, None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        task_id, task = message
        try:
            result = run(state, task)
            conn.send((task_id, True, result))
        except BaseException as e:
            conn.send((task_id, False, _portable(e)))


def _limit_address_space(headroom_mb: int) -> None:
    """Cap virtual memory at the loaded size plus ``headroom_mb`` (RLIMIT_AS counts mappings,
    so a fixed total would depend on how much the runtime reserved at start)."""
    with open("/proc/self/statm") as f:
        loaded_bytes = int(f.read().split()[0]) * resource.getpagesize()
    limit_bytes = loaded_bytes + headroom_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))


def _portable(error: BaseException) -> FameError:
    """An error that survives pickling into the parent with its class and code."""
    if isinstance(error, MemoryError):
        return PoisonError(f"worker ran out of memory: {error!r}", code=ErrorCode.DECODE_CRASHED)
    if not isinstance(error, FameError):
        return FameError(f"worker raised {error!r}", code=ErrorCode.INTERNAL_ERROR)
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return FameError(error.message, code=error.code)
    error.__cause__ = error.__context__ = None
    error.__traceback__ = None
    return error
