"""Whole splits as in-memory tensors, and the stateless batch order that makes resuming exact."""

from __future__ import annotations

import numpy as np
import torch

from ..constants import PIXEL_MAX

# Mixed into the seed so each epoch's permutation is its own stream.
_EPOCH_STRIDE = 1_000_003


def images_to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 1, H, W) float32 in [0, 1], channels_last (oneDNN's fast layout)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).unsqueeze(1).float().div_(PIXEL_MAX)
    return x.contiguous(memory_format=torch.channels_last)


class BatchOrder:
    """Batch `i` is a pure function of (seed, i): the training set is reshuffled every epoch and read as
    one endless stream, so a run resumed at iteration i sees exactly the batches an unbroken run would."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._cache: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            g = torch.Generator().manual_seed(self.seed * _EPOCH_STRIDE + epoch)
            self._cache = {k: v for k, v in self._cache.items() if k >= epoch - 1}  # keep at most two
            self._cache[epoch] = torch.randperm(self.n, generator=g)
        return self._cache[epoch]

    def indices(self, iteration: int) -> torch.Tensor:
        start = iteration * self.batch_size
        positions = torch.arange(start, start + self.batch_size)
        epochs, offsets = positions // self.n, positions % self.n
        first = int(epochs[0])
        if int(epochs[-1]) == first:
            return self.permutation(first)[offsets]
        out = torch.empty(self.batch_size, dtype=torch.long)
        for e in range(first, int(epochs[-1]) + 1):
            m = epochs == e
            out[m] = self.permutation(e)[offsets[m]]
        return out
