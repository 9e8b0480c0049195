"""Inference speed of bundled models (or any --model specs): batch throughput and single-image latency.

Throughput: `evaluate` over the 10,000 test images, as `digitocr evaluate` runs it (uint8 images in memory
-> predicted classes, after one untimed warm-up batch), first pass and best of --repeats, plus the first
pass *with* the warm-up counted, which is what a one-off cold command pays.
Latency: --calls single-image calls through the classifier contract (load_classifier(...)(crop), a
(1, 28, 28) float32 crop -> (1, 10) probabilities), after --warmup calls; p50 and p99.

    python benchmarks/inference_speed.py --models seed,best [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from digitocr.classifier import load_classifier
from digitocr.constants import PIXEL_MAX
from digitocr.data.datasets import load_dataset
from digitocr.inference import evaluate
from digitocr.registry import load_model
from digitocr.runtime import cpu_name, use_bf16

LATENCY_PERCENTILES = (50, 99)


def throughput(spec: str, data, bf16: bool, repeats: int) -> dict[str, float]:
    model = load_model(spec).model
    first = evaluate(model, data.test, bf16)
    best = max([first.images_per_s] + [evaluate(model, data.test, bf16).images_per_s for _ in range(repeats - 1)])
    cold = first.total / (first.seconds + first.warmup_seconds)
    return {"accuracy": first.accuracy, "first": first.images_per_s, "best": best, "cold": cold,
            "warmup_ms": first.warmup_seconds * 1e3}


def latency(spec: str, data, precision: str, calls: int, warmup: int) -> dict[int, float]:
    classify = load_classifier(spec, precision=precision)
    crops = data.test.images[: calls + warmup].astype(np.float32) / PIXEL_MAX  # (N, 28, 28)
    for i in range(warmup):
        classify(crops[i:i + 1])
    times = []
    for i in range(warmup, warmup + calls):
        t = time.perf_counter()
        classify(crops[i:i + 1])
        times.append(time.perf_counter() - t)
    return {q: float(np.percentile(times, q)) * 1e3 for q in LATENCY_PERCENTILES}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="seed,best", help="--model specs, comma-separated (default: seed,best)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto", help="(default: auto)")
    p.add_argument("--repeats", type=int, default=5, help="throughput passes per model (default: 5)")
    p.add_argument("--calls", type=int, default=1000, help="single-image calls timed (default: 1000)")
    p.add_argument("--warmup", type=int, default=20, help="single-image calls not timed (default: 20)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("mnist", progress=False)
    bf16 = use_bf16(args.precision, torch.device("cpu"))
    print(f"machine: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'bf16' if bf16 else 'fp32'}\n")
    print("| model | test acc | images/s (first pass) | images/s (best of "
          f"{args.repeats}) | images/s incl. warm-up | warm-up ms | latency p50 ms | latency p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for spec in args.models.split(","):
        tp = throughput(spec, data, bf16, args.repeats)
        lat = latency(spec, data, args.precision, args.calls, args.warmup)
        print(f"| {spec} | {tp['accuracy']:.2%} | {tp['first']:,.0f} | {tp['best']:,.0f} | {tp['cold']:,.0f} | "
              f"{tp['warmup_ms']:.0f} | {lat[50]:.2f} | {lat[99]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
