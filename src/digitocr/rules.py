"""Printed rules under the writing: the lines of ruled paper and the grid of squared paper, lifted out of an
ink map so that the digits written across them come apart again.

On such paper every digit touching a rule is one connected component with it, and with every other digit
on it: a line of digits becomes one glyph as wide as the page (or, on squared paper, the whole grid one
component that `segment` drops as a frame). `lift_rules` finds the rules' slope (the one that stacks the
ink into the sharpest rows and columns), turns the long components level, takes rows (columns) that ink
fills over most of their width (height) as rules, removes them, and keeps their pixels where a stroke
crosses them (ink on both sides of the rule).

A rule is told from a row through the writing (the bars of two 4s, a 2's base) by three things: it runs to
the image's edge, as printed rules run to the paper's; it is at least RULE_DIGITS times as long as the
tallest thing left once the rules are gone; and it is thinner than RULE_THIN of that. A dash, a 7's bar or
a 1 filling its image is none of these, and a page that is nothing but rules keeps them (segment drops lone
rules itself). Pages without long components (most pages) cost one labelling of the ink.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .preprocess import InkMap

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
EDGE_REACH, EDGE_REACH_PX = 0.03, 2  # a rule comes this close (share of the side, px at least) to the edge
RIM = 3  # the removed rule is widened by this (px, a square): its antialiased rim is not left as specks


def lift_rules(ink: InkMap) -> InkMap:
    """`ink` without the rules of ruled or squared paper (a copy; `ink` itself where it has none)."""
    mask = ink.mask  # (H, W) uint8
    candidates = spanning(mask)
    if candidates is None:
        return ink
    inside, extents = candidates
    ys, xs = np.nonzero(inside)
    bands = rule_bands(mask, inside, rule_angle(xs, ys), extents)
    if not bands:
        return ink
    # rules are long and thin beside the writing left without them (the digits they cross whole again); a
    # row through a line of digits (the bars of two 4s, say) that fills as much ends with the digits, inside
    # the page's margins, and is as thick as a stroke and about as long as a digit
    union = _union(bands, mask)
    tallest = tallest_left(mask, union & ~crossings(mask, union))
    rules = [b for b in bands if b.reaches_edge and b.length >= RULE_DIGITS * tallest
             and b.thickness <= RULE_THIN * tallest]
    if not rules:
        return ink
    removed = _union(rules, mask)
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
class Band:
    """One candidate rule: the ink (H, W) uint8 of its rows (columns) in the page's frame, the rule's length
    and thickness in px."""

    pixels: np.ndarray
    length: int
    thickness: int
    reaches_edge: bool  # it runs to the image's edge (see `_reaches_edge`)


def rule_bands(mask: np.ndarray, inside: np.ndarray, angle: float, extents: tuple[int, int]) -> list[Band]:
    """Candidate rules, level ones and upright ones. The candidate components `inside` (H, W) uint8 are
    turned level (by -`angle`); a rule is a band of rows (columns) that ink fills over FILL of the candidates'
    width (height): gaps where a faint rule fell below the threshold are allowed. Each row counts the ink
    WOBBLE rows either side of it too, for a thin rule that the turn left a pixel off straight."""
    h, w = inside.shape
    level, back = _turned(inside, angle)
    every = mask if back is None else _turned(mask, angle)[0]  # all the ink, turned the same way
    bands = []
    for axis in (1, 0):  # sums along rows (level rules), then along columns (upright ones)
        across = (1, 2 * WOBBLE + 1) if axis == 1 else (2 * WOBBLE + 1, 1)  # (width, height) of the kernel
        thick = cv2.dilate(level, cv2.getStructuringElement(cv2.MORPH_RECT, across))
        full = thick.sum(axis=axis) >= FILL * extents[0 if axis == 1 else 1]  # (rows,) or (cols,)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], full.astype(np.int8), [0]])))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):  # runs of full rows: one band each
            found = np.zeros_like(level)  # all the ink in the band: the rule, strokes across it, its bits
            if axis == 1:
                found[start:stop] = every[start:stop]
            else:
                found[:, start:stop] = every[:, start:stop]
            own = level[start:stop] if axis == 1 else level[:, start:stop]  # the long components' ink alone
            along = np.flatnonzero(own.any(axis=1 - axis))  # the columns (rows) the rule reaches
            if not len(along):
                continue
            if back is not None:
                found = cv2.warpAffine(found, back, (w, h), flags=cv2.INTER_NEAREST)
            bands.append(Band(found & mask, int(along[-1] - along[0] + 1), max(1, stop - start - 2 * WOBBLE),
                              _reaches_edge(found & inside, axis == 1)))
    return bands


def _reaches_edge(rule: np.ndarray, level: bool) -> bool:
    """Does the rule (H, W) run to the image's edge, left or right (top or bottom for an upright one)?
    Printed rules run to the paper's edge, and a photo of writing on ruled paper seldom shows it; a row
    through a line of digits ends with the digits, inside the page's margins."""
    h, w = rule.shape
    side = w if level else h
    reach = max(EDGE_REACH_PX, round(EDGE_REACH * side))
    seen = np.flatnonzero(rule.any(axis=0 if level else 1))  # the columns (rows) it covers
    return bool(len(seen)) and bool(seen[0] <= reach or seen[-1] >= side - 1 - reach)


def _union(bands: list[Band], like: np.ndarray) -> np.ndarray:
    out = np.zeros_like(like)
    for b in bands:
        out |= b.pixels
    return out


def _turned(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray | None]:
    """`image` turned by -`angle` on a canvas that holds all of it, and the map (2, 3) back; (image, None)
    where the slope is below MIN_SLOPE."""
    if abs(angle) < MIN_SLOPE:
        return image, None
    h, w = image.shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -angle, 1.0)  # (2, 3) image -> canvas
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    size = (int(np.ceil(w * cos + h * sin)), int(np.ceil(w * sin + h * cos)))
    m[:, 2] += ((size[0] - w) / 2, (size[1] - h) / 2)
    return cv2.warpAffine(image, m, size, flags=cv2.INTER_NEAREST), cv2.invertAffineTransform(m)


def crossings(mask: np.ndarray, rules: np.ndarray) -> np.ndarray:
    """The rule pixels (H, W) uint8 that strokes cross, and all ink off the rules: a closing of the ink left
    without the rules, across them, fills gaps as wide as a rule where ink lies beyond both of its edges
    (rules are thinner than digits; a stroke that only touches a rule loses the rule's width)."""
    off = mask & ~rules
    thickness = 2 * int(np.ceil(cv2.distanceTransform(rules, cv2.DIST_L2, 3).max())) + 1
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
