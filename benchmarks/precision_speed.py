"""bf16 against fp32 on this CPU, side by side: what `--precision auto` (runtime.use_bf16) should pick.

Times, alternating the two precisions for --rounds rounds and printing medians and their ratio:
- a training step (forward, loss, backward, Adam) of the seed network at batch 64 and of BestNet at 128,
  channels_last, bf16 under autocast as train.py runs it;
- an inference call on a page's 10 crops and on 1,000 crops, through `inference_copy` (bf16 weights or fp32),
  one thread, as the Reader and `evaluate` run it.

    python benchmarks/precision_speed.py [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from digitocr.constants import IMAGE_SIZE, NUM_CHANNELS, NUM_CLASSES
from digitocr.inference import inference_copy, predict_logits
from digitocr.registry import load_model
from digitocr.runtime import BF16_CPU_FLAGS, FAST_BF16_CPU_FLAGS, cpu_flags, cpu_name

TRAIN_BATCH = {"seed": 64, "best": 128}  # the presets' batch sizes
INFER_CROPS = (10, 1000)  # a photo8 page's crops; an evaluate batch
WARMUP = 5  # untimed calls per measurement (oneDNN builds its kernels on the first)


def timed(fn, calls: int) -> float:
    """ms per call of fn, after WARMUP untimed calls."""
    for _ in range(WARMUP):
        fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e3


def train_step(spec: str, bf16: bool):
    model = load_model(spec).model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    b = TRAIN_BATCH[spec]
    x = torch.rand(b, NUM_CHANNELS, IMAGE_SIZE, IMAGE_SIZE).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (b,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def infer_call(spec: str, bf16: bool, crops: int):
    net = inference_copy(load_model(spec).model.eval(), bf16=bf16)
    x = torch.rand(crops, NUM_CHANNELS, IMAGE_SIZE, IMAGE_SIZE).contiguous(memory_format=torch.channels_last)
    return lambda: predict_logits(net, x, bf16=bf16)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch threads for training steps (default: 2)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians shown (default: 5)")
    args = p.parse_args()
    flags = sorted(f for f in cpu_flags() if f in BF16_CPU_FLAGS + FAST_BF16_CPU_FLAGS)
    print(f"{cpu_name()}; bf16 flags: {', '.join(flags) or 'none'}; torch {torch.__version__}")
    if not any(f in cpu_flags() for f in BF16_CPU_FLAGS):
        print("no native bf16 on this CPU: nothing to compare")
        return 0
    cases = [(f"train {s}, batch {TRAIN_BATCH[s]}, {args.threads} threads", args.threads,
              lambda bf, s=s: train_step(s, bf), 30) for s in TRAIN_BATCH]
    cases += [(f"infer best, {n} crops, 1 thread", 1, lambda bf, n=n: infer_call("best", bf, n), max(5, 2000 // n))
              for n in INFER_CROPS]
    print("| case | fp32 ms | bf16 ms | bf16 / fp32 |\n|---|---:|---:|---:|")
    for name, threads, make, calls in cases:
        torch.set_num_threads(threads)
        fns = {bf: make(bf) for bf in (False, True)}
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for bf in (False, True):
                times[bf].append(timed(fns[bf], calls))
        fp32, bf16 = np.median(times[False]), np.median(times[True])
        print(f"| {name} | {fp32:.2f} | {bf16:.2f} | {bf16 / fp32:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
