"""Inference off the event loop, on a pool of readers: threads in the server process, or worker processes.

ReaderPool: one reader per thread, each owning its network for the life of the server (no locks around the
model). Torch and onnxruntime release the GIL while they compute, but the reading pipeline's Python
(segmentation, framing) holds it, so threads share the cores well only for large images.

ProcessReaderPool (`serve --workers N`): N worker processes, each with its own reader on one core. Every
request goes to whichever worker is free: load is spread per request, not per connection, so a few busy
keep-alive clients cannot pile up on one worker while another idles.

Both take the same tasks: fn(reader), where fn is picklable (a module-level function, partial or
methodcaller; see tasks.py), and both refuse work beyond `max_waiting` queued requests (503).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import DigitocrError


class ServerBusyError(DigitocrError):
    """Too many requests already wait for inference (HTTP 503)."""

    http_status = 503


class RequestTimeoutError(DigitocrError):
    """A request that took longer than the server's time limit (HTTP 504)."""

    http_status = 504


class WorkerDiedError(DigitocrError):
    """An inference process died during the request (killed, out of memory); it is replaced (HTTP 503)."""

    http_status = 503


class _Pool:
    """The waiting count, the time limit and the error mapping, shared by both pools."""

    def __init__(self, max_waiting: int):
        self.max_waiting = max_waiting
        self._waiting = 0  # touched only on the event loop's thread

    def _submit(self, fn: Callable[[Any], Any]) -> asyncio.Future:
        raise NotImplementedError

    async def run(self, fn: Callable[[Any], Any], timeout_s: float, limit_s: float | None = None) -> Any:
        """fn(reader) off the event loop, within `timeout_s` (what is left of the request's `limit_s`)."""
        if self._waiting >= self.max_waiting:
            raise ServerBusyError(f"the server is busy ({self._waiting} requests waiting); try again soon")
        self._waiting += 1
        try:
            try:
                async with asyncio.timeout(max(timeout_s, 0.0)):
                    return await self._submit(fn)
            except TimeoutError:
                limit = timeout_s if limit_s is None else limit_s
                raise RequestTimeoutError(f"the request took longer than the server's limit of {limit:g} s") \
                    from None
        finally:
            self._waiting -= 1


class ReaderPool(_Pool):
    """`await pool.run(fn, timeout_s)` calls fn(reader) on a worker thread with a reader of its own."""

    def __init__(self, readers: list[Any], max_waiting: int):
        if not readers:
            raise ValueError("a pool needs at least one reader")
        super().__init__(max_waiting)
        self.readers = readers
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for r in readers:
            self._free.put(r)
        self._executor = ThreadPoolExecutor(len(readers), thread_name_prefix="digitocr-infer")

    @property
    def size(self) -> int:
        return len(self.readers)

    def describe(self) -> dict[str, int]:
        return {"workers": 1, "threads": self.size}

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        reader = self._free.get()  # never blocks: as many readers as threads
        try:
            return fn(reader)
        finally:
            self._free.put(reader)

    def _submit(self, fn: Callable[[Any], Any]) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return f"ReaderPool(threads={self.size}, max_waiting={self.max_waiting})"


# ---- worker processes ----

_reader: Any = None  # a worker process's reader, built once by _init_worker (never at import)
_init_error: str | None = None  # why it could not be built: reported by the parent in one line


def _exit_with_parent() -> None:
    """A worker outlives a server killed hard (SIGKILL, OOM): the task queue's pipe never reports the end,
    because every worker holds its write end too. So each worker watches its parent and exits with it."""
    parent = mp.parent_process()
    if parent is not None:
        mp_connection.wait([parent.sentinel])
        os._exit(0)


def _init_worker(settings_json: str) -> None:
    global _reader, _init_error
    from .app import build_readers
    from .settings import ServeSettings

    threading.Thread(target=_exit_with_parent, name="digitocr-parent-watch", daemon=True).start()
    try:
        _reader = build_readers(ServeSettings.from_json(settings_json), count=1)[0]
    except DigitocrError as e:
        _init_error = str(e)


def _started() -> tuple[int, str | None]:
    return os.getpid(), _init_error


def _call_in_worker(fn: Callable[[Any], Any]) -> Any:
    return fn(_reader)


class ProcessReaderPool(_Pool):
    """`processes` worker processes (spawned, each loading the model once), one request at a time each."""

    def __init__(self, settings_json: str, processes: int, max_waiting: int):
        super().__init__(max_waiting)
        self.size = processes
        self._settings_json = settings_json
        self._restart_lock = asyncio.Lock()
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: forking a process whose torch thread pools have started can deadlock
        executor = ProcessPoolExecutor(self.size, mp_context=mp.get_context("spawn"),
                                       initializer=_init_worker, initargs=(self._settings_json,))
        # Start every worker now (tasks submitted back to back each get a new process while none is idle),
        # so the model loads before the first request and a bad model is reported at start-up.
        started = [f.result() for f in [executor.submit(_started) for _ in range(self.size)]]
        errors = [e for _, e in started if e]
        if errors:
            executor.shutdown(cancel_futures=True)
            raise DigitocrError(errors[0])
        return executor

    def describe(self) -> dict[str, int]:
        return {"workers": self.size, "threads": 1}

    async def _call(self, fn: Callable[[Any], Any]) -> Any:
        executor = self._executor
        try:
            return await asyncio.wrap_future(executor.submit(_call_in_worker, fn))
        except BrokenProcessPool:
            await asyncio.shield(self._restart(executor))  # a request timing out must not abandon the restart
            raise WorkerDiedError("an inference worker died during this request; it was restarted, "
                                  "try again") from None

    async def _restart(self, broken: ProcessPoolExecutor) -> None:
        async with self._restart_lock:  # every request on the broken pool fails; one of them restarts it
            if self._executor is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = await asyncio.to_thread(self._start)

    def _submit(self, fn: Callable[[Any], Any]) -> asyncio.Future:
        return asyncio.ensure_future(self._call(fn))

    def close(self) -> None:
        """Queued requests are dropped; each worker finishes what it is reading, then exits."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return f"ProcessReaderPool(processes={self.size}, max_waiting={self.max_waiting})"
