"""Pick the K <= 5 ensemble with the best validation score from trained networks, then read test once.

    python benchmarks/ensemble_search.py                      # scored by validation log loss
    python benchmarks/ensemble_search.py --by accuracy        # scored by validation accuracy
    python benchmarks/ensemble_search.py --models /tmp/runs/best-ens/member-0,photo --max-k 5
    python benchmarks/ensemble_search.py --cache /tmp/probs --jobs 2   # validation probabilities kept
    python benchmarks/ensemble_search.py --hindsight          # a bound: subsets scored on TEST (see below)

The default candidates (BENCHMARKS.md, "Ensembles", has the commands that trained them): six `best` runs
(seeds 0-4 of `train --preset best --ensemble 5`, and a sixth), the bundled `photo`, `simple5` fine-tuned
on photo crops like it (/tmp/runs/photo_s5.safetensors), `train --preset simple3|simple5|simple7` in
/tmp/runs/simple/s3-0 .. s3-3, s5-0, s7-0, and An et al.'s full-width 5x5 and 7x7 networks in
/tmp/runs/simple/s5full-1, s5full-2, s7full-1, s7full-2, s7full-3; and the same two trained three times as
long (60 epochs) in /tmp/runs/long/s5full-e60-3 and s7full-e60-4; and four of them fine-tuned on photo crops
as `photo` was, in /tmp/runs/photo_ft (session 6).

Members' probabilities are averaged in fp32, as digitocr's Ensemble does. Every subset of up to --max-k of
the candidates is scored on the validation split; only the chosen one is evaluated on test.

Why log loss: every good ensemble makes 10-12 errors in the 5,000 validation images, so accuracy ranks
subsets by one or two images (noise). The mean negative log-likelihood of the true class counts every image,
right or wrong, by how sure the ensemble was, so it separates subsets that accuracy calls equal. It is taken
at the temperature that suits each subset best: the members were trained with label smoothing, and raw log
loss would rank them by how much smoothing caps their confidence. A temperature changes no prediction, so
the chosen ensemble is exactly what digitocr's Ensemble (plain mean of probabilities) computes.

`--augmented N` (session 7) scores subsets on the validation images plus N copies of them warped by the
training augmentation (`augment.py`'s random affine + elastic, copy i seeded i). Every good ensemble makes
10-12 errors on the clean 5,000, too few to rank subsets; the warped copies are harder, so they make hundreds
of errors between them, and the ranking rests on many more images. Still validation images only.

`--hindsight` answers a different question: how far could these candidates go at all? It scores every
subset by its errors on the test split itself and prints the fewest per K. That is selection on test, so it
is a ceiling for any honest choice and never a result; it skips the validation search.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import multiprocessing as mp
from pathlib import Path

import numpy as np
import torch

from digitocr import metrics
from digitocr.augment import augment_batch
from digitocr.data.datasets import load_dataset
from digitocr.data.tensors import images_to_tensor
from digitocr.inference import predict_logits
from digitocr.registry import load_model, resolve_model_path

SIMPLE_RUNS = ("s3-0", "s3-1", "s3-2", "s3-3", "s5-0", "s7-0", "s5full-1", "s5full-2", "s7full-1", "s7full-2",
               "s7full-3")
LONG_RUNS = ("s5full-e60-3", "s7full-e60-4")  # full-width simple5 / simple7 trained 60 epochs (3x), session 5
# session 6: `best` seed 4, simple3 seed 3, simple7 seed 0 and full-width simple5 seed 2, each fine-tuned on photo
# crops as `photo` and photo_s5 were (train_photo_model.py --head digits --init RUN)
PHOTO_RUNS = ("photo_b4", "photo_s3", "photo_s7", "photo_s5full")
DEFAULT_MODELS = ",".join([f"/tmp/runs/best-ens/member-{i}" for i in range(5)]
                          + ["/tmp/runs/best-a", "photo", "/tmp/runs/photo_s5.safetensors"]
                          + [f"/tmp/runs/simple/{r}" for r in SIMPLE_RUNS]
                          + [f"/tmp/runs/long/{r}" for r in LONG_RUNS]
                          + [f"/tmp/runs/photo_ft/{r}.safetensors" for r in PHOTO_RUNS])


def split_images(data, split: str, augmented: int = 0) -> torch.Tensor:
    """(N * (1 + augmented), 1, 28, 28): a split's images, then `augmented` warped copies of them (validation)."""
    x = images_to_tensor(getattr(data, split).images, "cpu")
    copies = [augment_batch(x, torch.Generator().manual_seed(i)) for i in range(augmented)]
    return torch.cat([x, *copies]).contiguous(memory_format=torch.channels_last)


def probabilities(spec: str, data, split: str, cache: Path | None = None, augmented: int = 0) -> np.ndarray:
    """(N, 10) softmax probabilities of one network on one split (and its warped copies), fp32; kept in
    `cache` (validation only: keyed by the weights file's path, size and time, so retrained weights are
    never read stale)."""
    path = None
    if cache is not None and split == "validation":
        weights = resolve_model_path(spec).resolve()
        stat = weights.stat()
        copies = f"|augmented {augmented}" if augmented else ""  # the key of a clean split is unchanged
        key = hashlib.sha256(f"{weights}|{stat.st_size}|{stat.st_mtime_ns}|{split}{copies}".encode()).hexdigest()[:24]
        path = cache / f"{key}.npy"
        if path.exists():
            return np.load(path)
    model = load_model(spec).model
    probs = torch.softmax(predict_logits(model, split_images(data, split, augmented)), 1).numpy()
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, probs)
    return probs


def accuracy(probs: list[np.ndarray], labels: np.ndarray) -> float:
    return float((np.mean(probs, 0).argmax(1) == labels).mean())


def log_loss(probs: list[np.ndarray], labels: np.ndarray) -> float:
    """Of the members' averaged probabilities, at the temperature that suits them best (metrics.py: why)."""
    return metrics.calibrated_log_loss(np.mean(probs, 0), labels)[0]


_SCORING: tuple = ()  # (score, spec -> validation probabilities, labels) for _score, set by main()


def _score(combo: tuple[str, ...]) -> float:
    score, val, labels = _SCORING
    return score([val[s] for s in combo], labels)


SCORES = {"nll": lambda probs, labels: -log_loss(probs, labels), "accuracy": accuracy}  # higher is better


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated --model specs (default: %(default)s)")
    p.add_argument("--max-k", type=int, default=5, help="largest ensemble (default: 5)")
    p.add_argument("--by", choices=sorted(SCORES), default="nll",
                   help="validation score that picks the subset: log loss or accuracy (default: %(default)s)")
    p.add_argument("--no-test", action="store_true", help="stop after choosing: the test split is not read")
    p.add_argument("--show", type=int, default=5, help="print this many of the best-scored subsets (default: 5)")
    p.add_argument("--jobs", type=int, default=1, help="processes scoring the subsets (default: 1)")
    p.add_argument("--top", type=int, default=None, help="search only the subsets of the N networks that "
                   "score best alone on validation (default: all); for many candidates")
    p.add_argument("--cache", default=None, help="keep each network's validation probabilities in this folder "
                   "(default: none); test probabilities are computed for the chosen members only, never kept")
    p.add_argument("--augmented", type=int, default=0, help="score on the validation images plus this many "
                   "copies warped by the training augmentation (default: 0, the clean split only)")
    p.add_argument("--hindsight", action="store_true", help="print the fewest TEST errors of any subset per K: a "
                   "ceiling for honest choices, chosen on test, never a result (no validation search: --by and --cache "
                   "do not apply)")
    args = p.parse_args()

    data = load_dataset("mnist", progress=False)
    specs = args.models.split(",")
    if args.hindsight:
        return hindsight(specs, data, args.max_k)
    cache = Path(args.cache) if args.cache else None
    probs = {spec: {"validation": probabilities(spec, data, "validation", cache, args.augmented)} for spec in specs}
    labels = np.tile(data.validation.labels, 1 + args.augmented)
    if args.augmented:
        print(f"scoring on {len(labels)} images: the validation split and {args.augmented} warped copies")
    for spec in specs:
        val = [probs[spec]["validation"]]
        print(f"{spec}: validation {accuracy(val, labels):.2%}, calibrated log loss {log_loss(val, labels):.4f}")
    score = SCORES[args.by]
    if args.top is not None:  # the subsets of the N best networks alone: fewer subsets, chosen on validation
        specs = sorted(specs, key=lambda s: -score([probs[s]["validation"]], labels))[:args.top]
        print(f"searching subsets of the {len(specs)} best by {args.by}: {', '.join(specs)}")
    combos = [c for k in range(1, args.max_k + 1) for c in itertools.combinations(specs, k)]
    global _SCORING  # what forked scoring workers read, set once before they start (no pickling of arrays)
    _SCORING = (score, {s: probs[s]["validation"] for s in specs}, labels)
    if args.jobs > 1:
        with mp.get_context("fork").Pool(args.jobs) as pool:  # workers run numpy only, never torch
            values = pool.map(_score, combos, chunksize=256)
    else:
        values = list(map(_score, combos))
    scored = list(zip(values, combos, strict=True))
    scored.sort(key=lambda t: (-t[0], len(t[1])))  # ties: the smaller ensemble

    def describe(combo: tuple[str, ...]) -> str:
        val = [probs[s]["validation"] for s in combo]
        return (f"validation {accuracy(val, labels):.2%}, calibrated log loss {log_loss(val, labels):.4f}: "
                f"{', '.join(combo)}")

    for _, combo in scored[:args.show]:
        print(f"  {describe(combo)}")
    combo = scored[0][1]
    print(f"chosen by {args.by} on {describe(combo)}")
    if args.no_test:
        return 0
    test = accuracy([probabilities(s, data, "test") for s in combo], data.test.labels)  # the chosen members only
    print(f"its test accuracy: {test:.2%} ({round((1 - test) * len(data.test.labels))} errors)")
    return 0


def hindsight(specs: list[str], data, max_k: int) -> int:
    """The subset of each size with the fewest test errors, chosen on test: a bound, not a result."""
    labels = data.test.labels
    test = np.stack([probabilities(s, data, "test") for s in specs])  # (M, N, 10)
    for errors, spec in sorted(zip((test.argmax(2) != labels).sum(1), specs, strict=True)):
        print(f"{spec}: {errors} test errors alone")
    for k in range(1, max_k + 1):
        errors, combo = min((int((test[list(c)].sum(0).argmax(1) != labels).sum()), c)
                            for c in itertools.combinations(range(len(specs)), k))
        print(f"K = {k}: at best {errors} test errors ({1 - errors / len(labels):.2%}), in hindsight: "
              f"{', '.join(specs[i] for i in combo)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
