"""What one classifier call on a page's crops costs, for the trained network and its inference copies.

The Reader calls its networks two or three times a page, each time on ~10 crops: at that size a call is
mostly per-layer costs, not arithmetic. This times `predict_logits` on the same random crops for

- the trained network under bf16 autocast (what TorchClassifier ran before OCR round 6),
- `inference.fold_batchnorm`'s copy under autocast,
- `inference.inference_copy` (folded, bf16 weights where every layer allows it, no autocast): what
  TorchClassifier runs now on a CPU with AMX (elsewhere it runs the fp32 folded copy),

alternating between them, and prints the median of --rounds rounds (one torch thread, as the Reader runs).

    python benchmarks/classifier_calls.py --models photo,reader --crops 10
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from digitocr.constants import IMAGE_SIZE, NUM_CHANNELS
from digitocr.inference import fold_batchnorm, inference_copy, predict_logits
from digitocr.registry import load_model
from digitocr.runtime import cpu_name

WARMUP_CALLS = 20  # oneDNN builds its kernels for a shape on the first calls


def time_calls(net: torch.nn.Module, x: torch.Tensor, calls: int) -> float:
    """Mean ms per predict_logits call (bf16), after WARMUP_CALLS untimed ones."""
    for _ in range(WARMUP_CALLS):
        predict_logits(net, x, bf16=True)
    t0 = time.perf_counter()
    for _ in range(calls):
        predict_logits(net, x, bf16=True)
    return (time.perf_counter() - t0) / calls * 1e3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="photo,reader", help="comma-separated --model specs (default: %(default)s)")
    p.add_argument("--crops", type=int, default=10, help="crops per call (default: 10, a photo8 page's)")
    p.add_argument("--calls", type=int, default=200, help="timed calls per round (default: 200)")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds; the median is shown (default: 7)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the crops (default: 0)")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    x = torch.rand(args.crops, NUM_CHANNELS, IMAGE_SIZE, IMAGE_SIZE).contiguous(memory_format=torch.channels_last)
    print(f"{cpu_name()}, 1 thread, {args.crops} crops a call, median of {args.rounds} rounds x {args.calls} calls")
    print("| network | trained, autocast | BatchNorm folded, autocast | inference_copy, bf16 | argmax vs trained |")
    print("|---|---:|---:|---:|---|")
    for spec in args.models.split(","):
        trained = load_model(spec).model.eval()
        nets = [trained, fold_batchnorm(trained), inference_copy(trained, bf16=True)]
        times: list[list[float]] = [[] for _ in nets]
        for _ in range(args.rounds):
            for k, net in enumerate(nets):
                times[k].append(time_calls(net, x, args.calls))
        same = torch.equal(predict_logits(nets[0], x, True).argmax(1), predict_logits(nets[2], x, True).argmax(1))
        cells = " | ".join(f"{np.median(t):.2f} ms" for t in times)
        print(f"| `{spec}` | {cells} | {'same argmax' if same else 'argmax differs'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
