"""One MNIST test digit per image, as users crop them: enlarged to a square crop of each size, evenly lit or
under a lighting gradient, read by the Reader. Prints the share read exactly right per size.

    python benchmarks/crop_sizes.py                 # first 300 test digits, bundled `photo`, one thread
    python benchmarks/crop_sizes.py --n 1000 --model best

The generated OCR set never shows this case (its single digits sit on pages 3-12 digit heights wide): a digit
filling most of its crop, as MNIST's own 20-in-28 framing does, with strokes that fill much of any window.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from digitocr.data.datasets import load_dataset
from digitocr.ocr import Reader

SIDES = (28, 56, 70, 84, 112, 168, 280)  # evenly lit
GRADIENT_SIDES = (84, 168, 600, 1200)  # under the gradient below
PAPER = 0.92  # the paper's brightness where the light is full
SHADE = (0.3, 0.15)  # the light falls by this much across (left to right) and down (top to bottom)


def gradient(side: int) -> np.ndarray:
    """(side, side) lighting: 1 at the top left, 1 - SHADE[0] at the right, 1 - SHADE[1] at the bottom."""
    across = np.linspace(1.0, 1.0 - SHADE[0], side, dtype=np.float32)[None, :]
    down = np.linspace(1.0, 1.0 - SHADE[1], side, dtype=np.float32)[:, None]
    return across * down


def read_share(reader: Reader, images: np.ndarray, labels: np.ndarray, side: int, lit: bool) -> float:
    light = PAPER * gradient(side) if lit else 1.0
    right = 0
    for x, y in zip(images, labels, strict=True):
        page = cv2.resize(255 - x, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255 * light
        right += reader.read(page).text == str(y)
    return right / len(labels)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=300, help="first N MNIST test digits (default: 300)")
    p.add_argument("--model", default="photo", help="classifier, as `read --model` (default: photo)")
    args = p.parse_args()
    torch.set_num_threads(1)
    test = load_dataset("mnist", progress=False).test
    images, labels = test.images[:args.n], test.labels[:args.n]
    reader = Reader(args.model)
    print(f"{args.n} MNIST test digits, `{args.model}`: share read exactly right")
    print("| evenly lit, side | " + " | ".join(map(str, SIDES)) + " |")
    print("| | " + " | ".join(f"{read_share(reader, images, labels, s, False):.1%}" for s in SIDES) + " |")
    print("| gradient, side | " + " | ".join(map(str, GRADIENT_SIDES)) + " |")
    print("| | " + " | ".join(f"{read_share(reader, images, labels, s, True):.1%}" for s in GRADIENT_SIDES) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
