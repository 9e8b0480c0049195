"""The presets side by side over seeds: test accuracy mean ± std, training time, parameters, FLOPs per
image and inference images/s, as a Markdown table.

Runs live in RUNS/PRESET-seedN (a `digitocr train` run folder); missing ones are trained first, finished
ones are read as they are, so the table can be rebuilt from runs trained earlier (or elsewhere, e.g. the
members of `digitocr train --preset best --ensemble 5`, linked in as best-seedN).

    python benchmarks/presets_table.py --presets fast,seed --seeds 0,1,2,3,4 --runs runs/table
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from digitocr.config import preset
from digitocr.constants import IMAGE_SIZE, NUM_CHANNELS
from digitocr.data.datasets import load_dataset
from digitocr.inference import evaluate
from digitocr.model import count_parameters
from digitocr.registry import load_model
from digitocr.runtime import cpu_name, use_bf16
from digitocr.train import CHECKPOINT, METRICS, fit

SPEED_REPEATS = 3  # inference speed: best of this many passes over the test split


def flops_per_image(model: torch.nn.Module) -> int:
    """Forward FLOPs of one image (a multiply-add counts 2), as torch's FlopCounterMode counts them."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, NUM_CHANNELS, IMAGE_SIZE, IMAGE_SIZE))
    return counter.get_total_flops()


def train_seconds(run_dir: Path) -> float | None:
    """Training loop seconds recorded by the run's last complete invocation(s), summed over resumes."""
    path = run_dir / METRICS
    if not path.exists():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    secs = [r["train_seconds"] for r in records if "train_seconds" in r]
    return sum(secs) if secs else None


def ensure_run(name: str, seed: int, root: Path, data, threads: int | None) -> Path:
    run_dir = root / f"{name}-seed{seed}"
    if not (run_dir / CHECKPOINT).exists():
        print(f"training {run_dir} ...", flush=True)
        before = torch.get_num_threads()
        fit(preset(name, seed=seed, threads=threads), run_dir, data, progress=False, quiet=True)
        torch.set_num_threads(before)  # --train-threads is for training only
    return run_dir


def mean_std(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.2%} ± {statistics.stdev(xs):.2%}" if len(xs) > 1 else f"{xs[0]:.2%}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default="fast,seed,best", help="(default: fast,seed,best)")
    p.add_argument("--seeds", default="0,1,2", help="(default: 0,1,2)")
    p.add_argument("--runs", default="runs/table", help="folder of the run folders (default: runs/table)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for evaluation (default: torch's choice)")
    p.add_argument("--train-threads", type=int, default=None,
                   help="torch threads for runs trained here (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("mnist", progress=False)
    seeds = [int(s) for s in args.seeds.split(",")]
    bf16 = use_bf16("auto", torch.device("cpu"))
    print(f"machine: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"inference in {'bf16' if bf16 else 'fp32'}; seeds {args.seeds}\n")
    print("| preset | seeds | test accuracy (mean ± std) | min | training s (mean) | parameters | "
          "MFLOPs / image | inference images/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.presets.split(","):
        accs, secs, speeds, model = [], [], [], None
        for seed in seeds:
            run_dir = ensure_run(name, seed, Path(args.runs), data, args.train_threads)
            model = load_model(run_dir).model
            accs.append(evaluate(model, data.test, bf16=False).accuracy)  # accuracy in fp32
            if (s := train_seconds(run_dir)) is not None:
                secs.append(s)
            speeds.append(max(evaluate(model, data.test, bf16).images_per_s for _ in range(SPEED_REPEATS)))
        time_s = f"{statistics.mean(secs):.1f}" if secs else "n/a"
        print(f"| {name} | {len(seeds)} | {mean_std(accs)} | {min(accs):.2%} | {time_s} | "
              f"{count_parameters(model):,} | {flops_per_image(model) / 1e6:.1f} | "
              f"{statistics.median(speeds):,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
