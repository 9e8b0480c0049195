"""Which of make_ocr_set's knobs make the Reader misread, on many more pages than a test set holds.

    python benchmarks/ocr_factors.py --pages 3000 --seed 101 --split validation --out /tmp/f_val.json
    python benchmarks/ocr_factors.py --pages 3000 --seed 104 --split test --out /tmp/f_test.json
    python benchmarks/ocr_factors.py --compare /tmp/f_old.json /tmp/f_new.json   # same pages, two versions

Generates --pages images of one category with make_ocr_set's style ranges, written by MNIST writers of
--split (`validation`, the first 5,000 training images, which no bundled network trained on; or `test`), and
reads each one. Prints the exact-match rate, the misread pages by kind (digits substituted, a digit extra or
missing, the layout only) and, over the digits of pages read with the right number of digits, the
substitution rate, split into digits that the classifier also misreads as MNIST gave them (framed already,
clean: hard writers) and the rest (what the photo did), the rest by knob. --out keeps every
page (text, reading, style, MNIST indices) so that --compare can count the pages two versions read differently.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_ocr_set import Knobs, make_case
from ocr_accuracy import set_constants
from ocr_fixtures import image_indices, make_image

# (knob, bin edges) for the table; "rotation" is its size either way, JPEG quality 0 means PNG
BINS = {"height": [24, 32, 40, 56, 80, 120, 201], "pen": [0.6, 0.8, 1.0, 1.2, 1.4, 1.61],
        "blur_px": [0, 0.5, 1.0, 1.5, 2.0, 3.5], "rotation": [0, 3, 6, 10.01], "jpeg_quality": [0, 1, 50, 70, 96],
        "noise": [0, 0.01, 0.02, 0.031]}
MNIST_BATCH = 500


def knob(style: dict, name: str) -> float:
    if name == "rotation":
        return abs(style[name])
    if name == "jpeg_quality":
        return style[name] or 0
    return style[name]


def read_pages(args) -> list[dict]:
    """Generate and read the pages; one row each."""
    from digitocr.classifier import load_classifier
    from digitocr.data.datasets import load_dataset
    from digitocr.ocr import Reader

    split = getattr(load_dataset("mnist", progress=False), args.split)
    clean = load_classifier(args.model)  # the classifier on MNIST's own 28x28 images
    x = split.images.astype(np.float32) / 255
    clean_pred = np.concatenate([clean(x[i:i + MNIST_BATCH]).argmax(1) for i in range(0, len(x), MNIST_BATCH)])
    reader = Reader(args.model, verifier=None if args.verifier == "none" else args.verifier,
                    second=None if args.second == "none" else args.second)
    rng, knobs, rows = np.random.default_rng(args.seed), Knobs(), []
    for i in range(args.pages):
        text, style = make_case(args.category, rng, knobs, seed=args.seed * 1_000_000 + i)
        index = [i for line in image_indices(text, style, split.labels) for i in line]  # make_image's writers
        reading = reader.read(make_image(text, style, split.images, split.labels)).text
        rows.append({"text": text, "read": reading, "style": asdict(style), "mnist": index,
                     "clean_right": [bool(clean_pred[j] == split.labels[j]) for j in index]})
    return rows


def bare(text: str) -> str:
    """The digits alone: line breaks and spaces are layout."""
    return text.replace("\n", "").replace(" ", "")


def error_kinds(rows: list[dict]) -> dict[str, int]:
    """Misread pages by what went wrong: digits substituted (as many as written), a digit extra or missing
    (segmentation: a piece read as a digit, touching digits read as one), or only the layout (spaces, lines)."""
    kinds = {"substituted": 0, "extra digit": 0, "missing digit": 0, "layout only": 0}
    for row in rows:
        if row["text"] == row["read"]:
            continue
        text, read = bare(row["text"]), bare(row["read"])
        kind = ("layout only" if text == read else "substituted" if len(text) == len(read)
                else "extra digit" if len(read) > len(text) else "missing digit")
        kinds[kind] += 1
    return kinds


def digit_table(rows: list[dict]) -> list[str]:
    """Substitutions per digit, over pages read with as many digits as they have."""
    digits = [(row["style"], t != r, ok) for row in rows if len(bare(row["read"])) == len(bare(row["text"]))
              for t, r, ok in zip(bare(row["text"]), bare(row["read"]), row["clean_right"], strict=True)]
    wrong = np.array([w for _, w, _ in digits], bool)
    right_clean = np.array([ok for _, _, ok in digits], bool)
    out = [f"digits on pages read with the right count: {len(digits)}, misread {wrong.sum()} "
           f"({wrong.mean():.3%}); misread clean too (hard writers): {np.sum(wrong & ~right_clean)} of "
           f"{np.sum(~right_clean)}; the rest: {np.sum(wrong & right_clean)} ({np.mean(wrong[right_clean]):.3%})",
           "", "| knob | range | digits | misread (clean ones right) | rate |", "|---|---|---:|---:|---:|"]
    for name, edges in BINS.items():
        values = np.array([knob(style, name) for style, _, _ in digits])
        for lo, hi in itertools.pairwise(edges):
            m = (values >= lo) & (values < hi) & right_clean
            if m.any():
                out.append(f"| {name} | [{lo}, {hi}) | {m.sum()} | {np.sum(wrong & m)} | {np.mean(wrong[m]):.3%} |")
    return out


def compare(a: list[dict], b: list[dict]) -> str:
    if [r["text"] for r in a] != [r["text"] for r in b]:
        raise SystemExit("--compare: the two files hold different pages (another --seed, --pages or --category)")
    ok_a = [r["text"] == r["read"] for r in a]
    ok_b = [r["text"] == r["read"] for r in b]
    fixed = sum(not x and y for x, y in zip(ok_a, ok_b, strict=True))
    broken = sum(x and not y for x, y in zip(ok_a, ok_b, strict=True))
    return (f"pages {len(a)}: read right {sum(ok_a)} -> {sum(ok_b)}; {fixed} newly right, {broken} newly wrong")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=1000, help="pages to generate and read (default: 1000)")
    p.add_argument("--seed", type=int, default=101, help="random seed (default: 101; make_ocr_set's are 1-3)")
    p.add_argument("--category", default="number", help="a make_ocr_set category (default: number)")
    p.add_argument("--split", choices=("validation", "test"), default="validation",
                   help="whose writers: MNIST's validation or test split (default: validation)")
    p.add_argument("--model", default="photo", help="classifier (default: photo)")
    p.add_argument("--verifier", default="reader", help="verifier, or 'none' (default: reader)")
    p.add_argument("--second", default="auto", help="network asked about unsure digits, or 'none' (default: auto)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--constant", action="append", default=[], metavar="NAME=VALUE",
                   help="set a reader constant before reading, as ocr_accuracy.py does; repeatable (default: none)")
    p.add_argument("--out", default=None, help="write every page's row to this JSON file (default: none)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                   help="count the pages that two --out files of the same pages read differently, and stop")
    args = p.parse_args()
    if args.compare:
        print(compare(*(json.loads(Path(f).read_text()) for f in args.compare)))
        return 0
    torch.set_num_threads(args.threads)
    set_constants(args.constant)
    t0 = time.perf_counter()
    rows = read_pages(args)
    seconds = time.perf_counter() - t0
    if args.out:
        Path(args.out).write_text(json.dumps(rows))
    exact = np.mean([r["text"] == r["read"] for r in rows])
    print(f"{args.pages} {args.category} pages, MNIST {args.split} writers, seed {args.seed}: exact match "
          f"{exact:.2%} ({sum(r['text'] != r['read'] for r in rows)} misread), {seconds:.0f} s")
    print("misread pages by kind: " + ", ".join(f"{kind} {n}" for kind, n in error_kinds(rows).items()))
    print("\n".join(digit_table(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
