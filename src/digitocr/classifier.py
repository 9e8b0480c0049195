"""A classifier turns MNIST-framed crops into class probabilities; OCR, the server and benchmarks use it.

Contract: __call__(crops) with crops (N, 28, 28) float32 in [0, 1] (white ink on black, MNIST framing)
returns (N, 10) float32 probabilities. Backends: torch (default); onnxruntime via export.py.
"""

from __future__ import annotations

import numpy as np
import torch

from .inference import inference_copy, predict_logits
from .registry import LoadedModel, load_model
from .runtime import resolve_device, use_bf16


class TorchClassifier:
    """A loaded network behind the classifier contract. Loads once; safe to call from one thread at a time.
    It runs `inference.inference_copy` of the network (`loaded.model` stays as trained)."""

    def __init__(self, loaded: LoadedModel, precision: str = "auto"):
        self.loaded = loaded
        self.device = next(loaded.model.parameters()).device
        self.bf16 = use_bf16(precision, self.device)
        self.network = inference_copy(loaded.model, self.bf16)

    @property
    def name(self) -> str:
        return str(self.loaded.path)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).unsqueeze(1)  # (N, 1, 28, 28)
        x = x.contiguous(memory_format=torch.channels_last)
        return torch.softmax(predict_logits(self.network, x, self.bf16), dim=1).cpu().numpy()  # CUDA: back to host

    def __repr__(self) -> str:
        return f"TorchClassifier({self.name!r}, bf16={self.bf16})"


def load_classifier(model: str = "best", backend: str = "torch", device: str = "cpu",
                    precision: str = "auto", threads: int | None = None):
    """The classifier for a --model spec on a backend ('torch' or 'onnxruntime'); `threads`: onnxruntime's
    intra-op threads (None: its default; torch's are process-wide, set with torch.set_num_threads)."""
    if backend == "torch":
        return TorchClassifier(load_model(model, resolve_device(device)), precision)
    if backend == "onnxruntime":
        from .export import OnnxClassifier  # optional dependency, imported only when asked for

        return OnnxClassifier.from_model(model, threads)
    from .errors import DigitocrError

    raise DigitocrError(f"--backend {backend!r}: choose torch or onnxruntime")
