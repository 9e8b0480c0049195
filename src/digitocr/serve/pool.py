"""Inference off the event loop: one reader per worker thread, so requests run side by side on all cores.

Each thread owns its reader (and so its network) for the life of the server: no locks around the model.
Torch and onnxruntime release the GIL while they compute, and each runs one intra-op thread, so N threads
keep N cores busy without oversubscribing them.
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


class ReaderPool:
    """`await pool.run(fn, timeout_s)` calls fn(reader) on a worker thread with a reader of its own."""

    def __init__(self, readers: list[Any], max_waiting: int):
        if not readers:
            raise ValueError("a pool needs at least one reader")
        self.readers = readers
        self.max_waiting = max_waiting
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for r in readers:
            self._free.put(r)
        self._executor = ThreadPoolExecutor(len(readers), thread_name_prefix="digitocr-infer")
        self._waiting = 0  # touched only on the event loop's thread

    @property
    def size(self) -> int:
        return len(self.readers)

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        reader = self._free.get()  # never blocks: as many readers as threads
        try:
            return fn(reader)
        finally:
            self._free.put(reader)

    async def run(self, fn: Callable[[Any], Any], timeout_s: float, limit_s: float | None = None) -> Any:
        """fn(reader) on a pool thread, within `timeout_s` (what is left of the request's `limit_s`)."""
        if self._waiting >= self.max_waiting:
            raise ServerBusyError(f"the server is busy ({self._waiting} requests waiting); try again soon")
        self._waiting += 1
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)
            try:
                async with asyncio.timeout(max(timeout_s, 0.0)):
                    return await future
            except TimeoutError:
                limit = timeout_s if limit_s is None else limit_s
                raise RequestTimeoutError(f"the request took longer than the server's limit of {limit:g} s") \
                    from None
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return f"ReaderPool(threads={self.size}, max_waiting={self.max_waiting})"
