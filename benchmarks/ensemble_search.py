"""Pick the K <= 5 ensemble with the best validation accuracy from trained networks, then read test once.

    python benchmarks/ensemble_search.py
    python benchmarks/ensemble_search.py --models /tmp/runs/best-ens/member-0,photo --max-k 5

The default candidates: six `best` runs (seeds 0-4 of `train --preset best --ensemble 5`, and a sixth),
the bundled `photo`, `train --preset simple5` / `simple7` (seed 0) in /tmp/runs/simple/s5-0, s7-0, and the
same two networks at An et al.'s full width (seed 1) in /tmp/runs/simple/s5full-1, s7full-1 (BENCHMARKS.md).

Members' probabilities are averaged in fp32, as digitocr's Ensemble does. Every subset of up to --max-k of
the candidates is scored on the validation split; only the chosen one is evaluated on test.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from digitocr.data.datasets import load_dataset
from digitocr.data.tensors import images_to_tensor
from digitocr.inference import predict_logits
from digitocr.registry import load_model

DEFAULT_MODELS = ",".join([f"/tmp/runs/best-ens/member-{i}" for i in range(5)]
                          + ["/tmp/runs/best-a", "photo"]
                          + [f"/tmp/runs/simple/{r}" for r in ("s5-0", "s7-0", "s5full-1", "s7full-1")])
SPLITS = ("validation", "test")


def probabilities(spec: str, data) -> dict[str, np.ndarray]:
    """split -> (N, 10) softmax probabilities of one network, fp32."""
    model = load_model(spec).model
    return {split: torch.softmax(predict_logits(model, images_to_tensor(getattr(data, split).images, "cpu")), 1)
            .numpy() for split in SPLITS}


def accuracy(probs: list[np.ndarray], labels: np.ndarray) -> float:
    return float((np.mean(probs, 0).argmax(1) == labels).mean())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated --model specs (default: %(default)s)")
    p.add_argument("--max-k", type=int, default=5, help="largest ensemble (default: 5)")
    args = p.parse_args()

    data = load_dataset("mnist", progress=False)
    specs = args.models.split(",")
    probs = {spec: probabilities(spec, data) for spec in specs}
    for spec in specs:
        print(f"{spec}: validation {accuracy([probs[spec]['validation']], data.validation.labels):.2%}")
    scored = [(accuracy([probs[s]["validation"] for s in combo], data.validation.labels), combo)
              for k in range(1, args.max_k + 1) for combo in itertools.combinations(specs, k)]
    val, combo = max(scored, key=lambda t: (t[0], -len(t[1])))  # ties: the smaller ensemble
    test = accuracy([probs[s]["test"] for s in combo], data.test.labels)
    print(f"chosen on validation ({val:.2%}): {', '.join(combo)}")
    print(f"its test accuracy: {test:.2%} ({round((1 - test) * len(data.test.labels))} errors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
