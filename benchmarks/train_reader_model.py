"""Train the OCR reader's network: 10 digits plus an 11th class, "not one digit", on pipeline-framed crops.

    python benchmarks/train_reader_model.py --out src/digitocr/pretrained/reader --seed 0

Crops are made the way the Reader sees them. Short lines of 1-3 handwritten digits (MNIST's *training*
split only; its first 5,000 images, the validation split, make the held-out set) are set touching or apart,
slanted, rotated and photographed (ink colour, lighting, blur, noise, JPEG); the Reader's own path decodes
the photo at its working scale and finds the ink; `segment.find_glyphs` and `cuts.Lattice` cut it as the
Reader does, and `preprocess.frame_digits` frames every whole glyph and a sample of candidate parts. Each
part is labelled from which digit owns its ink: one digit's ink almost whole and almost alone is that
digit; a pair, half a digit, or a digit with a chunk of its neighbour is "not one digit"; parts in between
are left out. A few crops are MNIST digits as given and digits seen at 8x8 (low resolution).

Writes OUT.safetensors (digitocr checkpoint) and OUT.json (model card: held-out accuracy, the command, the
data checksums, timings). `--check` fails when the held-out accuracy misses its target.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from digitocr.checkpoint import save_checkpoint
from digitocr.config import ModelConfig
from digitocr.constants import DATASETS, IMAGE_SIZE, NUM_CLASSES, PIXEL_MAX
from digitocr.cuts import Lattice
from digitocr.imageio import load_grey
from digitocr.model import build_model
from digitocr.ocr import digit_scale
from digitocr.preprocess import InkMap, frame_digits, frame_parts, ink_map, stroke_width
from digitocr.segment import find_glyphs, line_height
from ocr_fixtures import Style, digit_ink, encode, line_layout, photograph

log = logging.getLogger("train_reader_model")

NOT_ONE = NUM_CLASSES  # class 10: not a single digit
CLASSES = NUM_CLASSES + 1
IGNORE = -1  # crops whose label is ambiguous are not trained on
HELDOUT_STREAM = 1_000_001  # the held-out lines' seed is the run's seed plus this
OWNED = 0.05  # ink where no digit's coverage reaches this is dirt, owned by none


@dataclass(frozen=True)
class Knobs:
    """How training lines are drawn and photographed (uniform ranges unless noted)."""

    digits_weights: tuple[float, float, float] = (0.3, 0.5, 0.2)  # lines of 1, 2, 3 digits
    touch_chance: float = 0.75  # each neighbouring pair touches (else a gap)
    height_px: tuple[float, float] = (20.0, 100.0)  # log-uniform: digit height on the photo
    pen: tuple[float, float] = (0.6, 1.6)
    touch_px: tuple[float, float] = (0.0, 0.08)  # overlap of touching strokes, in heights
    gap: tuple[float, float] = (0.03, 0.4)  # gap between digits that don't touch, in heights
    slant: tuple[float, float] = (-0.2, 0.2)  # extra horizontal shear per row
    rotation_deg: tuple[float, float] = (-10.0, 10.0)
    margin: tuple[float, float] = (0.3, 1.5)  # paper around the line, in heights
    inks: tuple[tuple[str, float], ...] = (("black", 0.5), ("blue", 0.3), ("pencil", 0.2))
    paper: tuple[float, float] = (0.7, 0.97)
    gradient: tuple[float, float] = (0.0, 0.5)
    shadow_chance: float = 0.3
    shadow: tuple[float, float] = (0.2, 0.6)
    blur_px: tuple[float, float] = (0.0, 1.0)  # plus blur_per_height * height
    blur_per_height: tuple[float, float] = (0.0, 0.012)
    noise: tuple[float, float] = (0.0, 0.03)
    jpeg_chance: float = 0.7
    jpeg_quality: tuple[int, int] = (40, 95)
    invert_chance: float = 0.05
    speck_chance: float = 0.2  # a few specks of dirt near the digits
    mnist_share: float = 0.05  # extra crops: MNIST digits as given ...
    lowres_share: float = 0.05  # ... and seen at 8x8, upsampled 4x (bicubic)
    lowres_side: tuple[int, int] = (6, 10)
    negatives: int = 4  # parts that are not one digit, per glyph (beside the whole glyph), and half as many
    # near misses (most of one digit, mostly it)


@dataclass(frozen=True)
class Labelling:
    """One digit's ink almost whole and almost alone is that digit; clearly less or more is not one digit.
    "Almost" allows a share of the ink or a blob a stroke wide (a junction), whichever is more: thin digits
    such as 1 lose or gain a junction's worth of ink at any cut. The band in between is left out; it is
    narrow, because a 9 missing a fifth of its loop is a 7 and must be learnt as not one digit."""

    whole: float = 0.92  # share of the digit's ink in the part
    alone: float = 0.92  # share of the part's ink that is the digit's
    slack: float = 1.0  # or ink missing or foreign up to this many stroke widths squared
    not_whole: float = 0.85  # less than these (and more than 1.5 x the slack) is not one digit
    not_alone: float = 0.85

    def grade(self, mine, total, size, stroke: float) -> tuple[np.ndarray, np.ndarray]:
        """(is one digit, is not one digit) for parts holding `mine` of a digit's `total` ink among `size`."""
        blob = self.slack * stroke**2
        missing, foreign = total - mine, size - mine
        good = (missing <= np.maximum((1 - self.whole) * total, blob)) & \
            (foreign <= np.maximum((1 - self.alone) * size, blob))
        bad = (missing > np.maximum((1 - self.not_whole) * total, 1.5 * blob)) | \
            (foreign > np.maximum((1 - self.not_alone) * size, 1.5 * blob))
        return good, bad


def render_line(rng: np.random.Generator, images: np.ndarray, k: Knobs) -> tuple[np.ndarray, np.ndarray]:
    """A photo of a line of len(images) digits, read as the Reader reads pages -> (ink map (H, W) float32,
    owner (H, W) int8: which digit each ink pixel belongs to, -1 for none)."""
    u = rng.uniform
    height = round(float(np.exp(u(*np.log(k.height_px)))))
    pen = u(*k.pen)
    inks = [_shear(digit_ink(im, height, pen), u(*k.slant)) for im in images]
    touch = tuple(i for i in range(len(images) - 1) if u() < k.touch_chance)
    names, weights = zip(*k.inks, strict=True)
    style = Style(height=height, touch=touch, touch_px=u(*k.touch_px), spacing=u(*k.gap), pen=pen,
                  ink=str(rng.choice(names, p=np.array(weights) / sum(weights))), paper=u(*k.paper),
                  gradient=u(*k.gradient), shadow=u(*k.shadow) if u() < k.shadow_chance else 0.0,
                  blur_px=u(*k.blur_px) + u(*k.blur_per_height) * height, noise=u(*k.noise),
                  jpeg_quality=int(rng.integers(*k.jpeg_quality)) if u() < k.jpeg_chance else None,
                  invert=bool(u() < k.invert_chance))
    xs, tops, (h, w) = line_layout(inks, style, rng)
    pad = round(u(*k.margin) * height)
    layers = np.zeros((len(inks), h + 2 * pad, w + 2 * pad), np.float32)  # (n, H, W) each digit's coverage
    for layer, x, top, ink in zip(layers, xs, tops, inks, strict=True):
        layer[pad + top:pad + top + ink.shape[0], pad + x:pad + x + ink.shape[1]] = ink
    layers = _rotate(layers, u(*k.rotation_deg))
    cover = layers.max(0)
    if u() < k.speck_chance:
        _add_specks(cover, rng, height)
    data = encode(photograph(cover, style, rng), style)
    page = load_grey(data, choose_scale=digit_scale)  # as Reader.read decodes pages
    ink = ink_map(page.pixels).ink
    small = np.stack([cv2.resize(layer, ink.shape[::-1], interpolation=cv2.INTER_AREA) for layer in layers])
    owner = np.where((ink >= 0.5) & (small.max(0) >= OWNED), small.argmax(0), -1).astype(np.int8)
    return ink, owner


def _shear(ink: np.ndarray, s: float) -> np.ndarray:
    h, w = ink.shape
    extra = int(abs(s) * h) + 1
    m = np.array([[1, -s, extra / 2 + s * h / 2], [0, 1, 0]], np.float32)
    return cv2.warpAffine(ink, m, (w + extra, h), flags=cv2.INTER_LINEAR)


def _rotate(layers: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate every layer about the centre, growing the canvas so nothing is cut off."""
    _, h, w = layers.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos) + 2, int(h * cos + w * sin) + 2
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return np.stack([cv2.warpAffine(layer, m, (nw, nh), flags=cv2.INTER_LINEAR) for layer in layers])


def _add_specks(cover: np.ndarray, rng: np.random.Generator, height: int) -> None:
    h, w = cover.shape
    for _ in range(int(rng.integers(1, 4))):
        r = max(1, round(rng.uniform(0.02, 0.06) * height))
        cv2.circle(cover, (int(rng.integers(0, w)), int(rng.integers(0, h))), r, 1.0, -1)


def line_crops(ink: np.ndarray, owner: np.ndarray, labels: np.ndarray, lab: Labelling,
               rng: np.random.Generator, negatives: int) -> tuple[list, list[int]]:
    """Every whole glyph, and of the parts the Reader's search may try (cuts of wide glyphs, runs of
    neighbours joined): all that show one digit and `negatives` per glyph that don't, with their labels."""
    totals = np.bincount(owner[owner >= 0].ravel(), minlength=len(labels))  # each digit's ink pixels
    stroke = stroke_width((ink >= 0.5).astype(np.uint8))
    parts = []
    for line in find_glyphs(InkMap(ink, True, 0.5)):
        parts += line
        lat = Lattice(line, line_height(line))  # every glyph may be cut, every neighbour joined
        parts += sample_parts(lat, owner, totals, lab, rng, negatives * len(line), stroke)
    return parts, [label_of(part, owner, totals, labels, lab, stroke) for part in parts]


def label_of(part, owner: np.ndarray, totals: np.ndarray, labels: np.ndarray, lab: Labelling,
             stroke: float) -> int:
    """A part's label (label_part) from the digits that own its ink pixels."""
    x, y, w, h = part.box
    own = owner[y:y + h, x:x + w][part.ink >= 0.5]
    counts = np.bincount(own[own >= 0], minlength=len(labels))
    return label_part(counts, totals, own.size, labels, lab, stroke)


def sample_parts(lat: Lattice, owner: np.ndarray, totals: np.ndarray, lab: Labelling, rng: np.random.Generator,
                 negatives: int, stroke: float) -> list:
    """Parts of a lattice other than whole glyphs: those whose ink is one whole digit's, `negatives` // 2
    of the nearest misses (most of one digit, mostly it, but not one digit) and `negatives` others."""
    left = []  # per glyph, (D, boundaries): each digit's ink left of each of the glyph's boundaries
    for g, bounds in zip(lat.glyphs, lat.bounds, strict=True):
        x, y, w, h = g.box
        own = np.where(g.ink >= 0.5, owner[y:y + h, x:x + w], -1)  # (h, w)
        digit_ink = np.stack([own == d for d in range(len(totals))])  # (D, h, w)
        before = np.concatenate([np.zeros((len(totals), h, 1)), np.cumsum(digit_ink, 2)], 2)  # (D, h, w + 1)
        left.append(before[:, np.arange(h)[:, None], np.stack(bounds, 1)].sum(1))
    edges, counts = [], []
    for i in range(lat.end):
        k, a = lat.glyph_of(i)
        for j in lat.successors(i):
            m, b = lat.glyph_of(j)
            if b == 0:
                m, b = m - 1, left[m - 1].shape[1] - 1
            edges.append((i, j))
            if m == k:
                counts.append(np.maximum(left[k][:, b] - left[k][:, a], 0))
            else:
                counts.append(sum(left[n][:, -1] for n in range(k, m + 1)))
    if not edges:
        return []
    counts = np.stack(counts, 1)  # (D, E)
    main = counts.argmax(0)
    mine = counts[main, np.arange(len(edges))]
    size = counts.sum(0)
    is_good, is_bad = lab.grade(mine, totals[main], size, stroke)
    is_near = is_bad & (mine >= 0.5 * totals[main]) & (mine >= 0.5 * size)
    near = np.flatnonzero(is_near)
    error = (totals[main] - mine + size - mine)[near] / np.maximum(totals[main][near], 1)
    picked = [edges[e] for e in np.flatnonzero(is_good)]
    picked += [edges[e] for e in near[np.argsort(error, kind="stable")][:negatives // 2]]  # the nearest misses
    picked += [edges[e] for e in rng.permutation(np.flatnonzero(is_bad & ~is_near))[:negatives]]
    return [part for part in (lat.part(i, j) for i, j in picked) if part is not None]


def label_part(counts: np.ndarray, totals: np.ndarray, size: int, labels: np.ndarray, lab: Labelling,
               stroke: float) -> int:
    """The digit a part shows, NOT_ONE, or IGNORE when it is in between."""
    main = int(np.argmax(counts))
    good, bad = lab.grade(int(counts[main]), int(totals[main]), size, stroke)
    return int(labels[main]) if good else NOT_ONE if bad else IGNORE


def lowres(image: np.ndarray, rng: np.random.Generator, k: Knobs) -> np.ndarray:
    """An MNIST digit as an 8x8 scan would hold it, upsampled 4x (bicubic) like the optdigits benchmark."""
    side = int(rng.integers(*k.lowres_side, endpoint=True))
    g = image.astype(np.float32) / PIXEL_MAX
    ys, xs = np.nonzero(g > 0.1)
    g = g[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    small = cv2.resize(g, (side, side), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (4 * side, 4 * side), interpolation=cv2.INTER_CUBIC)
    return np.clip(up * (0.5 / rng.uniform(0.3, 0.6)), 0, 1).astype(np.float32)


@dataclass(frozen=True)
class CropSet:
    """What the Reader's networks see of a set of lines: `context` (N, 28, 28) uint8, each part framed over
    the dimmed ink around it (the verifier's view); `clean` (N, 28, 28) uint8, the part framed alone (the
    classifier's view); `labels` (N,) int64 in 0..10 (10: not one digit). Ambiguous parts are left out."""

    context: np.ndarray
    clean: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def join(sets: list[CropSet]) -> CropSet:
        return CropSet(*(np.concatenate([getattr(s, f) for s in sets]) for f in ("context", "clean", "labels")))


def make_crop_set(images: np.ndarray, labels: np.ndarray, lines: int, seed: int, k: Knobs = Knobs(),
                  lab: Labelling = Labelling(), progress: bool = False) -> CropSet:
    """The crops (in context and alone) and labels of `lines` random lines, deterministically."""
    rng = np.random.default_rng(seed)
    context: list[np.ndarray] = []
    clean: list[np.ndarray] = []
    ys: list[int] = []
    t0 = time.perf_counter()
    for n in range(lines):
        pick = pick_line(rng, len(images), k)
        ink, owner = render_line(rng, images[pick], k)
        parts, part_ys = line_crops(ink, owner, labels[pick], lab, rng, k.negatives)
        alone, around = frame_parts(parts, ink)
        clean.append(alone)
        context.append(around)
        ys += part_ys
        if progress and (n + 1) % 1000 == 0:
            print(f"\r  lines {n + 1}/{lines}  crops {len(ys)}  {time.perf_counter() - t0:.0f}s", end="",
                  file=sys.stderr, flush=True)
    extra = round((k.mnist_share + k.lowres_share) * len(ys))
    pick = rng.integers(0, len(images), extra)
    n_mnist = round(extra * k.mnist_share / (k.mnist_share + k.lowres_share))
    inks = [images[i].astype(np.float32) / PIXEL_MAX for i in pick[:n_mnist]]
    inks += [lowres(images[i], rng, k) for i in pick[n_mnist:]]
    clean.append(frame_digits(inks))  # single digits with nothing around them: the classifier's view ...
    context.append(frame_digits(inks, cores=False))  # ... and the verifier's (thick ones differ: core_mask)
    ys += [int(labels[i]) for i in pick]
    if progress:
        print(file=sys.stderr)
    return pack_crops(context, clean, ys)


def pick_line(rng: np.random.Generator, n_images: int, k: Knobs) -> np.ndarray:
    """Indices of the digits of one random line (1 to len(k.digits_weights) of them)."""
    count = int(rng.choice(len(k.digits_weights), p=np.array(k.digits_weights) / sum(k.digits_weights))) + 1
    return rng.integers(0, n_images, count)


def pack_crops(context: list[np.ndarray], clean: list[np.ndarray], ys: list[int]) -> CropSet:
    """Batches of framed crops (float, [0, 1]) and their labels as one uint8 CropSet, ambiguous ones left out."""
    y = np.array(ys, np.int64)
    keep = y != IGNORE
    if not keep.any():
        empty = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        return CropSet(empty, empty, y[keep])
    as_bytes = [np.round(np.concatenate(c)[keep] * PIXEL_MAX).astype(np.uint8) for c in (context, clean)]
    return CropSet(as_bytes[0], as_bytes[1], y[keep])


def make_crops(images: np.ndarray, labels: np.ndarray, lines: int, seed: int, k: Knobs = Knobs(),
               lab: Labelling = Labelling(), progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(crops in context (N, 28, 28) uint8, labels (N,) int64 in 0..10) from `lines` random lines,
    deterministically: what the Reader's verifier sees."""
    s = make_crop_set(images, labels, lines, seed, k, lab, progress)
    return s.context, s.labels


# --- training ---


@dataclass(frozen=True)
class Recipe:
    lines: int = 20_000  # training lines (each gives ~12 crops)
    heldout_lines: int = 1_500
    quick_lines: int = 300  # the first lines of the held-out set: the test suite regenerates these
    epochs: float = 3.0
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.02
    seed: int = 0


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first 10%, then cosine down to 1% of the peak."""
    warm = max(1, total // 10)
    if step < warm:
        return peak * (0.1 + 0.9 * step / warm)
    t = (step - warm) / max(1, total - warm)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def fit(x: np.ndarray, y: np.ndarray, r: Recipe, progress: bool = True) -> torch.nn.Module:
    """Train the seed-size network (11 outputs) on framed crops; returns it in eval mode."""
    torch.manual_seed(r.seed)
    model = build_model(ModelConfig(arch="seed", init="default", num_classes=CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    xt = torch.from_numpy(x)  # (N, 28, 28) uint8
    yt = torch.from_numpy(y)
    steps_per_epoch = math.ceil(len(y) / r.batch_size)
    total = int(r.epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(r.seed)
    order = torch.randperm(len(y), generator=g)
    t0 = time.perf_counter()
    model.train()
    for step in range(total):
        at = (step % steps_per_epoch) * r.batch_size
        if step and at == 0:
            order = torch.randperm(len(y), generator=g)
        idx = order[at:at + r.batch_size]
        xb = xt[idx].unsqueeze(1).float() / PIXEL_MAX  # (B, 1, 28, 28)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, r.lr)
        loss = F.cross_entropy(model(xb), yt[idx], label_smoothing=r.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and (step % 50 == 0 or step == total - 1):
            print(f"\r  step {step + 1}/{total}  loss {loss.item():.3f}  {time.perf_counter() - t0:.0f}s", end="",
                  file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return model.eval()


@torch.inference_mode()
def predict(model: torch.nn.Module, x: np.ndarray, batch: int = 2048) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 11) probabilities."""
    out = [torch.softmax(model(torch.from_numpy(x[i:i + batch]).unsqueeze(1).float() / PIXEL_MAX), 1)
           for i in range(0, len(x), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, CLASSES), np.float32)


def scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy over 11 classes; on single digits: digit accuracy and false rejects; on the rest: rejects."""
    pred = probs.argmax(1)
    one = y != NOT_ONE
    digit_pred = probs[:, :NUM_CLASSES].argmax(1)
    return {"n": len(y), "accuracy": float((pred == y).mean()),
            "digit_accuracy": float((digit_pred[one] == y[one]).mean()),
            "false_reject": float((pred[one] == NOT_ONE).mean()),
            "reject_recall": float((pred[~one] == NOT_ONE).mean()), "not_one_share": float((~one).mean())}


def data_checksums() -> dict[str, str]:
    mnist = DATASETS["mnist"]["sha256"]
    return {name: mnist[name] for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")}


def heldout(validation, seed: int, lines: int) -> tuple[np.ndarray, np.ndarray]:
    """The held-out crops: lines drawn from MNIST's validation split (never trained on), fixed seed."""
    s = heldout_set(validation, seed, lines)
    return s.context, s.labels


def heldout_set(validation, seed: int, lines: int) -> CropSet:
    """heldout()'s crops in both views."""
    return make_crop_set(validation.images, validation.labels, lines, seed=seed + HELDOUT_STREAM)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="src/digitocr/pretrained/reader",
                   help="output path without suffix (default: src/digitocr/pretrained/reader)")
    p.add_argument("--seed", type=int, default=0, help="random seed for data and training (default: 0)")
    p.add_argument("--lines", type=int, default=Recipe.lines, help=f"training lines (default: {Recipe.lines})")
    p.add_argument("--epochs", type=float, default=Recipe.epochs, help=f"(default: {Recipe.epochs})")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--target", type=float, default=0.97,
                   help="minimum held-out 11-class accuracy for --check (default: 0.97)")
    p.add_argument("--check", action="store_true", help="exit 1 when the target is missed (default: off)")
    p.add_argument("--dry-run", action="store_true", help="tiny data and one epoch, to test the path")
    p.add_argument("--no-progress", action="store_true", help="no status line (default: shown)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from digitocr.data.datasets import load_dataset

    torch.set_num_threads(args.threads)
    r = Recipe(lines=args.lines, epochs=args.epochs, seed=args.seed)
    if args.dry_run:
        r = Recipe(lines=200, heldout_lines=50, quick_lines=20, epochs=1.0, seed=args.seed)
    data = load_dataset("mnist", progress=False)  # train (55,000) and validation (the first 5,000)
    t0 = time.perf_counter()
    x, y = make_crops(data.train.images, data.train.labels, r.lines, r.seed, progress=not args.no_progress)
    hx, hy = heldout(data.validation, r.seed, r.heldout_lines)
    qx, qy = heldout(data.validation, r.seed, r.quick_lines)
    data_s = time.perf_counter() - t0
    log.info("crops: %d training (%.1f%% not one digit), %d held out; %.0f s", len(y), 100 * (y == NOT_ONE).mean(),
             len(hy), data_s)
    t1 = time.perf_counter()
    model = fit(x, y, r, progress=not args.no_progress)
    train_s = time.perf_counter() - t1
    held, quick = scores(predict(model, hx), hy), scores(predict(model, qx), qy)
    log.info("held out: %s", json.dumps({k: round(v, 4) for k, v in held.items()}))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model_config": asdict(model.cfg), "iterations": int(r.epochs * math.ceil(len(y) / r.batch_size)),
            "preset": "reader", "seed": r.seed, "dataset": "mnist"}
    save_checkpoint(out.with_suffix(".safetensors"), model, meta)
    weights = out.with_suffix(".safetensors").read_bytes()
    card = {
        "name": out.name, "classes": [str(d) for d in range(NUM_CLASSES)] + ["not one digit"],
        "architecture": "seed network, 11 outputs", "parameters": sum(p.numel() for p in model.parameters()),
        "trained_on": "pipeline-framed crops of MNIST training-split digits (lines of 1-3, touching or apart)",
        "heldout": {**held, "lines": r.heldout_lines, "source": "MNIST validation split (first 5,000)"},
        "heldout_quick": {**quick, "lines": r.quick_lines},
        "recipe": asdict(r), "knobs": asdict(Knobs()), "labelling": asdict(Labelling()),
        "command": " ".join(["python", *sys.argv]), "data_sha256": data_checksums(),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "seconds": {"data": round(data_s), "train": round(train_s)},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "cpu": platform.processor() or platform.machine(), "threads": args.threads},
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    log.info("wrote %s (%d bytes) and its card", out.with_suffix(".safetensors"), len(weights))
    if args.check and held["accuracy"] < args.target:
        log.error("held-out accuracy %.4f is below the target %.4f", held["accuracy"], args.target)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
