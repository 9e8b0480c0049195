"""Inference off the event loop, on a pool of readers: the contract, and the pool of threads.

Pool: `await pool.run(fn, timeout_s)` runs fn(reader) with a reader of its own, refuses work beyond
`max_waiting` queued requests (503) and gives up at the time limit (504). Tasks are picklable (module-level
functions or partials; see tasks.py), so the same ones run on ReaderPool's threads or in the worker
processes of workers.ProcessReaderPool (`serve --workers N`).

ReaderPool: one reader per thread, each owning its network for the life of the server (no locks around the
model). Torch and onnxruntime release the GIL while they compute, but the reading pipeline's Python
(segmentation, framing) holds it, so threads share the cores well only for large images.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


class Pool:
    """The waiting count, the time limit and the error mapping, shared by both pools."""

    size: int

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


class ReaderPool(Pool):
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
