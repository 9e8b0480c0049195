"""Reader: load a classifier once, then read digits and numbers from photos, scans, screenshots, drawings.

    from digitocr import Reader
    result = Reader("best").read("meter.jpg")
    result.text, result.digits, result.to_dict()

The pipeline (one for CLI, API and web page): decode (imageio) -> ink map (preprocess) -> glyphs in lines
(segment) -> each glyph framed as MNIST and verified -> wide glyphs that may be touching digits cut into
candidate parts, verified in one batch, the best cuts chosen by dynamic programming -> classify -> text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .constants import IMAGE_SIZE, NUM_CLASSES
from .imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, GreyImage, ImageInput, load_grey
from .preprocess import frame_digit, frame_digits, ink_map
from .segment import Glyph, best_path, edge_scores, find_glyphs, lattice, line_height, may_touch, spaces_before

WORK_PIXELS = 4_000_000  # larger images are read at this size: digits stay >= 10 px tall on a 20 MP page
COARSE_SIDE = 256  # a first look at this size estimates the digits' height ...
TARGET_HEIGHT = 40  # ... and pages whose digits are taller are read at the scale that makes them this tall
DEFAULT_MIN_CONFIDENCE = 0.0  # digits below it read as "?"; 0 trusts every answer
LOW_CONFIDENCE_MARK = "?"
LINE_SEPARATOR = "\n"
VERIFIER = "reader"  # the bundled network that knows what is not one digit (benchmarks/train_reader_model.py)
ACCEPT_SINGLE = 0.98  # a glyph the verifier finds this surely one digit ...
ACCEPT_ASPECT = 1.0  # ... and no wider than this many line heights is not cut


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
    probabilities: np.ndarray | None = field(default=None, repr=False)  # (N, 10) the classifier's answers

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "text": self.text, "digits": [d.to_dict() for d in self.digits]}


class Reader:
    """Reads digits from images with one classifier, loaded once.

    `model` is a model spec (a bundled name such as "best", a run folder or a checkpoint file) or a ready
    classifier: any callable taking (N, 28, 28) float32 crops to (N, 10) probabilities. `verifier` (default:
    the bundled "reader" network) scores candidate parts of touching digits: a model spec or callable whose
    11th output is "not one digit"; None lets the classifier's confidence score them instead.
    """

    def __init__(self, model: Any = "best", backend: str = "torch",
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES, work_pixels: int = WORK_PIXELS, verifier: Any = VERIFIER):
        from .registry import bundled_models

        raw = _load(model, backend)
        if verifier == model and isinstance(model, str | Path):
            verifier = raw  # one network both verifies and reads
        elif isinstance(verifier, str | Path):
            verifier = _load(verifier, "torch") if verifier != VERIFIER or VERIFIER in bundled_models() else None
        self.classifier = DigitsOnly(raw) if outputs(raw) > NUM_CLASSES else raw
        self.verifier = verifier
        self._reads_with_verifier = verifier is raw
        self.min_confidence = min_confidence
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.work_pixels = work_pixels

    def __repr__(self) -> str:
        return (f"Reader({self.classifier!r}, verifier={self.verifier!r}, min_confidence={self.min_confidence}, "
                f"max_pixels={self.max_pixels})")

    def load(self, image: ImageInput, name: str | None = None) -> GreyImage:
        return load_grey(image, name, self.max_pixels, self.max_bytes, self.work_pixels)

    def read(self, image: ImageInput, name: str | None = None, *, debug: bool = False) -> ReadResult:
        """Read every digit in an image (path, encoded bytes or array); a blank image gives empty text."""
        page = reduce_to_digit_height(self.load(image, name))
        lines, probs, crops = self.segment_and_classify(find_glyphs(ink_map(page.pixels)))
        file = name if name is not None else str(image) if isinstance(image, str | os.PathLike) else None
        return self.assemble(page, lines, probs, crops, file, debug)

    def classify(self, image: ImageInput, name: str | None = None) -> np.ndarray:
        """One digit image (any size or polarity) -> (10,) probabilities; all its ink is taken as one digit."""
        page = self.load(image, name)
        glyphs = [g for line in find_glyphs(ink_map(page.pixels)) for g in line]
        crop = frame_digit(_paste(glyphs, page.pixels.shape))
        return self.classifier(crop[None])[0]

    def verify(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(P(one digit) (N,), the verifier's digit probabilities (N, 10) or None) for framed crops."""
        if self.verifier is None:
            probs = self.classifier(crops) if len(crops) else np.zeros((0, NUM_CLASSES), np.float32)
            return probs.max(1), None
        if not len(crops):
            return np.zeros(0, np.float32), np.zeros((0, NUM_CLASSES), np.float32)
        digits, single = split_probs(self.verifier(crops))
        return single, digits

    def segment_and_classify(self, lines: list[list[Glyph]]) -> tuple[list[list[Glyph]], np.ndarray, np.ndarray]:
        """Choose how to cut each glyph (touching digits) and classify the chosen parts.

        Every glyph is first framed and verified whole; wide glyphs that are not surely one digit get a
        lattice of candidate cuts, all of whose parts are verified in one more call. Returns the lines of
        chosen glyphs, their digit probabilities (N, 10) and their crops (N, 28, 28).
        """
        heights = [line_height(line) for line in lines]
        glyphs = [(g, h) for line, h in zip(lines, heights, strict=True) for g in line]
        whole = frame_digits([g.ink for g, _ in glyphs])  # (G, 28, 28)
        single, digits = self.verify(whole)
        lats = [lattice(g, h) if self.may_split(g, h, single[k]) else None for k, (g, h) in enumerate(glyphs)]
        parts = [p for lat in lats if lat is not None for p in lat.parts[1:]]
        part_crops = frame_digits([p.ink for p in parts])  # (P, 28, 28)
        part_single, part_digits = self.verify(part_crops)
        at, chosen, crops, verified = 0, [], [], []
        for k, lat in enumerate(lats):
            if lat is None:
                chosen.append([glyphs[k][0]])
                crops.append(whole[k:k + 1])
                verified.append(None if digits is None else digits[k:k + 1])
                continue
            n = len(lat.parts) - 1
            p_one = np.concatenate([single[k:k + 1], part_single[at:at + n]])
            path = best_path(lat, edge_scores(lat, p_one, glyphs[k][1]))
            pick = [e - 1 + at for e in path if e > 0]
            chosen.append([lat.parts[e] for e in path])
            crops.append(whole[k:k + 1] if path == [0] else part_crops[pick])
            if digits is not None:
                verified.append(digits[k:k + 1] if path == [0] else part_digits[pick])
            at += n
        crops_all = np.concatenate(crops) if crops else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        if self._reads_with_verifier:
            probs = np.concatenate(verified) if verified else np.zeros((0, NUM_CLASSES), np.float32)
        else:
            probs = self.classifier(crops_all) if len(crops_all) else np.zeros((0, NUM_CLASSES), np.float32)
        out, i = [], 0
        for line in lines:
            out.append([g for parts_of in chosen[i:i + len(line)] for g in parts_of])
            i += len(line)
        return out, probs, crops_all

    def may_split(self, glyph: Glyph, height: float, p_single: float) -> bool:
        """Wide glyphs may be touching digits, unless the verifier is sure this one is a single digit."""
        if not may_touch(glyph, height):
            return False
        sure = self.verifier is not None and p_single >= ACCEPT_SINGLE and glyph.box[2] <= ACCEPT_ASPECT * height
        return not sure

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
        return ReadResult(file, LINE_SEPARATOR.join(text_lines), digits, crops, page if debug else None, probs)

    def make_digit(self, glyph: Glyph, dist: np.ndarray, line: int, scale: float) -> Digit:
        k = int(np.argmax(dist))
        confidence = float(dist[k])
        x, y, w, h = (v / scale for v in glyph.box)
        box = (round(x), round(y), max(1, round(w)), max(1, round(h)))
        return Digit(k, confidence, box, line, confidence < self.min_confidence)


class DigitsOnly:
    """An (N, 11) reader network behind the classifier contract: (N, 10) digit probabilities."""

    def __init__(self, inner: Any):
        self.inner = inner

    @property
    def name(self) -> str:
        return str(getattr(self.inner, "name", "reader"))

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return split_probs(self.inner(crops))[0]

    def __repr__(self) -> str:
        return f"DigitsOnly({self.inner!r})"


def split_probs(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 11) probabilities -> (digit probabilities given one digit (N, 10), P(one digit) (N,))."""
    single = np.clip(1.0 - probs[:, NUM_CLASSES:].sum(1), 0.0, 1.0)
    digits = probs[:, :NUM_CLASSES] / np.maximum(probs[:, :NUM_CLASSES].sum(1, keepdims=True), 1e-12)
    return digits.astype(np.float32), single.astype(np.float32)


def outputs(classifier: Any) -> int:
    """How many classes a classifier answers with (10 digits, or 11 with "not one digit")."""
    return int(classifier(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), np.float32)).shape[1])


def _load(model: Any, backend: str) -> Any:
    if isinstance(model, str | Path):
        from .classifier import load_classifier

        return load_classifier(str(model), backend)
    return model


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
