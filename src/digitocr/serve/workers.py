"""Inference in worker processes (`serve --workers N`), fed by the event loop itself.

Each worker is a spawned process with its own reader (one core's worth of work at a time) and a pipe of its
own. The event loop sends a task down the pipe of a free worker and learns of the answer, or of the worker's
death, from the loop's own selector (add_reader on the pipe and on the process sentinel): no helper threads
and no shared queue between request and worker, so a request costs the server process one pickle each way.

Requests wait in one queue in the server and go to whichever worker is free, so a few busy keep-alive
clients cannot pile up on one worker while another idles. A worker that dies (killed, out of memory) fails
only the request it was reading (503) and is replaced; the others keep serving. A worker whose server dies
sees its pipe close and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import pickle
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ..errors import DigitocrError
from .pool import Pool, WorkerDiedError

READY = "ready"
OK = "ok"
FAILED = "failed"
JOIN_TIMEOUT_S = 5.0  # a closing worker finishing its read; then it is terminated


def _worker_main(settings_json: str, conn: Connection) -> None:
    """A worker process: build the reader, say so, then answer tasks until the server's end closes."""
    from .app import build_readers
    from .settings import ServeSettings

    try:
        reader = build_readers(ServeSettings.from_json(settings_json), count=1)[0]
    except DigitocrError as e:
        conn.send((READY, str(e)))
        return
    conn.send((READY, None))
    while True:
        try:
            fn = conn.recv()
        except (EOFError, OSError):
            return  # the server closed its end, or died
        if fn is None:
            return
        try:
            answer = (OK, fn(reader))
        except Exception as e:  # the server maps it to its HTTP status (DigitocrError) or to 500
            answer = (FAILED, e)
        try:
            conn.send(answer)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            conn.send((FAILED, RuntimeError(f"an answer that cannot be sent back: {e}")))


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection  # the server's end of the worker's pipe
    job: asyncio.Future | None = None  # the request it is reading
    alive: bool = True


class ProcessReaderPool(Pool):
    """`processes` worker processes, each loading the model once and reading one request at a time."""

    def __init__(self, settings_json: str, processes: int, max_waiting: int):
        super().__init__(max_waiting)
        self.size = processes
        self._closed = False
        self._replacing: set[asyncio.Task] = set()  # replacements under way (kept so they are not collected)
        self._settings_json = settings_json
        self._ctx = mp.get_context("spawn")  # not fork: forking after torch started its threads can deadlock
        self._waiting_jobs: deque[tuple[Callable[[Any], Any], asyncio.Future]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop whose selector watches the workers
        # start them all, then wait for them all: the models load side by side, and a bad model is
        # reported here, at start-up, in one line
        starting = [self._spawn() for _ in range(processes)]
        errors = [e for e in (self._wait_ready(w) for w in starting) if e]
        self._workers = starting
        if errors:
            self.close()
            raise DigitocrError(errors[0])

    def describe(self) -> dict[str, int]:
        return {"workers": self.size, "threads": 1}

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.alive]

    # ---- worker life ----

    def _spawn(self) -> _Worker:
        ours, theirs = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(self._settings_json, theirs), daemon=True,
                                    name="digitocr-infer")
        process.start()
        theirs.close()  # only the worker holds its end now: when it dies, ours reads end-of-file
        return _Worker(process, ours)

    @staticmethod
    def _wait_ready(worker: _Worker) -> str | None:
        """None once the worker's reader is built, else why it could not be."""
        try:
            kind, error = worker.conn.recv()
        except (EOFError, OSError):
            return f"an inference worker exited while loading the model (exit code {worker.process.exitcode})"
        return error if kind == READY else f"an inference worker answered {kind!r} while starting"

    def _watch(self, worker: _Worker) -> None:
        assert self._loop is not None
        self._loop.add_reader(worker.conn.fileno(), self._on_answer, worker)
        self._loop.add_reader(worker.process.sentinel, self._on_exit, worker)
        # uvloop (libuv) makes a watched fd non-blocking, and a Connection's send and recv assume a blocking
        # one: a message larger than the pipe's buffer (an upload of a few MB, an answer with crops) would
        # stop partway with BlockingIOError and leave the pipe mid-message. Blocking is safe here: a task goes
        # only to a worker that waits in recv(), and an answer is read once the worker has begun sending it.
        os.set_blocking(worker.conn.fileno(), True)

    def _unwatch(self, worker: _Worker) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(worker.conn.fileno())
            self._loop.remove_reader(worker.process.sentinel)

    def _bind(self) -> None:
        """Watch the workers from the running loop (a test client may run several loops, one after another)."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        for w in self._workers:
            if w.alive:
                self._unwatch(w)
        self._loop = loop
        for w in self._workers:
            if w.alive:
                self._watch(w)

    def _on_exit(self, worker: _Worker) -> None:
        """The worker process ended: fail its request, start a replacement."""
        if not worker.alive:
            return
        worker.alive = False
        self._unwatch(worker)
        worker.conn.close()
        job, worker.job = worker.job, None
        if job is not None and not job.done():
            job.set_exception(WorkerDiedError("the inference worker reading this request died; it is being "
                                              "replaced, try again"))
        task = asyncio.ensure_future(self._replace(worker))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _replace(self, dead: _Worker) -> None:
        fresh = await asyncio.to_thread(self._spawn)
        error = await asyncio.to_thread(self._wait_ready, fresh)
        if error or self._closed:
            fresh.process.terminate()
            return
        self._workers[self._workers.index(dead)] = fresh
        if self._loop is asyncio.get_running_loop():
            self._watch(fresh)
        self._dispatch()

    # ---- requests ----

    def _submit(self, fn: Callable[[Any], Any]) -> asyncio.Future:
        self._bind()
        future = asyncio.get_running_loop().create_future()
        self._waiting_jobs.append((fn, future))
        self._dispatch()
        return future

    def _dispatch(self) -> None:
        """Hand waiting requests to free workers, oldest first; requests that timed out are skipped."""
        for worker in self._workers:
            while worker.alive and worker.job is None and self._waiting_jobs:
                fn, future = self._waiting_jobs.popleft()
                if future.done():
                    continue
                try:
                    worker.conn.send(fn)  # the worker waits in recv(): this returns once it has read it all
                except (pickle.PicklingError, TypeError, AttributeError) as e:
                    future.set_exception(RuntimeError(f"a task that cannot be sent to a worker: {e}"))
                    continue
                except OSError:
                    self._waiting_jobs.appendleft((fn, future))
                    break  # the worker is dying; its sentinel will say so
                worker.job = future

    def _on_answer(self, worker: _Worker) -> None:
        try:
            kind, value = worker.conn.recv()
        except (EOFError, OSError):
            self._on_exit(worker)
            return
        job, worker.job = worker.job, None
        if job is not None and not job.done():  # a request that timed out meanwhile is not answered
            if kind == OK:
                job.set_result(value)
            else:
                job.set_exception(value)
        self._dispatch()

    def close(self) -> None:
        """Waiting requests are dropped; each worker finishes what it is reading, then exits."""
        self._closed = True
        for fn_future in self._waiting_jobs:
            fn_future[1].cancel()
        self._waiting_jobs.clear()
        for w in self._workers:
            if w.alive:
                self._unwatch(w)
                with contextlib.suppress(OSError):  # already gone
                    w.conn.send(None)
        for w in self._workers:
            w.process.join(JOIN_TIMEOUT_S)
            if w.process.is_alive():
                w.process.terminate()
            w.alive = False

    def __repr__(self) -> str:
        return f"ProcessReaderPool(processes={self.size}, max_waiting={self.max_waiting})"
