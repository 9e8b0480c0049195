"""Fine-tune the bundled `best` network on digits as the Reader sees them in photos.

    python benchmarks/train_photo_model.py --head digits --seed 0    # src/digitocr/pretrained/photo.*
    python benchmarks/train_photo_model.py --head reader --seed 0 --threads 2   # .../reader.*

`best` reads 99.70% of MNIST's test digits but fewer of the digits the Reader cuts out of photos: blur,
thick pens, JPEG and its stroke-width normalisation move them away from MNIST. This starts from `best`'s
weights (or those of `--init`, any model spec) and trains on a mix of plain MNIST training images (augmented
as `best` was) and the Reader's own crops of MNIST *training*-split digits photographed on lines
(train_reader_model.make_crop_set, made in parallel and cached by photo_crops.py):

- `--head digits`: a 10-class classifier on the crops framed alone (what the Reader's classifier sees).
  Its card is a bundled classifier's card (registry.build_card: MNIST test accuracy, evaluated once).
- `--head reader`: the same network with an 11th output, "not one digit", on the crops framed in context
  with every label (what the Reader's verifier sees): a BestNet-size verifier. Its card has the keys of
  train_reader_model.py's, so it can replace the bundled `reader`.

Early stopping: the run is evaluated `--evals` times on held-out crops made from MNIST's validation split
(the first 5,000 training images, never trained on) and on the validation images themselves; the best
evaluation's weights are kept. MNIST's test split is never looked at before the card is written.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from digitocr.augment import augment_batch
from digitocr.checkpoint import save_checkpoint
from digitocr.config import ModelConfig
from digitocr.constants import NUM_CLASSES, PIXEL_MAX
from digitocr.inference import predict_logits
from digitocr.model import build_model
from digitocr.registry import build_card, load_model
from digitocr.runtime import autocast, use_bf16
from photo_crops import FORMAT, cached, crop_set
from train_reader_model import CLASSES, NOT_ONE, CropSet, data_checksums, heldout_set, lr_at, scores

log = logging.getLogger("train_photo_model")

INIT = "best"  # the network every run starts from, unless --init names another
HEADS = ("digits", "reader")
AUG_STREAM = 104_729  # the MNIST half's augmentation RNG stream, apart from the batch order's


@dataclass(frozen=True)
class Recipe:
    head: str = "digits"
    lines: int = 16_000  # training lines of 1-3 digits (~12 crops each, a third of them one digit)
    heldout_lines: int = 1_500
    quick_lines: int = 300  # the reader head's card also scores train_reader_model.heldout's quick set
    epochs: float = 3.0  # passes over the crops the head trains on
    batch_size: int = 128
    mnist_share: float = 0.3  # share of each batch that is plain (augmented) MNIST training images
    hard_share: float = 0.0  # share of each batch drawn from --hard crops (hard_parts.py), when given
    lr: float = 1e-3  # peak; warm-up then cosine (train_reader_model.lr_at)
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    dropout: float = 0.4  # `best`'s own
    evals: int = 8  # held-out evaluations over the run; the best one's weights are kept
    seed: int = 0


# The reader head learns a new task (not one digit) from many crops: more lines, a higher rate, less dropout,
# and little label smoothing, since its P(one digit) is a score in the Reader's cut search.
HEAD_DEFAULTS: dict[str, dict] = {
    "digits": {},
    "reader": dict(lines=24_000, epochs=1.5, mnist_share=0.1, lr=2e-3, label_smoothing=0.02, dropout=0.1),
}
DEFAULT_OUT = {"digits": "src/digitocr/pretrained/photo", "reader": "src/digitocr/pretrained/reader"}


def start_model(head: str, dropout: float, init: str = INIT) -> torch.nn.Module:
    """`init`'s network and weights; the reader head gets an 11th output, initially never chosen."""
    best = load_model(init).model.to(memory_format=torch.contiguous_format)
    cfg = ModelConfig(**{**asdict(best.cfg), "dropout": dropout,
                         "num_classes": NUM_CLASSES if head == "digits" else CLASSES})
    model = build_model(cfg)
    state = best.state_dict()
    if head == "digits":
        model.load_state_dict(state)
        return model
    head_w, head_b = state.pop("head.weight"), state.pop("head.bias")  # (10, w3), (10,)
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.weight[:NUM_CLASSES] = head_w
        model.head.bias.fill_(float(head_b.min()))
        model.head.bias[:NUM_CLASSES] = head_b
    return model


def training_crops(crops: CropSet, head: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,)): one-digit crops alone, or every crop in context."""
    if head == "digits":
        one = crops.labels != NOT_ONE
        return crops.clean[one], crops.labels[one]
    return crops.context, crops.labels


def as_batch(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 28, 28) float32 in [0, 1]."""
    x = torch.as_tensor(images)
    return x.unsqueeze(1).float() / PIXEL_MAX


def probabilities(model: torch.nn.Module, images: np.ndarray, bf16: bool) -> np.ndarray:
    return torch.softmax(predict_logits(model, as_batch(images), bf16), 1).numpy()


def held_out_scores(model: torch.nn.Module, held: CropSet, validation, head: str, bf16: bool) -> dict[str, float]:
    """What early stopping and the card look at: the head's own crops, and MNIST's validation images."""
    x, y = training_crops(held, head)
    probs = probabilities(model, x, bf16)
    val = probabilities(model, validation.images, bf16)[:, :NUM_CLASSES].argmax(1)
    out = {"mnist_validation": float((val == validation.labels).mean())}
    if head == "digits":
        out |= {"n": len(y), "digit_accuracy": float((probs.argmax(1) == y).mean())}
        out["select"] = out["digit_accuracy"] + out["mnist_validation"]
    else:
        out |= scores(probs, y)
        out["select"] = out["accuracy"] + out["mnist_validation"]
    return out


def batch_split(r: Recipe, has_hard: bool) -> tuple[int, int, int]:
    """How each batch of r.batch_size is made up: (photo crops, plain MNIST images, hard crops)."""
    n_mnist = round(r.batch_size * r.mnist_share)
    n_hard = round(r.batch_size * r.hard_share) if has_hard else 0
    return r.batch_size - n_mnist - n_hard, n_mnist, n_hard


def fit(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, mnist, r: Recipe, evaluate,
        progress: bool = True, hard: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[torch.nn.Module, list[dict]]:
    """Fine-tune on batches of crops, augmented MNIST and (a share drawn at random from) `hard` crops;
    returns the best-evaluated weights and the log."""
    bf16 = use_bf16("auto", torch.device("cpu"))
    torch.manual_seed(r.seed)
    n_crops, n_mnist, n_hard = batch_split(r, hard is not None and len(hard[1]) > 0)
    hx, hy = (torch.from_numpy(a) for a in hard) if n_hard else (None, None)
    steps_per_epoch = math.ceil(len(y) / n_crops)
    total = max(1, int(r.epochs * steps_per_epoch))
    eval_at = {round(total * (k + 1) / r.evals) for k in range(r.evals)}
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    mx, my = torch.from_numpy(mnist.images), torch.from_numpy(mnist.labels)
    g = torch.Generator().manual_seed(r.seed)
    order = torch.randperm(len(y), generator=g)
    best_state, best_score, history = copy.deepcopy(model.state_dict()), -1.0, []
    t0 = time.perf_counter()
    model.train()
    for step in range(total):
        at = (step % steps_per_epoch) * n_crops
        if step and at == 0:
            order = torch.randperm(len(y), generator=g)
        idx = order[at:at + n_crops]
        midx = torch.randint(0, len(my), (n_mnist,), generator=g)
        plain = augment_batch(as_batch(mx[midx]), torch.Generator().manual_seed(r.seed * AUG_STREAM + step))
        xb = torch.cat([as_batch(xt[idx]), plain.contiguous()])  # (B, 1, 28, 28)
        yb = torch.cat([yt[idx], my[midx]])
        if n_hard:
            hidx = torch.randint(0, len(hy), (n_hard,), generator=g)
            xb, yb = torch.cat([xb, as_batch(hx[hidx])]), torch.cat([yb, hy[hidx]])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, r.lr)
        with autocast(torch.device("cpu"), bf16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=r.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and (step % 50 == 0 or step == total - 1):
            print(f"\r  step {step + 1}/{total}  loss {loss.item():.3f}  {time.perf_counter() - t0:.0f}s", end="",
                  file=sys.stderr, flush=True)
        if step + 1 in eval_at:
            got = {"step": step + 1, "seconds": round(time.perf_counter() - t0), **evaluate(model)}
            model.train()
            history.append(got)
            if progress:
                print(file=sys.stderr)
            log.info("eval: %s", json.dumps({k: round(v, 4) for k, v in got.items()}))
            if got["select"] > best_score:
                best_score, best_state = got["select"], copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model.eval(), history


def digits_card(path: Path, data, command: str, extra: dict) -> dict:
    """A bundled classifier's card (registry.build_card), plus how it was fine-tuned."""
    card = build_card(path, data, command)
    card["preset"] = "photo"
    return {**card, **extra}


def reader_card(path: Path, model: torch.nn.Module, validation, r: Recipe, held: dict, command: str,
                extra: dict) -> dict:
    """A verifier's card, with train_reader_model.py's keys (tests/test_ocr.py regenerates heldout_quick)."""
    from digitocr.classifier import load_classifier
    from train_reader_model import heldout

    qx, qy = heldout(validation, r.seed, r.quick_lines)
    quick = scores(load_classifier(str(path))(qx.astype(np.float32) / PIXEL_MAX), qy)  # as the Reader runs it
    return {
        "name": path.stem, "classes": [str(d) for d in range(NUM_CLASSES)] + ["not one digit"],
        "architecture": f"{model.cfg.arch} network (fine-tuned from `{extra['init']}`), 11 outputs",
        "parameters": sum(p.numel() for p in model.parameters()),
        "trained_on": "pipeline-framed crops (in context) of MNIST training-split digits (lines of 1-3, touching "
                      "or apart), mixed with augmented MNIST training images",
        "heldout": {**held, "lines": r.heldout_lines, "source": "MNIST validation split (first 5,000)"},
        "heldout_quick": {**quick, "lines": r.quick_lines},
        "recipe": asdict(r), "command": command, "data_sha256": data_checksums(), **extra,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--head", choices=HEADS, default="digits", help="what to train (default: digits)")
    p.add_argument("--out", default=None, help="output path without suffix (default: src/digitocr/pretrained/photo "
                                                "for --head digits, .../reader for --head reader)")
    p.add_argument("--seed", type=int, default=0, help="random seed for data and training (default: 0)")
    for name, kind, what in (("lines", int, "training lines"), ("epochs", float, "passes over the crops"),
                             ("mnist_share", float, "share of each batch that is plain MNIST"),
                             ("hard_share", float, "share of each batch from --hard crops"),
                             ("lr", float, "peak learning rate"), ("label_smoothing", float, "label smoothing"),
                             ("dropout", float, "dropout")):
        per_head = ", ".join(f"{h} {HEAD_DEFAULTS[h].get(name, getattr(Recipe, name))}" for h in HEADS)
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=f"{what} (default: {per_head})")
    p.add_argument("--hard", nargs="+", default=None, metavar="FILE",
                   help="hard crops from hard_parts.py (.npz files) to mix in (default: none)")
    p.add_argument("--init", default=INIT, help="model spec to start from (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--workers", type=int, default=2, help="processes making the crops (default: 2)")
    p.add_argument("--cache", default=None, help="folder for made crops (default: DIGITOCR_DATA/reader-crops)")
    p.add_argument("--prepare-only", action="store_true", help="make (and cache) the crops, then stop")
    p.add_argument("--dry-run", action="store_true", help="tiny data and few steps, to test the path")
    p.add_argument("--no-progress", action="store_true", help="no status line (default: shown)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from digitocr.data.datasets import cache_root, load_dataset

    torch.set_num_threads(args.threads)
    given = {k: getattr(args, k) for k in ("lines", "epochs", "mnist_share", "hard_share", "lr", "label_smoothing",
                                           "dropout")}
    r = Recipe(head=args.head, seed=args.seed, **{**HEAD_DEFAULTS[args.head],
                                                   **{k: v for k, v in given.items() if v is not None}})
    if args.dry_run:
        r = replace(r, lines=40, heldout_lines=20, quick_lines=10, epochs=0.5, evals=2)
    out = Path(args.out or DEFAULT_OUT[args.head])
    cache = Path(args.cache) if args.cache else cache_root() / "reader-crops"
    data = load_dataset("mnist", progress=False)  # train (55,000) and validation (the first 5,000)
    t0 = time.perf_counter()
    crops = crop_set(data.train.images, data.train.labels, r.lines, r.seed, workers=args.workers,
                     cache_dir=None if args.dry_run else cache)
    held = cached(f"heldout-l{r.heldout_lines}-s{r.seed}-f{FORMAT}", lambda: heldout_set(data.validation, r.seed,
                                                                                r.heldout_lines),
                  None if args.dry_run else cache)
    data_s = time.perf_counter() - t0
    x, y = training_crops(crops, r.head)
    hard = None
    if args.hard:
        sets = []
        for name in args.hard:
            with np.load(name) as f:
                sets.append(CropSet(f["context"], f["clean"], f["labels"]))
        hard = training_crops(CropSet.join(sets), r.head)
        log.info("hard crops: %d from %s, %.0f%% of each batch", len(hard[1]), ", ".join(args.hard),
                 100 * r.hard_share)
    log.info("crops: %d for the %s head (%d made, %.1f%% not one digit), %d held out; %.0f s", len(y), r.head,
             len(crops), 100 * (crops.labels == NOT_ONE).mean(), len(held), data_s)
    if args.prepare_only:
        return 0

    bf16 = use_bf16("auto", torch.device("cpu"))
    model = start_model(r.head, r.dropout, args.init)
    before = held_out_scores(model, held, data.validation, r.head, bf16) if r.head == "digits" else None
    if before:
        log.info("before (%s): %s", args.init, json.dumps({k: round(v, 4) for k, v in before.items()}))
    t1 = time.perf_counter()
    model, history = fit(model, x, y, data.train, r,
                         lambda m: held_out_scores(m, held, data.validation, r.head, bf16), not args.no_progress, hard)
    train_s = time.perf_counter() - t1
    chosen = max(history, key=lambda h: h["select"])
    out.parent.mkdir(parents=True, exist_ok=True)
    weights_path = out.with_suffix(".safetensors")
    meta = {"model_config": asdict(model.cfg), "iterations": chosen["step"], "preset": "photo", "seed": r.seed,
            "dataset": "mnist", "init": args.init}
    save_checkpoint(weights_path, model.to(memory_format=torch.contiguous_format), meta)
    command = " ".join(["python", *sys.argv])
    extra = {"init": args.init, "chosen_step": chosen["step"], "evaluations": history,
             "weights_sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(),
             "seconds": {"data": round(data_s), "train": round(train_s)},
             "environment": {"torch": torch.__version__, "python": platform.python_version(),
                             "cpu": platform.processor() or platform.machine(), "threads": args.threads,
                             "bf16": bf16, "load_average": round(os.getloadavg()[0], 2)}}
    if r.head == "digits":
        extra |= {"heldout_photo_crops": {**chosen, "lines": r.heldout_lines}, "heldout_before": before,
                  "recipe": asdict(r),
                  "note": f"`{args.init}` fine-tuned on Reader-framed photo crops of MNIST training-split "
                          "digits mixed with augmented MNIST training images; weights chosen on the validation "
                          "split (photo crops + images)"}
        card = digits_card(weights_path, data, command, extra)
    else:
        held_scores = {k: v for k, v in chosen.items() if k not in ("step", "seconds", "select")}
        card = reader_card(weights_path, model, data.validation, r, held_scores, command, extra)
    out.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    log.info("wrote %s and its card (%.0f s data, %.0f s training)", weights_path, data_s, train_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
