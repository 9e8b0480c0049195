"""Printed rules under the writing: the lines of ruled paper and the grid of squared paper, lifted out of an
ink map so that the digits written across them come apart again.

On such paper every digit touching a rule is one connected component with it, and with every other digit
on it: a line of digits becomes one glyph as wide as the page (or, on squared paper, the whole grid one
component that `segment` drops as a frame). `lift_rules` finds the rules' slope (the one that stacks the
ink into the sharpest rows and columns), turns the long components level, takes rows (columns) that ink
fills over most of their width (height) as rules, removes them, and keeps their pixels where a stroke
crosses them (ink on both sides of the rule).

A rule is told from a row through the writing (the bars of two 4s, a 2's base) by three things: it runs
from border to border, as printed rules run across the paper; it is at least RULE_DIGITS times as long as
the tallest thing left once the rules are gone; and it is thinner than RULE_THIN of that. Upright rules
count only beside level ones (squared paper): a number cropped tight is crossed top to bottom by its 1s.
A dash, a 7's bar or a 1 filling its image is no rule, and a page that is nothing but rules keeps them
(segment drops lone rules itself). Pages without long components (most pages) cost one labelling of the ink.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .preprocess import InkMap, turn_matrix

SPAN = 0.3  # only ink whose component spans this fraction of the image's width or height may hold rules ...
MIN_RULE_PX = 40  # ... and is at least this long: smaller images are one digit (UCI optdigits, 32 px), not ruled paper
FILL = 0.75  # a rule is a straight row (column) of ink over this fraction of its components' width (height)
WOBBLE = 1  # px: a thin rule turned level may stray this far from one row
MAX_ANGLE = 15.0  # rules slope at most this many degrees (a photo turned by hand)
COARSE_STEP, FINE_STEP = 1.0, 0.1  # degrees: the slope is searched coarsely, then refined around the best
ANGLE_SAMPLE = 20_000  # the slope is measured on at most this many of the candidate ink pixels
MIN_SLOPE = 0.05  # degrees: rules sloping less than this are taken as level (no resampling)
RULE_DIGITS = 2.0  # a rule is at least this many times as long as the tallest component left without rules ...
RULE_THIN = 0.2  # ... and at most this fraction of its height thick
SIGNIFICANT = 0.1  # ... counting components with at least this fraction of the largest one's area
CROSS_MARGIN = 2  # a stroke's pixels within a rule are kept where ink lies within this many px beyond both edges
EDGE_REACH, EDGE_REACH_PX = 0.03, 2  # a rule's ends come this close (share of its line, px at least) to the borders
RIM = 3  # the removed rule is dilated by a RIM x RIM square (1 px each side): its antialiased rim leaves no specks


def lift_rules(ink: InkMap) -> InkMap:
    """`ink` without the rules of ruled or squared paper (a copy; `ink` itself where it has none)."""
    mask = ink.mask  # (H, W) uint8
    candidates = spanning(mask)
    if candidates is None:
        return ink
    long, extents = candidates
    ys, xs = np.nonzero(long)
    page = Turned.of(mask, long, rule_angle(xs, ys))
    bands = rule_bands(page, extents)
    # Rules are long and thin beside the writing left once every end-to-end band is gone (the digits they
    # cross whole again). Upright ones count only on squared paper, where level ones were found too: a line
    # of digits cropped tight is crossed top to bottom by its 1s' and 4s' stems.
    across = [b for b in bands if b.end_to_end]
    if not across:
        return ink
    union = page.paint(across)
    tallest = tallest_left(mask, union & ~crossings(mask, union))
    rules = [b for b in across if b.length >= RULE_DIGITS * tallest and b.thickness <= RULE_THIN * tallest]
    if not any(b.level for b in rules):
        return ink
    removed = page.paint(rules)
    gone = (cv2.dilate(removed, np.ones((RIM, RIM), np.uint8)) & ~crossings(mask, removed)).view(bool)
    lifted = np.where(gone, 0, ink.ink).astype(np.float32)
    unjoined = None if ink.unjoined is None else np.where(gone, 0, ink.unjoined).astype(np.float32)
    return replace(ink, ink=lifted, unjoined=unjoined)


def spanning(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int]] | None:
    """(the ink (H, W) uint8 of the components whose box spans SPAN of the image's width or height and
    MIN_RULE_PX, the only ones that may hold rules; their widest width and tallest height) or None."""
    h, w = mask.shape
    if max(h, w) < MIN_RULE_PX:
        return None
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    bw, bh = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    keep = ((bw >= SPAN * w) | (bh >= SPAN * h)) & (np.maximum(bw, bh) >= MIN_RULE_PX)
    keep[0] = False  # the paper
    if not keep.any():
        return None
    return keep[labels].view(np.uint8), (int(bw[keep].max()), int(bh[keep].max()))


def rule_angle(xs: np.ndarray, ys: np.ndarray) -> float:
    """The slope (degrees, counter-clockwise as shown, cv2's sense) at which the pixels (xs, ys) line up in
    the sharpest rows or columns: projected across that slope, rules pile into a few narrow bins."""
    if len(xs) > ANGLE_SAMPLE:
        pick = np.random.default_rng(0).choice(len(xs), ANGLE_SAMPLE, replace=False)  # fixed: reproducible
        xs, ys = xs[pick], ys[pick]
    x, y = xs.astype(np.float64), ys.astype(np.float64)

    def sharpness(deg: float) -> float:
        t = np.radians(deg)
        rows = x * np.sin(t) + y * np.cos(t)  # constant along a rule sloping up by `deg` to the right
        cols = x * np.cos(t) - y * np.sin(t)  # ... and along the grid's other rules, at right angles to it
        return sum(float(np.square(np.bincount((v - v.min()).astype(np.int64))).sum()) for v in (rows, cols))

    coarse = np.arange(-MAX_ANGLE, MAX_ANGLE + COARSE_STEP / 2, COARSE_STEP)
    best = max(coarse, key=sharpness)
    fine = np.arange(best - COARSE_STEP, best + COARSE_STEP + FINE_STEP / 2, FINE_STEP)
    return float(max(fine, key=sharpness))


@dataclass
class Turned:
    """A page's ink turned so that its rules run level: all of it (`ink`), the long components alone (`long`)
    and where the page itself lies (`inside`: 1 within its borders), each (h', w') uint8; the map (2, 3) back
    to the page (None where it was not turned) and the page's own ink map `mask` (H, W)."""

    ink: np.ndarray
    long: np.ndarray
    inside: np.ndarray
    back: np.ndarray | None
    mask: np.ndarray

    @classmethod
    def of(cls, mask: np.ndarray, long: np.ndarray, angle: float) -> Turned:
        level, back = _turned(long, angle)
        if back is None:
            return cls(mask, long, np.ones_like(mask), None, mask)
        return cls(_turned(mask, angle)[0], level, _turned(np.ones_like(mask), angle)[0], back, mask)

    def paint(self, bands: list[Band]) -> np.ndarray:
        """All the ink (H, W) uint8 in the bands' rows and columns, in the page's frame: the rules, strokes
        across them and their broken-off bits. One turn back for all of them."""
        found = np.zeros_like(self.ink)
        for b in bands:
            if b.level:
                found[b.start:b.stop] = self.ink[b.start:b.stop]
            else:
                found[:, b.start:b.stop] = self.ink[:, b.start:b.stop]
        if self.back is not None:
            h, w = self.mask.shape
            found = cv2.warpAffine(found, self.back, (w, h), flags=cv2.INTER_NEAREST)
        return found & self.mask


@dataclass
class Band:
    """One candidate rule on a Turned page: rows (level) or columns [start, stop), how long and thick the
    rule is (px), and whether it runs from one border of the page to the other."""

    level: bool
    start: int
    stop: int
    length: int
    thickness: int
    end_to_end: bool


def rule_bands(page: Turned, extents: tuple[int, int]) -> list[Band]:
    """Candidate rules, level ones and upright ones: bands of rows (columns) of the turned page that the long
    components' ink fills over FILL of their width (height); gaps where a faint rule fell below the threshold
    are allowed. Each row counts the ink WOBBLE rows either side of it too, for a thin rule that the turn
    left a pixel off straight. Printed rules run across the paper, so a rule is `end_to_end` when its ink
    reaches within EDGE_REACH of the page's borders at both ends; a row through a line of digits ends with
    them."""
    bands = []
    for level in (True, False):
        across = (1, 2 * WOBBLE + 1) if level else (2 * WOBBLE + 1, 1)  # (width, height) of the kernel
        thick = cv2.dilate(page.long, cv2.getStructuringElement(cv2.MORPH_RECT, across))
        sums = thick.sum(axis=1 if level else 0, dtype=np.int64)  # (rows,) or (cols,)
        full = sums >= FILL * extents[0 if level else 1]
        edges = np.flatnonzero(np.diff(np.concatenate([[0], full.astype(np.int8), [0]])))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):  # runs of full rows: one band each
            own = page.long[start:stop] if level else page.long[:, start:stop].T  # (rows, along)
            along = np.flatnonzero(own.any(axis=0))  # where the rule runs
            every = page.ink[start:stop] if level else page.ink[:, start:stop].T  # with its broken-off ends
            reaches = np.flatnonzero(every.any(axis=0))
            middle = (start + stop) // 2
            border = np.flatnonzero(page.inside[middle] if level else page.inside[:, middle])  # the page there
            if not len(along) or not len(border):
                continue
            reach = max(EDGE_REACH_PX, round(EDGE_REACH * len(border)))
            end_to_end = reaches[0] <= border[0] + reach and reaches[-1] >= border[-1] - reach
            bands.append(Band(level, int(start), int(stop), int(along[-1] - along[0] + 1),
                              max(1, int(stop - start) - 2 * WOBBLE), bool(end_to_end)))
    return bands


def _turned(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray | None]:
    """`image` turned by -`angle` on a canvas that holds all of it, and the map (2, 3) back; (image, None)
    where the slope is below MIN_SLOPE."""
    if abs(angle) < MIN_SLOPE:
        return image, None
    m, size = turn_matrix(image.shape[::-1], -angle)  # image -> canvas
    return cv2.warpAffine(image, m, size, flags=cv2.INTER_NEAREST), cv2.invertAffineTransform(m)


def crossings(mask: np.ndarray, rules: np.ndarray) -> np.ndarray:
    """The rule pixels (H, W) uint8 that strokes cross, and all ink off the rules: a closing of the ink left
    without the rules, across them, fills gaps as wide as a rule where ink lies beyond both of its edges
    (rules are thinner than digits; a stroke that only touches a rule loses the rule's width)."""
    off = mask & ~rules
    # the distance to paper, the image's border counted as paper: a rule along the edge is no thicker, and
    # a map that is all ink has a finite depth
    depth = cv2.distanceTransform(np.pad(rules, 1), cv2.DIST_L2, 3)
    thickness = 2 * int(np.ceil(depth.max())) + 1
    span = thickness + 2 * CROSS_MARGIN
    kept = np.zeros_like(mask)
    for kernel in ((1, span), (span, 1)):  # (width, height): across level rules, then across upright ones
        kept |= cv2.morphologyEx(off, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, kernel))
    return kept & mask


def tallest_left(mask: np.ndarray, rules: np.ndarray) -> int:
    """The height (px) of the tallest significant component of the ink left without `rules` (and their
    rim); a page with nothing left is all rules, as tall as itself (no family is long beside it)."""
    left = mask & ~cv2.dilate(rules, np.ones((RIM, RIM), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(left, connectivity=8)
    stats = stats[1:]
    if not len(stats):
        return max(mask.shape)
    area = stats[:, cv2.CC_STAT_AREA]
    return int(stats[area >= SIGNIFICANT * area.max(), cv2.CC_STAT_HEIGHT].max())
