"""What a server runs with: the model, the pool, the limits. Passed to worker processes as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields

from ..imageio import DEFAULT_MAX_PIXELS

SETTINGS_ENV = "DIGITOCR_SERVE_SETTINGS"  # how `serve --workers N` hands settings to its worker processes
DEFAULT_HOST = "127.0.0.1"  # loopback: nothing outside this machine can reach the server unless asked
DEFAULT_PORT = 8000
DEFAULT_MAX_BYTES = 10 * 2**20  # a 12-megapixel phone JPEG is 3-6 MB
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_WAITING = 256  # requests queued for inference beyond this are refused with 503


@dataclass(frozen=True)
class ServeSettings:
    model: str = "best"
    backend: str = "torch"  # or "onnxruntime"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1  # server processes, each with its own copy of the model
    threads: int | None = None  # inference threads per process (None: the CPU cores shared among workers)
    timeout_s: float = DEFAULT_TIMEOUT_S  # per request: body upload + waiting + inference
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_waiting: int = DEFAULT_MAX_WAITING

    def inference_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})

    @classmethod
    def from_env(cls) -> ServeSettings:
        text = os.environ.get(SETTINGS_ENV)
        return cls.from_json(text) if text else cls()
