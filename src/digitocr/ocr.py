"""Reader: load a classifier once, then read digits and numbers from photos, scans, screenshots, drawings.

    from digitocr import Reader
    result = Reader("best").read("meter.jpg")
    result.text, result.digits, result.to_dict()

The pipeline (one for CLI, API and web page): decode (imageio) -> ink map (preprocess) -> glyphs in lines
(segment) -> ways to split wide glyphs -> every candidate framed as MNIST -> one classifier call -> the
best split by confidence -> text.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .constants import NUM_CLASSES
from .imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, GreyImage, ImageInput, load_grey
from .preprocess import frame_digit, frame_digits, ink_map
from .segment import Glyph, choose_split, find_glyphs, line_height, spaces_before, split_options

WORK_PIXELS = 4_000_000  # larger images are read at this size: digits stay >= 10 px tall on a 20 MP page
COARSE_SIDE = 256  # a first look at this size estimates the digits' height ...
TARGET_HEIGHT = 40  # ... and pages whose digits are taller are read at the scale that makes them this tall
DEFAULT_MIN_CONFIDENCE = 0.0  # digits below it read as "?"; 0 trusts every answer
LOW_CONFIDENCE_MARK = "?"
LINE_SEPARATOR = "\n"


@dataclass(frozen=True)
class Digit:
    """One digit read: its class, the classifier's confidence, its box (x, y, w, h) in image pixels, its line."""

    digit: int
    confidence: float
    box: tuple[int, int, int, int]
    line: int
    low_confidence: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"digit": self.digit, "confidence": round(self.confidence, 4),
                             "box": list(self.box), "line": self.line}
        if self.low_confidence:
            d["low_confidence"] = True
        return d


@dataclass
class ReadResult:
    """What one image says: `text` (lines joined by newlines, spaces for wide gaps) and its `digits`."""

    file: str | None
    text: str
    digits: list[Digit]
    crops: np.ndarray = field(repr=False)  # (N, 28, 28) float32: what the network saw, one per digit
    page: GreyImage | None = field(default=None, repr=False)  # the decoded page, kept when debug=True

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "text": self.text, "digits": [d.to_dict() for d in self.digits]}


class Reader:
    """Reads digits from images with one classifier, loaded once.

    `model` is a model spec (a bundled name such as "best", a run folder or a checkpoint file) or a ready
    classifier: any callable taking (N, 28, 28) float32 crops to (N, 10) probabilities.
    """

    def __init__(self, model: Any = "best", backend: str = "torch",
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES, work_pixels: int = WORK_PIXELS):
        if isinstance(model, str | Path):
            from .classifier import load_classifier

            model = load_classifier(str(model), backend)
        self.classifier = model
        self.min_confidence = min_confidence
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.work_pixels = work_pixels

    def __repr__(self) -> str:
        return f"Reader({self.classifier!r}, min_confidence={self.min_confidence}, max_pixels={self.max_pixels})"

    def load(self, image: ImageInput, name: str | None = None) -> GreyImage:
        return load_grey(image, name, self.max_pixels, self.max_bytes, self.work_pixels)

    def read(self, image: ImageInput, name: str | None = None, *, debug: bool = False) -> ReadResult:
        """Read every digit in an image (path, encoded bytes or array); a blank image gives empty text."""
        page = reduce_to_digit_height(self.load(image, name))
        lines, probs, crops = self.resolve_splits(find_glyphs(ink_map(page.pixels)))
        file = name if name is not None else str(image) if isinstance(image, str | os.PathLike) else None
        return self.assemble(page, lines, probs, crops, file, debug)

    def classify(self, image: ImageInput, name: str | None = None) -> np.ndarray:
        """One digit image (any size or polarity) -> (10,) probabilities; all its ink is taken as one digit."""
        page = self.load(image, name)
        glyphs = [g for line in find_glyphs(ink_map(page.pixels)) for g in line]
        crop = frame_digit(_paste(glyphs, page.pixels.shape))
        return self.classifier(crop[None])[0]

    def resolve_splits(self, lines: list[list[Glyph]]) -> tuple[list[list[Glyph]], np.ndarray, np.ndarray]:
        """Frame every way of reading every glyph, classify all in one call, keep the best reading of each.

        Returns the lines of chosen glyphs, their probabilities (N, 10) and their crops (N, 28, 28).
        """
        options = [[split_options(g, line_height(line)) for g in line] for line in lines]
        parts = [p for line in options for glyph_opts in line for opt in glyph_opts for p in opt]
        crops = frame_digits([p.ink for p in parts])  # (P, 28, 28)
        probs = self.classifier(crops) if parts else np.zeros((0, NUM_CLASSES), np.float32)  # (P, 10)
        at, keep, chosen_lines = 0, [], []
        for line, line_opts in zip(lines, options, strict=True):
            chosen = []
            for glyph_opts in line_opts:
                starts = np.cumsum([at] + [len(o) for o in glyph_opts])
                at = int(starts[-1])
                confidences = [probs[a:b].max(1) for a, b in itertools.pairwise(starts)]
                best = choose_split(glyph_opts, confidences, line_height(line))
                chosen += glyph_opts[best]
                keep.extend(range(starts[best], starts[best + 1]))
            chosen_lines.append(chosen)
        return chosen_lines, probs[keep], crops[keep]

    def assemble(self, page: GreyImage, lines: list[list[Glyph]], probs: np.ndarray, crops: np.ndarray,
                 file: str | None, debug: bool) -> ReadResult:
        """Digits with boxes in the original image's pixels, and the text they spell."""
        digits, text_lines = [], []
        for n, line in enumerate(lines):
            chars = []
            for glyph, space in zip(line, spaces_before(line), strict=True):
                digit = self.make_digit(glyph, probs[len(digits)], n, page.scale)
                digits.append(digit)
                mark = LOW_CONFIDENCE_MARK if digit.low_confidence else str(digit.digit)
                chars.append((" " if space else "") + mark)
            text_lines.append("".join(chars))
        return ReadResult(file, LINE_SEPARATOR.join(text_lines), digits, crops, page if debug else None)

    def make_digit(self, glyph: Glyph, dist: np.ndarray, line: int, scale: float) -> Digit:
        k = int(np.argmax(dist))
        confidence = float(dist[k])
        x, y, w, h = (v / scale for v in glyph.box)
        box = (round(x), round(y), max(1, round(w)), max(1, round(h)))
        return Digit(k, confidence, box, line, confidence < self.min_confidence)


def reduce_to_digit_height(page: GreyImage) -> GreyImage:
    """The page at the scale where its digits are about TARGET_HEIGHT px tall (never enlarged).

    Framing needs only 20 px per digit, and every step after it costs in proportion to the pixels.
    """
    h, w = page.pixels.shape
    if max(h, w) <= COARSE_SIDE:
        return page
    f = COARSE_SIDE / max(h, w)
    coarse = cv2.resize(page.pixels, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    heights = [g.box[3] for line in find_glyphs(ink_map(coarse)) for g in line]
    if not heights:
        return page
    scale = TARGET_HEIGHT / (float(np.median(heights)) / f)
    if scale >= 1:
        return page
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return replace(page, pixels=cv2.resize(page.pixels, size, interpolation=cv2.INTER_AREA))


def _paste(glyphs: list[Glyph], shape: tuple[int, int]) -> np.ndarray:
    """All glyphs' ink on one blank page (H, W): the digit classify() frames."""
    page = np.zeros(shape, np.float32)
    for g in glyphs:
        x, y, w, h = g.box
        page[y:y + h, x:x + w] = np.maximum(page[y:y + h, x:x + w], g.ink)
    return page
