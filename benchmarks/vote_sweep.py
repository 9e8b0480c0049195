"""How the Reader's last step, the vote on each chosen part, would read with other networks or settings.

Segmentation does not depend on the vote: the verifier alone chooses the cuts, and the classifier and the
second network only label the parts chosen. So this reads make_ocr_set-style pages once (as ocr_factors.py
does), keeps for every digit of a page read with the right digit count its crop (the classifier's view), the
verifier's digit probabilities and their power (WHOLE_VOTE or PART_VOTE), and then re-labels those crops with
each --second network at each SECOND_BELOW x SECOND_VOTE, in seconds. Pages read with a wrong digit count stay
wrong whatever the vote, so "pages misread" below counts the others only.

    python benchmarks/vote_sweep.py --pages 3000 --seed 101 --split validation --save /tmp/votes_val.npz
    python benchmarks/vote_sweep.py --load /tmp/votes_val.npz --second best,/tmp/other.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_ocr_set import Knobs, make_case
from ocr_factors import bare
from ocr_fixtures import make_image

BELOW = (0.7, 0.8, 0.9, 0.95, 0.99, 1.01)  # 1.01: every digit asks
VOTES = (0.25, 0.5, 0.75, 1.0)
BATCH = 1000


def collect(args) -> dict[str, np.ndarray]:
    """Read the pages with the classifier and verifier alone (no second network) and keep every part's vote."""
    from digitocr.data.datasets import load_dataset
    from digitocr.ocr import PART_VOTE, WHOLE_VOTE, Reader

    class Recording(Reader):
        def classify_parts(self, keys, known):
            crops, probs = super().classify_parts(keys, known)
            power = np.array([PART_VOTE if len(k) == 3 else WHOLE_VOTE for k in keys], np.float32)
            votes = [known[k][1] if known[k][1] is not None else np.ones(10, np.float32) for k in keys]
            self.last = (crops, np.reshape(votes, (-1, 10)), power, probs)
            return crops, probs

    split = getattr(load_dataset("mnist", progress=False), args.split)
    reader = Recording(args.model, second=None)
    rng, knobs, out = np.random.default_rng(args.seed), Knobs(), {k: [] for k in ("crops", "votes", "power",
                                                                                      "probs", "label", "page")}
    for i in range(args.pages):
        text, style = make_case(args.category, rng, knobs, seed=args.seed * 1_000_000 + i)
        reader.last = None
        read = reader.read(make_image(text, style, split.images, split.labels)).text
        if reader.last is None or len(bare(read)) != len(bare(text)) or len(reader.last[0]) != len(bare(text)):
            continue
        for key, value in zip(("crops", "votes", "power", "probs"), reader.last, strict=True):
            out[key].append(value)
        out["label"].append([int(c) for c in bare(text)])
        out["page"].append([i] * len(bare(text)))
    return {k: np.concatenate(v) for k, v in out.items()}


def pages_misread(d: dict[str, np.ndarray], base: np.ndarray, second: np.ndarray | None, below: float,
                  vote: float) -> tuple[int, float]:
    """(pages with a digit wrong, share of digits that asked) with `second`'s log-probabilities voting."""
    logp = base.copy()
    p = np.exp(base - base.max(1, keepdims=True))
    unsure = (p / p.sum(1, keepdims=True)).max(1) < below
    if second is not None:
        logp[unsure] += vote * second[unsure]
    wrong = logp.argmax(1) != d["label"]
    return len(np.unique(d["page"][wrong])), float(unsure.mean())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=1000, help="pages to generate and read (default: 1000)")
    p.add_argument("--seed", type=int, default=101, help="random seed (default: 101)")
    p.add_argument("--category", default="number", help="a make_ocr_set category (default: number)")
    p.add_argument("--split", choices=("validation", "test"), default="validation", help="(default: validation)")
    p.add_argument("--model", default="photo", help="classifier (default: photo)")
    p.add_argument("--second", default="best", help="second networks to try, comma-separated (default: best)")
    p.add_argument("--save", default=None, help="keep the collected votes in this .npz (default: none)")
    p.add_argument("--load", default=None, help="use votes collected before instead of reading (default: none)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from digitocr.classifier import load_classifier
    from digitocr.ocr import MIN_VOTE  # probabilities are floored here before their logs, as ocr.vote does

    d = dict(np.load(args.load)) if args.load else collect(args)
    if args.save:
        np.savez_compressed(args.save, **d)

    def log_probs(spec: str) -> np.ndarray:
        net = load_classifier(spec)
        probs = np.concatenate([net(d["crops"][i:i + BATCH]) for i in range(0, len(d["crops"]), BATCH)])
        return np.log(np.maximum(probs[:, :10], MIN_VOTE))

    base = log_probs(args.model) + d["power"][:, None] * np.log(np.maximum(d["votes"], MIN_VOTE))
    alone = pages_misread(d, base, None, 0, 0)[0]
    print(f"{len(d['label'])} digits on {len(np.unique(d['page']))} pages read with the right digit count; "
          f"{args.model} and the verifier alone misread {alone} of those pages")
    print("| second | SECOND_VOTE | " + " | ".join(f"below {b}" for b in BELOW) + " |")
    print("|---|---:|" + "---:|" * len(BELOW))
    for spec in args.second.split(","):
        second = log_probs(spec)
        for vote in VOTES:
            cells = [pages_misread(d, base, second, below, vote) for below in BELOW]
            print(f"| {spec} | {vote} | " + " | ".join(f"{n} ({asked:.1%} ask)" for n, asked in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
