"""What a server runs with: the model, the pool, the limits. Passed to inference processes as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields

from ..constants import DEFAULT_CLASSIFIER, DEFAULT_MIN_CONFIDENCE, DEFAULT_SECOND, DEFAULT_VERIFIER
from ..imageio import DEFAULT_MAX_PIXELS

DEFAULT_HOST = "127.0.0.1"  # loopback: nothing outside this machine can reach the server unless asked
DEFAULT_PORT = 8000
DEFAULT_MAX_BYTES = 10 * 2**20  # a 12-megapixel phone JPEG is 3-6 MB
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_WAITING = 256  # requests queued for inference beyond this are refused with 503
MAX_DEFAULT_WORKERS = 4  # each worker process holds its own torch and model (~350 MB)


def default_workers() -> int:
    """`serve`'s default: one inference process per core (up to MAX_DEFAULT_WORKERS). The pipeline's Python
    holds the GIL, so threads of one process do not keep several cores busy; processes do."""
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


@dataclass(frozen=True)
class ServeSettings:
    model: str = DEFAULT_CLASSIFIER  # the Reader's: `best` fine-tuned on photo crops
    verifier: str | None = DEFAULT_VERIFIER  # scores cuts of touching digits; None: the model's confidence does
    second: str | None = DEFAULT_SECOND  # asked about unsure digits ("auto": as `digitocr read`); None: no one
    backend: str = "torch"  # or "onnxruntime"
    precision: str = "auto"  # the torch networks' arithmetic: "auto", "bf16" or "fp32"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1  # inference processes; 1: inference runs on threads of the server process
    threads: int | None = None  # with one worker, its inference threads (None: one per CPU core)
    timeout_s: float = DEFAULT_TIMEOUT_S  # per request: body upload + waiting + inference
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_waiting: int = DEFAULT_MAX_WAITING
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # digits below it are marked low_confidence and read "?"

    def inference_threads(self) -> int:
        """Readers on threads of the server process (workers == 1); each worker process has one."""
        return 1 if self.workers > 1 else self.threads or os.cpu_count() or 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})
