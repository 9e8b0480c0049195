"""Two checks on lifting printed rules (rules.py) that the generated sets do not make.

    python benchmarks/rules_checks.py tight --pages 150 --seed 5   # numbers cropped to their ink
    python benchmarks/rules_checks.py grid --side 2000 --pitch 10 --angle 3

`tight`: numbers of 2-8 MNIST test digits cropped to their ink (margins 0-0.1 digit heights, half of them
with every pair touching), where rows through the digits and the stems of 1s run from border to border. It
counts the pages whose ink lift_rules changes, and reads those with and without lifting.
`grid`: the time and traced peak memory of lift_rules on a squared grid with a few loops drawn on it.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ocr_fixtures import Style, make_image, mnist_test

TIGHT_MARGINS = (0.0, 0.02, 0.05, 0.1)  # digit heights
TIGHT_HEIGHTS = (40, 48, 56)  # px
TIGHT_PENS = (0.8, 1.6)
WRITERS = 3000  # the first MNIST test images the pages are written with
LOOPS = 10  # loops drawn on the grid, as digits would be


def tight(args) -> None:
    import digitocr.ocr as ocr
    from digitocr.preprocess import ink_map

    test = mnist_test()
    images, labels = test.images[:WRITERS], test.labels[:WRITERS]
    reader = ocr.Reader("photo")
    lift = ocr.lift_rules
    rng = np.random.default_rng(args.seed)
    changed = right_with = right_without = broke = fixed = 0
    for i in range(args.pages):
        n = int(rng.integers(2, 9))
        text = "".join(str(d) for d in rng.integers(0, 10, n))
        style = Style(margin=float(rng.choice(TIGHT_MARGINS)), height=int(rng.choice(TIGHT_HEIGHTS)),
                      pen=float(rng.uniform(*TIGHT_PENS)), touch=tuple(range(n - 1)) if rng.random() < 0.5 else (),
                      seed=i)
        data = make_image(text, style, images, labels)
        grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        ink = ink_map(grey)
        if lift(ink) is ink:
            continue
        changed += 1
        with_lifting = reader.read(data).text == text
        ocr.lift_rules = lambda x: x
        try:
            without = reader.read(data).text == text
        finally:
            ocr.lift_rules = lift
        right_with += with_lifting
        right_without += without
        broke += without and not with_lifting
        fixed += with_lifting and not without
    print(f"{args.pages} tight pages (seed {args.seed}): lifting changed the ink of {changed}; of those, read "
          f"right with lifting {right_with}, without {right_without}: {broke} broken, {fixed} fixed by it")


def grid(args) -> None:
    from digitocr.preprocess import InkMap
    from digitocr.rules import lift_rules

    side, pitch = args.side, args.pitch
    page = np.zeros((side, side), np.float32)
    page[5::pitch] = 1.0
    page[:, 5::pitch] = 1.0
    for i in range(LOOPS):
        cv2.ellipse(page, (100 + 50 * i, 100), (12, 20), 0, 0, 360, 1.0, 4)
    if args.angle:
        page = cv2.warpAffine(page, cv2.getRotationMatrix2D((side / 2, side / 2), args.angle, 1.0), (side, side))
    ink = InkMap(page, True, 0.5)
    tracemalloc.start()
    t0 = time.perf_counter()
    out = lift_rules(ink)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"{side}x{side} grid, pitch {pitch} px, turned {args.angle}°: {seconds:.2f} s, traced peak "
          f"{peak / 2**20:.0f} MB; lifted {int(ink.mask.sum() - out.mask.sum()):,} of {int(ink.mask.sum()):,} ink px")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="check", required=True)
    t = sub.add_parser("tight", help="numbers cropped to their ink, read with and without lifting")
    t.add_argument("--pages", type=int, default=150, help="(default: 150)")
    t.add_argument("--seed", type=int, default=5, help="(default: 5)")
    g = sub.add_parser("grid", help="time and memory on a squared grid")
    g.add_argument("--side", type=int, default=2000, help="px (default: 2000)")
    g.add_argument("--pitch", type=int, default=10, help="px between rules (default: 10)")
    g.add_argument("--angle", type=float, default=3.0, help="degrees (default: 3)")
    args = p.parse_args()
    torch.set_num_threads(1)
    (tight if args.check == "tight" else grid)(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
