"""Batched prediction and evaluation of a network on a split."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .constants import NUM_CLASSES
from .data.datasets import Split
from .data.tensors import images_to_tensor
from .metrics import accuracy, confusion_matrix
from .runtime import autocast

EVAL_BATCH = 2048  # large batches amortise per-call overhead; memory stays ~50 MB for the seed net


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, bf16: bool = False,
                   batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """(N, 1, 28, 28) -> (N, 10) float32 logits, computed in batches in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    with autocast(device, bf16):
        for i in range(0, len(x), batch_size):
            out.append(model(x[i:i + batch_size].to(device, non_blocking=True)).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, NUM_CLASSES)


@dataclass
class EvalResult:
    accuracy: float
    correct: int
    total: int
    pred: np.ndarray
    confusion: np.ndarray
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else float("inf")


def evaluate(model: nn.Module, split: Split, bf16: bool = False, batch_size: int = EVAL_BATCH) -> EvalResult:
    device = next(model.parameters()).device
    x = images_to_tensor(split.images, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    logits = predict_logits(model, x, bf16, batch_size)
    pred = logits.argmax(1).cpu().numpy()
    seconds = time.perf_counter() - t0
    true = split.labels
    correct = int((pred == true).sum())
    return EvalResult(accuracy(pred, true), correct, len(true), pred, confusion_matrix(pred, true), seconds)
