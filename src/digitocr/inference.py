"""Batched prediction and evaluation of a network on a split."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .constants import IMAGE_SIZE, NUM_CHANNELS, NUM_CLASSES
from .data.datasets import Split
from .data.tensors import images_to_tensor
from .metrics import accuracy, confusion_matrix
from .runtime import autocast

# Batches this size keep each layer's activations in the CPU's L2 cache (2 MB/core here): 2,048-image batches
# ran 2-3x slower per image, dominated by max-pool and ReLU passes over activations that spilled to memory.
EVAL_BATCH = 256


def even_batch_size(n: int, batch_size: int = EVAL_BATCH) -> int:
    """The smallest batch size that cuts n images into as few batches of <= batch_size as possible: 10,000
    test images are 40 batches of 250, one tensor shape (oneDNN builds its kernels once per shape), instead
    of 39 of 256 and a tail of 16 that would pay for its own kernels."""
    return math.ceil(n / math.ceil(n / batch_size)) if n else batch_size


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, bf16: bool = False,
                   batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """(N, 1, 28, 28) -> (N, 10) float32 logits, computed in batches in eval mode. `bf16` asks for bf16
    autocast; a network already held in bf16 (inference_copy) computes in bf16 whatever `bf16` says."""
    was_training = model.training
    if was_training:  # eval() and train() walk every submodule (0.13 ms for `best`): skipped when already in eval
        model.eval()
    weight = next(model.parameters())
    device, dtype = weight.device, weight.dtype  # a network already in bf16 (inference_copy) takes bf16 input
    batch_size = even_batch_size(len(x), batch_size)
    out = []
    with autocast(device, bf16 and dtype == torch.float32):
        for i in range(0, len(x), batch_size):
            out.append(model(x[i:i + batch_size].to(device, dtype, non_blocking=True)).float())
    if was_training:
        model.train()
    return torch.cat(out) if out else torch.empty(0, NUM_CLASSES)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` in which every BatchNorm2d that directly follows a Conv2d inside a
    Sequential is folded into that conv's weights and bias: the same function (to float rounding), one pass
    over the activations fewer per conv. `best` has 7 convs; on the Reader's batches (a page's ~10 crops,
    one thread, bf16) a call takes 1.5 ms instead of 1.9 (BENCHMARKS.md, OCR round 6).
    `model` is left as it was."""
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        i = 0
        while i < len(seq) - 1:
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                del seq[i + 1]
            i += 1
    return model


# layers that compute the same in bf16 weights as under autocast, which runs them in bf16 anyway
BF16_SAFE = (nn.Conv2d, nn.Linear, nn.ReLU, nn.Dropout, nn.Flatten, nn.Sequential, nn.Identity)


def inference_copy(model: nn.Module, bf16: bool) -> nn.Module:
    """fold_batchnorm's copy, with its weights in bf16 when `bf16` and every submodule left is a conv, linear
    or elementwise layer: autocast casts every weight again on each call (10 crops: 1.3 ms instead of 1.5).
    The root's own forward is trusted: SeedNet and BestNet add only pooling and ReLU there. An Ensemble (its
    ModuleList) and SimpleNet (its BatchNorm1d) keep fp32 weights and autocast. A BestNet runs as a
    ConvReluChain."""
    net = fold_batchnorm(model)
    if bf16 and all(m is net or isinstance(m, BF16_SAFE) for m in net.modules()):
        net = net.to(torch.bfloat16)
    return ConvReluChain.of(net) or net


class ConvReluChain(nn.Module):
    """A network that is convs each followed by ReLU, then flatten and one linear head (a BestNet with its
    BatchNorms folded; its dropouts are the identity in eval), run as that loop: the same function bit for bit,
    without the ~30 module calls of a forward through nested Sequentials (a page's 10 crops: ~0.2 ms of 1.3)."""

    def __init__(self, convs: list[nn.Conv2d], head: nn.Linear):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.head = head

    @classmethod
    def of(cls, net: nn.Module) -> ConvReluChain | None:
        """The chain of an eval-mode BestNet whose layers are (Conv2d, ReLU)..., Flatten, Linear once its
        dropouts are left out; None for any other network."""
        from .model import BestNet

        if not isinstance(net, BestNet):
            return None
        leaves = [m for m in net.modules() if not list(m.children()) and not isinstance(m, nn.Dropout)]
        *pairs, flatten, head = leaves
        convs = pairs[::2]
        if not (len(pairs) % 2 == 0 and all(isinstance(c, nn.Conv2d) and c.padding_mode == "zeros" for c in convs)
                and all(isinstance(r, nn.ReLU) for r in pairs[1::2]) and isinstance(flatten, nn.Flatten)
                and flatten.start_dim == 1 and flatten.end_dim == -1 and isinstance(head, nn.Linear)):
            return None
        return cls(convs, head).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 28, 28) -> (N, classes) logits
        for conv in self.convs:
            x = torch.relu_(F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups))
        return F.linear(x.flatten(1), self.head.weight, self.head.bias)


@dataclass
class EvalResult:
    accuracy: float
    correct: int
    total: int
    pred: np.ndarray
    confusion: np.ndarray
    seconds: float  # uint8 images in memory -> predicted classes, after the warm-up batch
    warmup_seconds: float = 0.0  # the untimed first batch: oneDNN creates its kernels for the shapes

    @property
    def images_per_s(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else float("inf")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def warm_up(model: nn.Module, n: int, bf16: bool = False, batch_size: int = EVAL_BATCH) -> float:
    """Run one blank batch of the shape a pass over n images will use; returns its seconds. The first call
    at a shape builds oneDNN primitives (and autocast's weight copies): tens of ms that are not inference."""
    device = next(model.parameters()).device
    size = even_batch_size(n, batch_size)
    t0 = time.perf_counter()
    predict_logits(model, torch.zeros(size, NUM_CHANNELS, IMAGE_SIZE, IMAGE_SIZE, device=device), bf16, size)
    _sync(device)
    return time.perf_counter() - t0


def evaluate(model: nn.Module, split: Split, bf16: bool = False, batch_size: int = EVAL_BATCH) -> EvalResult:
    device = next(model.parameters()).device
    warmup = warm_up(model, len(split), bf16, batch_size) if len(split) else 0.0
    t0 = time.perf_counter()
    x = images_to_tensor(split.images, device)
    logits = predict_logits(model, x, bf16, batch_size)
    pred = logits.argmax(1).cpu().numpy()
    seconds = time.perf_counter() - t0
    true = split.labels
    correct = int((pred == true).sum())
    return EvalResult(accuracy(pred, true), correct, len(true), pred, confusion_matrix(pred, true), seconds,
                      warmup)
