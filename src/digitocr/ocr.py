"""Reader: load a classifier once, then read digits and numbers from photos, scans, screenshots, drawings.

    from digitocr import Reader
    result = Reader().read("meter.jpg")  # the bundled "photo" classifier; Reader("best") etc. also work
    result.text, result.digits, result.to_dict()

The pipeline (one for CLI, API and web page): decode at the scale where digits are ~40 px tall (imageio)
-> ink map (preprocess) -> glyphs in lines (segment) -> a page whose lines slope turned level (`level`) ->
pieces of a broken digit that landed on two lines rejoined when the verifier prefers their union -> each
glyph framed as MNIST and verified whole by a network that knows what is not one digit -> glyphs that may be
touching digits (or pieces of a broken one) get candidate cuts (and joins), and the reading that makes every
part most surely one digit is found by a best-first search over them, verified in page-wide batches -> the
chosen parts classified -> text.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, get_args

import cv2
import numpy as np

from .config import Precision
from .constants import DEFAULT_CLASSIFIER as CLASSIFIER
from .constants import DEFAULT_MIN_CONFIDENCE, IMAGE_SIZE, NUM_CLASSES, SECOND_OPINION
from .constants import DEFAULT_SECOND as SECOND
from .constants import DEFAULT_VERIFIER as VERIFIER
from .cuts import MERGE_GAP, Lattice, PathSearch, may_touch, merge_glyphs
from .errors import DigitocrError, NoDigitError
from .imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, GreyImage, ImageInput, load_grey
from .preprocess import InkMap, frame_parts, framings, ink_map, turn
from .rules import lift_rules
from .segment import Glyph, deskew_angle, find_glyphs, line_height, spaces_before, stacked_pairs

WORK_PIXELS = 4_000_000  # larger images are read at this size: digits stay >= 10 px tall on a 20 MP page
MIN_WORK_PIXELS = 100_000  # below this a page's digits shrink past what the framing can read
TARGET_HEIGHT = 40  # pages whose digits are taller are read at the scale that makes them this tall
PREVIEW_MIN_DIGIT_PX = 5  # digits this short in the preview (1/8 of a photo, say) still tell their height
LOW_CONFIDENCE_MARK = "?"
CONFIDENCE_DECIMALS = 4  # confidences are reported, and held against min_confidence, to this many places
LINE_SEPARATOR = "\n"
ACCEPT_SINGLE = 0.8  # a glyph the verifier finds this surely one digit is not cut, however wide: it gave 1,097 of
# 1,098 touching pairs (validation writers' touching pages) under 0.5 and none this much; a lone flat 2, 0.99
PART_VOTE = 1.0  # the verifier's digit probabilities count with this power for parts of cut or joined glyphs
WHOLE_VOTE = 0.5  # ... and with this power for whole glyphs: it sees the ink around them (a broken-off bar
# of a 5 that find_glyphs left apart, say), which the classifier does not. Chosen of 0, 0.5, 1 and 2 on 9,500
# generated pages (benchmarks/ocr_factors.py, OCR round 9); 2 until then, chosen on the 2,100 of seeds 1 and 3
SECOND_BELOW = 0.9  # a digit the classifier and verifier leave less sure than this asks a second classifier ...
SECOND_VOTE = 0.5  # ... whose digit probabilities vote with this power: `best` reads MNIST's own hard writers
# better than `photo` (99.70% vs 99.63%), `photo` reads photos better. Chosen on the crops of 3,000 generated
# numbers (benchmarks/vote_sweep.py, OCR round 11; any threshold 0.7-1 read alike); ~1% of digits ask, so a
# page seldom pays the extra call
MIN_VOTE = 1e-4
KEEP_HALO = 5  # a turned page keeps the faint pixels this wide (px) around its glyphs' ink, to resample edges
TURN_MARGIN = 1.0  # ... and this many line heights of paper around them
PRECISIONS = get_args(Precision)  # a network's arithmetic, as --precision
BOUNDARIES_PER_ROUND = 3  # each round of the cut search verifies the parts leaving this many boundaries


@dataclass(frozen=True)
class Digit:
    """One digit read: its class, the classifier's confidence, its box (x, y, w, h) in image pixels, its line."""

    digit: int
    confidence: float
    box: tuple[int, int, int, int]
    line: int
    low_confidence: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"digit": self.digit, "confidence": round(self.confidence, CONFIDENCE_DECIMALS),
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
    probabilities: np.ndarray | None = field(default=None, repr=False)  # (N, 10) classifier x verifier votes

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "text": self.text, "digits": [d.to_dict() for d in self.digits]}


class Reader:
    """Reads digits from images with one classifier, loaded once.

    `model` (default: the bundled "photo") is a model spec (a bundled name such as "photo" or "best", a run
    folder or a checkpoint file) or a ready classifier: any callable taking (N, 28, 28) float32 crops to (N, 10)
    probabilities. `verifier` (default: the bundled "reader" network) scores candidate parts of touching
    digits: a model spec or callable whose 11th output is "not one digit"; None lets the classifier's
    confidence score them instead. `second` (a model spec or callable) votes on the digits that those two leave
    unsure (`ask_second`); the default, "auto", asks the bundled "best" when the classifier is the default
    "photo", and no one otherwise; None asks no one. `precision` ("auto", "bf16" or "fp32") is the arithmetic of
    the networks it loads on the torch backend, as `--precision` (auto: bf16 on AMX CPUs).
    """

    def __init__(self, model: Any = CLASSIFIER, backend: str = "torch",
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES, work_pixels: int = WORK_PIXELS, verifier: Any = VERIFIER,
                 second: Any = SECOND, precision: str = "auto"):
        from .registry import bundled_models

        if not _is_number(min_confidence) or not 0 <= min_confidence <= 1:  # also refuses NaN
            raise DigitocrError(f"min_confidence must be a number between 0 and 1, got {min_confidence!r}")
        if precision not in PRECISIONS:
            raise DigitocrError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        limits = {"max_pixels": max_pixels, "max_bytes": max_bytes, "work_pixels": work_pixels}
        for name, value in limits.items():
            least = MIN_WORK_PIXELS if name == "work_pixels" else 1
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < least:
                raise DigitocrError(f"{name} must be an integer of at least {least:,}, got {value!r}")
        load = partial(_load, backend=backend, precision=precision)
        raw = load(model, role="--model")
        if verifier is model or (verifier == model and isinstance(model, str | Path)):
            verifier = raw  # one network (a spec or a ready-made one) both verifies and reads
        elif isinstance(verifier, str | Path):
            use = verifier != VERIFIER or VERIFIER in bundled_models()
            verifier = load(verifier, role="--verifier") if use else None
        elif verifier is not None:
            verifier = load(verifier, role="--verifier")
        self.classifier = digits_only(raw)
        self.verifier = verifier
        second = second_opinion(model, second)
        same = second is model or (isinstance(second, str | Path) and str(second) == str(model))
        self.second = None if second is None or same else digits_only(load(second, role="--second"))
        self._reads_with_verifier = verifier is raw
        self.min_confidence = min_confidence
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.work_pixels = work_pixels

    def __repr__(self) -> str:
        return (f"Reader({self.classifier!r}, verifier={self.verifier!r}, second={self.second!r}, "
                f"min_confidence={self.min_confidence}, max_pixels={self.max_pixels})")

    def load(self, image: ImageInput, name: str | None = None) -> GreyImage:
        return load_grey(image, name, self.max_pixels, self.max_bytes, self.work_pixels)

    def read(self, image: ImageInput, name: str | None = None, *, debug: bool = False) -> ReadResult:
        """Read every digit in an image (path, encoded bytes or array); a blank image gives empty text."""
        page = load_grey(image, name, self.max_pixels, self.max_bytes, self.work_pixels, digit_scale)
        ink, lines, to_page = level(page_ink(page.pixels))
        lines, probs, crops = self.segment_and_classify(lines, ink.ink)
        file = name if name is not None else str(image) if isinstance(image, str | os.PathLike) else None
        return self.assemble(page, lines, probs, crops, file, debug, to_page)

    def classify(self, image: ImageInput, name: str | None = None) -> np.ndarray:
        """One digit image (any size or polarity) -> (10,) probabilities; all its ink is taken as one digit."""
        page = self.load(image, name)
        ink = page_ink(page.pixels)
        glyphs = [g for line in find_glyphs(ink) for g in line]
        # (H, W): the glyphs' ink; or, where segmentation kept none (a digit filling its image to the edge
        # looks like a background blob to it), all the ink there is
        digit = _paste(glyphs, page.pixels.shape) if glyphs else ink.ink * ink.mask
        if not digit.any():  # read() answers "" here; one digit's probabilities would be a guess at nothing
            raise NoDigitError(f"{page.name}: no ink in the image, so no digit to classify")
        views = framings(digit)  # as read() frames a glyph: from the ink's edge, and from thick strokes' cores
        # one network that reads and verifies answers on the edge view, as read() takes its answer
        crop = (views.edge if self._reads_with_verifier else views.core)[0][None]  # (1, 28, 28)
        with one_thread():
            probs = self.classifier(crop)
        if self.verifier is not None and not self._reads_with_verifier:
            _, digits = self.verify(views.edge[0][None])  # as read() does for a whole glyph: the verifier votes
            probs = vote(probs, digits, np.array([WHOLE_VOTE], np.float32))
        return self.ask_second(crop, probs)[0]

    def verify(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(P(one digit) (N,), the verifier's digit probabilities (N, 10) or None) for framed crops."""
        if self.verifier is None:
            with one_thread():
                probs = self.classifier(crops) if len(crops) else np.zeros((0, NUM_CLASSES), np.float32)
            return probs.max(1), None
        if not len(crops):
            return np.zeros(0, np.float32), np.zeros((0, NUM_CLASSES), np.float32)
        with one_thread():
            digits, single = split_probs(self.verifier(crops))
        return single, digits

    def segment_and_classify(self, lines: list[list[Glyph]],
                             page: np.ndarray) -> tuple[list[list[Glyph]], np.ndarray, np.ndarray]:
        """Choose how to cut (touching digits) or join (broken digits) glyphs, and classify the chosen parts.

        Every glyph is framed and verified whole first. Wide glyphs that are not surely one digit get
        candidate cuts; doubtful glyphs close to a neighbour may be joined with it. The verifier sees each
        part in the context of the ink around it on `page` (the ink map); the classifier sees it alone.
        Returns the lines of chosen glyphs, their digit probabilities (N, 10) and their crops (N, 28, 28).
        """
        lines = self.rejoin_lines(lines, page)
        heights = [line_height(line) for line in lines]
        flat = [(g, heights[n], n) for n, line in enumerate(lines) for g in line]
        whole, whole_context = frame_parts([g for g, _, _ in flat], page)  # (G, 28, 28) each
        single, digits = self.verify(whole_context)
        # every part verified so far -> (its crop, the verifier's digit probabilities or None)
        known = {(k, k + 1): (whole[k], None if digits is None else digits[k]) for k in range(len(flat))}
        searches = self.search(flat, single, page, known)
        chosen: dict[int, list[tuple[Glyph, tuple]]] = {k: [(g, (k, k + 1))] for k, (g, _, _) in enumerate(flat)}
        for s, (k, search) in enumerate(searches):  # a run's best path replaces its glyphs
            lat = search.lattice
            for key in range(k, k + len(lat.glyphs)):
                chosen.pop(key)
            for i, j in search.path():
                g = lat.glyph_of(i)[0]
                key = (k + g, k + g + 1) if (i, j) == lat.whole(g) else (s, i, j)
                chosen.setdefault(k + g, []).append((lat.part(i, j), key))
        keys = [key for k in sorted(chosen) for _, key in chosen[k]]
        crops, probs = self.classify_parts(keys, known)
        out: list[list[Glyph]] = [[] for _ in lines]
        for k in sorted(chosen):
            out[flat[k][2]] += [g for g, _ in chosen[k]]
        return out, probs, crops

    def rejoin_lines(self, lines: list[list[Glyph]], page: np.ndarray) -> list[list[Glyph]]:
        """Join glyphs that group_lines put on neighbouring lines when they are the pieces of one broken digit:
        stacked close together, and the verifier finds their union more surely one digit than either piece."""
        pairs = stacked_pairs(lines)
        if not pairs or self.verifier is None:
            return lines
        parts = [g for n, i, m, j in pairs
                 for g in (lines[n][i], lines[m][j], merge_glyphs([lines[n][i], lines[m][j]]))]
        _, in_context = frame_parts(parts, page)
        p_one = self.verify(in_context)[0].reshape(len(pairs), 3)  # (pairs, [upper, lower, union])
        gain = p_one[:, 2] - p_one[:, :2].max(1)
        out: list[list[Glyph | None]] = [list(line) for line in lines]
        used: set[tuple[int, int]] = set()
        for q in np.argsort(-gain):
            n, i, m, j = pairs[q]
            if gain[q] <= 0 or (n, i) in used or (m, j) in used:
                continue
            used |= {(n, i), (m, j)}
            out[n][i] = parts[3 * q + 2]  # the union takes the upper piece's place; the lower one leaves its line
            out[m][j] = None
        kept = [[g for g in line if g is not None] for line in out]
        return [sorted(line, key=lambda g: g.box[0] + g.box[2] / 2) for line in kept if line]

    def search(self, flat: list[tuple[Glyph, float, int]], single: np.ndarray, page: np.ndarray,
               known: dict) -> list[tuple[int, PathSearch]]:
        """Best-first searches over the runs worth searching (see `runs`), in rounds: each round verifies,
        in one call for the whole page, the parts that may still improve some run's best reading."""
        searches = [(k, PathSearch(Lattice([g for g, _, _ in flat[k:m]], flat[k][1], split), list(single[k:m])))
                    for k, m, split in self.runs(flat, single)]
        while True:
            asks = [(s, e) for s, (_, search) in enumerate(searches) for e in search.next_edges(BOUNDARIES_PER_ROUND)]
            asks = [(s, e) for s, e in asks if searches[s][1].lattice.part(*e) is not None]
            if not asks:
                return searches
            crops, in_context = frame_parts([searches[s][1].lattice.part(*e) for s, e in asks], page)
            p_one, p_digits = self.verify(in_context)
            for n, (s, e) in enumerate(asks):
                searches[s][1].record(e, float(p_one[n]))
                known[(s, *e)] = (crops[n], None if p_digits is None else p_digits[n])
            for _, search in searches:
                search.update()

    def classify_parts(self, keys: list[tuple], known: dict) -> tuple[np.ndarray, np.ndarray]:
        """(crops (N, 28, 28), digit probabilities (N, 10)) of the chosen parts: the classifier's times the
        verifier's (to the power PART_VOTE for parts of cut or joined glyphs, WHOLE_VOTE for whole glyphs),
        renormalised: two networks that saw the part differently (alone; in context) vote."""
        if not keys:
            return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32), np.zeros((0, NUM_CLASSES), np.float32)
        crops = np.stack([known[key][0] for key in keys])
        if self._reads_with_verifier:
            return crops, self.ask_second(crops, np.stack([known[key][1] for key in keys]))
        with one_thread():
            probs = self.classifier(crops)
        power = np.array([PART_VOTE if len(key) == 3 else WHOLE_VOTE for key in keys], np.float32)  # (N,)
        voting = [n for n, key in enumerate(keys) if power[n] and known[key][1] is not None]
        if voting:
            probs[voting] = vote(probs[voting], np.stack([known[keys[n]][1] for n in voting]), power[voting])
        return crops, self.ask_second(crops, probs)

    def ask_second(self, crops: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """The voted digit probabilities (N, 10) with the second classifier's vote (to the power SECOND_VOTE)
        where they are less sure than SECOND_BELOW; one call for the unsure crops (N, 28, 28), none if all are sure."""
        if self.second is None:
            return probs
        unsure = np.flatnonzero(probs.max(1) < SECOND_BELOW)
        if not len(unsure):
            return probs
        with one_thread():
            other = self.second(crops[unsure])
        probs = probs.copy()
        probs[unsure] = vote(probs[unsure], other, np.full(len(unsure), SECOND_VOTE, np.float32))
        return probs

    def runs(self, flat: list[tuple[Glyph, float, int]], single: np.ndarray) -> list[tuple[int, int, list[bool]]]:
        """Runs of glyphs (start, stop, which to cut) worth searching: a wide glyph not surely one digit,
        and doubtful glyphs with the neighbours they may have broken off from (same line, close)."""
        doubtful = [self.verifier is not None and p < ACCEPT_SINGLE for p in single]
        split = [self.may_split(g, h, float(p)) for (g, h, _), p in zip(flat, single, strict=True)]
        out, k = [], 0
        while k < len(flat):
            m = k + 1
            while m < len(flat) and flat[m][2] == flat[k][2] and (doubtful[m - 1] or doubtful[m]) \
                    and close(flat[m - 1][0], flat[m][0], flat[k][1]):
                m += 1
            if m - k > 1 or split[k]:
                out.append((k, m, split[k:m]))
            k = m
        return out

    def may_split(self, glyph: Glyph, height: float, p_single: float) -> bool:
        """Wide glyphs may be touching digits, unless the verifier is sure this one is a single digit. Its width
        alone is no reason to cut: a glyph alone on its line sets the line height, so a flat digit (a 2 with a
        long tail, a 5 with a long bar) is up to twice as wide as that, and the search's width prior would cut it."""
        if not may_touch(glyph, height):
            return False
        return not (self.verifier is not None and p_single >= ACCEPT_SINGLE)

    def assemble(self, page: GreyImage, lines: list[list[Glyph]], probs: np.ndarray, crops: np.ndarray,
                 file: str | None, debug: bool, to_page: np.ndarray | None = None) -> ReadResult:
        """Digits with boxes in the original image's pixels, and the text they spell. `to_page` (2, 3) maps
        the glyphs' pixels to the page's where the page was turned level (`level`)."""
        digits, text_lines = [], []
        for n, line in enumerate(lines):
            chars = []
            for glyph, space in zip(line, spaces_before(line), strict=True):
                digit = self.make_digit(glyph, probs[len(digits)], n, page.scale, to_page)
                digits.append(digit)
                mark = LOW_CONFIDENCE_MARK if digit.low_confidence else str(digit.digit)
                chars.append((" " if space else "") + mark)
            text_lines.append("".join(chars))
        return ReadResult(file, LINE_SEPARATOR.join(text_lines), digits, crops, page if debug else None, probs)

    def make_digit(self, glyph: Glyph, dist: np.ndarray, line: int, scale: float,
                   to_page: np.ndarray | None = None) -> Digit:
        k = int(np.argmax(dist))
        confidence = float(dist[k])
        x, y, w, h = (v / scale for v in (glyph.box if to_page is None else page_box(glyph.box, to_page)))
        box = (round(x), round(y), max(1, round(w)), max(1, round(h)))
        # below the threshold both as computed and as reported: a digit shown as 1.0 passes --min-confidence 1
        low = confidence < self.min_confidence and round(confidence, CONFIDENCE_DECIMALS) < self.min_confidence
        return Digit(k, confidence, box, line, low)


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
    """(N, 11) probabilities -> (digit probabilities given one digit (N, 10), P(one digit) (N,)). A 10-class
    network has no "not one digit": its confidence stands in for P(one digit)."""
    if probs.shape[1] == NUM_CLASSES:
        return probs.astype(np.float32), probs.max(1).astype(np.float32)
    single = np.clip(1.0 - probs[:, NUM_CLASSES:].sum(1), 0.0, 1.0)
    digits = probs[:, :NUM_CLASSES] / np.maximum(probs[:, :NUM_CLASSES].sum(1, keepdims=True), 1e-12)
    return digits.astype(np.float32), single.astype(np.float32)


def vote(probs: np.ndarray, verifier: np.ndarray, power: np.ndarray) -> np.ndarray:
    """The classifier's digit probabilities (N, 10) times the verifier's (N, 10) to the power (N,), renormalised."""
    both = probs * np.maximum(verifier, MIN_VOTE) ** power[:, None]
    return both / both.sum(1, keepdims=True)


def second_opinion(model: Any, second: Any = SECOND) -> Any:
    """The second network's spec for a Reader of `model`: `second` itself, or for "auto" the bundled `best`
    when the classifier is the bundled default (SECOND_BELOW and SECOND_VOTE were chosen for that pair), else None."""
    from .registry import bundled_models

    if not (isinstance(second, str) and second == SECOND):
        return second
    default = isinstance(model, str) and model == CLASSIFIER
    return SECOND_OPINION if default and SECOND_OPINION in bundled_models() else None


def digits_only(classifier: Any) -> Any:
    """A network's digit probabilities alone: an 11-output reader network behind DigitsOnly, others as they are."""
    return DigitsOnly(classifier) if outputs(classifier) > NUM_CLASSES else classifier


def outputs(classifier: Any) -> int:
    """How many classes a classifier answers with (10 digits, or 11 with "not one digit")."""
    return int(classifier(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), np.float32)).shape[1])


def _load(model: Any, backend: str, role: str, precision: str = "auto") -> Any:
    """A classifier from a spec (bundled name, run folder, checkpoint, .onnx) or one given ready-made."""
    if isinstance(model, str | Path):
        from .classifier import load_classifier

        try:
            return load_classifier(str(model), backend, precision=precision)
        except DigitocrError as e:  # the spec's own flag in the message: --model or --verifier
            raise DigitocrError(str(e).replace("--model ", f"{role} ", 1)) from None
    if not callable(model):
        raise DigitocrError(f"{role}: expected a model name, a path or a classifier (crops -> probabilities), "
                            f"got {type(model).__name__}")
    return CheckedClassifier(model)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


class CheckedClassifier:
    """A ready-made classifier held to the contract the Reader relies on: (N, 28, 28) float32 crops ->
    (N, C) finite, non-negative probabilities with C >= 10, each row summing above zero. A callable that
    answers otherwise is a one-line error naming what it answered, not an IndexError deep in the vote."""

    def __init__(self, fn: Any):
        self.fn = fn

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        answer = self.fn(crops)
        try:
            out = np.asarray(answer, dtype=np.float32)
        except (TypeError, ValueError):
            out = None
        n = len(crops)
        if out is None or out.ndim != 2 or out.shape[0] != n or out.shape[1] < NUM_CLASSES \
                or not np.isfinite(out).all() or (out < 0).any() or not (out.sum(1) > 0).all():
            got = f"shape {out.shape}" if out is not None else type(answer).__name__
            raise DigitocrError(f"the classifier {self.fn!r} answered {got} for {n} crops; expected ({n}, "
                                f"{NUM_CLASSES}) probabilities: finite, non-negative, not all zero")
        return out

    def __repr__(self) -> str:
        return repr(self.fn)


@contextmanager
def one_thread():
    """Run a network call on one torch thread, then restore the count. A page's batches are small (tens
    of crops): a second thread gains nothing on them, and on a busy machine costs ten times the time, its
    threads spin-waiting for a core. Not for concurrent callers that each set a different count."""
    import torch

    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def close(a: Glyph, b: Glyph, height: float) -> bool:
    """Neighbours close enough to be pieces of one digit."""
    return b.box[0] - (a.box[0] + a.box[2]) <= MERGE_GAP * height


def digit_scale(preview: GreyImage) -> float:
    """The scale (working pixels per original pixel) at which a page's digits are TARGET_HEIGHT px tall,
    judged from a small preview of it; 1.0 (full size) when no digits show in the preview.

    Framing needs only 20 px per digit, and every step after it costs in proportion to the pixels.
    """
    heights = [g.box[3] for line in find_glyphs(page_ink(preview.pixels), PREVIEW_MIN_DIGIT_PX) for g in line]
    if not heights:
        return 1.0
    return min(1.0, TARGET_HEIGHT / (float(np.median(heights)) / preview.scale))


def page_ink(grey: np.ndarray) -> InkMap:
    """(H, W) grey -> where the writing is: the ink map (preprocess.ink_map) without the rules of ruled or
    squared paper (rules.lift_rules), which join every digit written across them into one glyph."""
    return lift_rules(ink_map(grey))


def level(ink: InkMap) -> tuple[InkMap, list[list[Glyph]], np.ndarray | None]:
    """(ink map, its lines of glyphs, the map (2, 3) from its pixels to the page's or None): a page whose lines
    of digits slope (a photo taken askew) is turned level first. MNIST's digits stand upright, and the
    networks misread more the further a page is turned: of 6,000 generated numbers (MNIST's validation and test
    writers), 255 were misread as they were and 222 turned level (BENCHMARKS.md, OCR round 9). A page without a
    line of SKEW_GLYPHS digits (a lone digit, a pair) is read as it is: one digit's slant is the writer's own."""
    lines = find_glyphs(ink)
    angle = deskew_angle(lines)
    if not angle:
        return ink, lines, None
    glyphs = [g for line in lines for g in line]
    keep = cv2.dilate((_paste(glyphs, ink.ink.shape) > 0).view(np.uint8), np.ones((KEEP_HALO,) * 2, np.uint8))
    # paper around the turned glyphs: none touches the canvas's edge, where find_glyphs looks for background
    margin = round(TURN_MARGIN * max(line_height(line) for line in lines))
    turned, to_page = turn(ink, angle, keep.view(bool), margin)
    return turned, find_glyphs(turned), to_page


def page_box(box: tuple[int, int, int, int], to_page: np.ndarray) -> tuple[float, float, float, float]:
    """The page's box (x, y, w, h) around a box of a turned page's pixels, `to_page` (2, 3) mapping them."""
    x, y, w, h = box
    corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]], np.float64) - 0.5  # pixel edges
    mapped = corners @ to_page[:, :2].T + to_page[:, 2]  # (4, 2)
    (x0, y0), (x1, y1) = mapped.min(0) + 0.5, mapped.max(0) + 0.5
    return x0, y0, x1 - x0, y1 - y0


def _paste(glyphs: list[Glyph], shape: tuple[int, int]) -> np.ndarray:
    """All glyphs' ink on one blank page (H, W): the digit classify() frames."""
    page = np.zeros(shape, np.float32)
    for g in glyphs:
        x, y, w, h = g.box
        page[y:y + h, x:x + w] = np.maximum(page[y:y + h, x:x + w], g.ink)
    return page
