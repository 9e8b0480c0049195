"""Hard examples for the verifier: the parts the Reader's own cut search gets wrong, labelled by ink ownership.

`train_reader_model.make_crop_set` samples a line's candidate parts blindly (every part that is one digit,
plus random and nearly-right non-digits). The search's mistakes are rarer and more specific: a 7 with a
bite of its neighbour's loop that looks like a 2, a merged "77" that the verifier calls one digit. This
renders lines of MNIST *training*-split digits the same way (mostly touching pairs and triples), reads each
with a Reader (its classifier and verifier), and for every line it misreads keeps

- the parts the search chose, labelled from which digit owns their ink (a digit, or "not one digit"), and
- the parts that are exactly one digit (what the search should have chosen),

framed as the verifier sees them (in context) and alone. The result is a CropSet that
`train_photo_model.py --hard FILE` mixes into the verifier's batches.

    python benchmarks/hard_parts.py --lines 8000 --seed 5 --out /tmp/hard-s5.npz
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from train_reader_model import (
    NOT_ONE,
    CropSet,
    Knobs,
    Labelling,
    label_of,
    pack_crops,
    pick_line,
    render_line,
    sample_parts,
)

log = logging.getLogger("hard_parts")

# Lines worth mining are those with touching digits: mostly pairs and triples, nearly always touching.
MINING_KNOBS = replace(Knobs(), digits_weights=(0.1, 0.5, 0.4), touch_chance=0.9, speck_chance=0.1)
LABELLING = Labelling()
CHUNK_STREAM = 9_973  # chunk c of a run with seed s uses seed s * CHUNK_STREAM + c

_WORK: dict = {}  # what forked workers share: images, labels, the reader's specs


def mine_line(reader, ink: np.ndarray, owner: np.ndarray, labels: np.ndarray, lab: Labelling,
              stroke: float) -> tuple[list, list[int], bool]:
    """(parts, their labels, whether the reader misread the line) for one rendered line."""
    from digitocr.cuts import Lattice
    from digitocr.preprocess import InkMap
    from digitocr.segment import find_glyphs, line_height

    lines = find_glyphs(InkMap(ink, True, 0.5))
    chosen, probs, _ = reader.segment_and_classify(lines, ink)
    if [int(d) for d in probs.argmax(1)] == [int(d) for d in labels]:
        return [], [], False
    totals = np.bincount(owner[owner >= 0].ravel(), minlength=len(labels))
    parts = [g for line in chosen for g in line]  # what the search chose
    rng = np.random.default_rng(0)  # with no negatives asked for, sample_parts keeps nothing it draws
    for line in lines:  # the parts that are exactly one digit (the search's right answers), and whole glyphs
        parts += sample_parts(Lattice(line, line_height(line)), owner, totals, lab, rng, 0, stroke) + line
    return parts, [label_of(g, owner, totals, labels, lab, stroke) for g in parts], True


def mine(images: np.ndarray, labels: np.ndarray, lines: int, seed: int, classifier: str, verifier: str,
         k: Knobs = MINING_KNOBS, lab: Labelling = LABELLING) -> tuple[CropSet, int]:
    """(the hard parts of `lines` random lines, how many lines were misread), deterministically."""
    import torch

    from digitocr.ocr import Reader
    from digitocr.preprocess import frame_parts, stroke_width

    torch.set_num_threads(1)
    reader = Reader(classifier, verifier=verifier)
    rng = np.random.default_rng(seed)
    context, clean, ys, misread = [], [], [], 0
    for _ in range(lines):
        pick = pick_line(rng, len(images), k)
        ink, owner = render_line(rng, images[pick], k)
        stroke = stroke_width((ink >= 0.5).astype(np.uint8))
        parts, part_ys, wrong = mine_line(reader, ink, owner, labels[pick], lab, stroke)
        misread += wrong
        if parts:
            alone, around = frame_parts(parts, ink)
            clean.append(alone)
            context.append(around)
            ys += part_ys
    return pack_crops(context, clean, ys), misread


def _chunk(job: tuple[int, int]) -> tuple[CropSet, int]:
    import cv2

    cv2.setNumThreads(1)
    lines, seed = job
    return mine(_WORK["images"], _WORK["labels"], lines, seed, _WORK["classifier"], _WORK["verifier"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=8000, help="lines to render and read (default: 8000)")
    p.add_argument("--seed", type=int, default=5, help="random seed (default: 5; the crop sets use 0)")
    p.add_argument("--model", default="photo", help="the Reader's classifier (default: photo)")
    p.add_argument("--verifier", default="reader", help="the Reader's verifier (default: reader)")
    p.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    p.add_argument("--chunks", type=int, default=8, help="fixed chunks, whatever the workers (default: 8)")
    p.add_argument("--out", required=True, help="output .npz (context, clean, labels)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from digitocr.data.datasets import load_dataset

    data = load_dataset("mnist", progress=False)
    _WORK.update(images=data.train.images, labels=data.train.labels, classifier=args.model,
                 verifier=args.verifier)
    base, extra = divmod(args.lines, args.chunks)
    jobs = [(base + (c < extra), args.seed * CHUNK_STREAM + c) for c in range(args.chunks)]
    t0 = time.perf_counter()
    if args.workers > 1:
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            results = pool.map(_chunk, jobs, chunksize=1)
    else:
        results = [_chunk(job) for job in jobs]
    crops = CropSet.join([c for c, _ in results])
    misread = sum(m for _, m in results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, context=crops.context, clean=crops.clean, labels=crops.labels)
    log.info("%d of %d lines misread (%.1f%%); %d hard parts (%.0f%% not one digit) -> %s in %.0f s", misread,
             args.lines, 100 * misread / max(args.lines, 1), len(crops), 100 * (crops.labels == NOT_ONE).mean(),
             out, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
