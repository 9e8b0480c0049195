"""Page -> digit glyphs in reading order: connected components, cleaned, merged, grouped into lines.

`find_glyphs` takes an ink map (preprocess.ink_map) and returns lines of glyphs, each glyph one candidate
digit with its own ink. Touching digits stay one glyph here; cuts.py over-segments such a glyph into
candidate cuts and searches for the parts a verifier finds most likely to be single digits.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .preprocess import InkMap

Box = tuple[int, int, int, int]  # x, y, w, h in working-image pixels

# --- cleaning (sizes relative to the typical digit height of the page) ---
SIGNIFICANT_AREA = 0.3  # components with this fraction of the largest one's area set the digit height
SPECK_SIZE = 0.4  # a glyph shorter than this fraction of the digit height is not a digit
MIN_SPECK_PIXELS = 3  # ...and any component this small
MIN_DIGIT_PX = 12  # no digit is shorter than this (MNIST's are 20 px; specks of noise are smaller)
DOT_SIZE = 0.08  # pieces smaller than this fraction of the digit height are noise even before merging
RULE_ASPECT = 6.0  # a line this many times longer than thick ...
RULE_THICKNESS = 0.5  # ... thinner than this fraction of the digit height ...
RULE_LENGTH = 1.5  # ... and longer than this many digit heights (a 5's bar is shorter) is a ruled line
TALL_RULE = 2.0  # a vertical stroke taller than this many digit heights is a rule, not a 1
# A glyph this many times wider than tall that fills its box this much is a bar (a dash, a rule), not digits,
# even where it is the page's only ink: then it sets the "digit height" itself, the rules above (relative to
# that height) cannot see it, and a lone dash was cut into a row of 1s. Glyphs are judged after the pieces of
# a digit are merged (a 5's bar alone is as flat); handwritten digits, touching or not, fill far less.
BAR_ASPECT = 3.0
BAR_FILL = 0.6
FRAME_SPAN = 0.9  # a component spanning this fraction of both image sides ...
FRAME_FILL = 0.15  # ... with less ink than this fraction of its box is a frame around the page
BORDER_BLOB = 0.25  # a component touching the image edge and covering this much of it is background

# --- merging broken strokes (the bar of a 5 or 7, dotted strokes) ---
FRAGMENT_HEIGHT = 0.75  # one piece is shorter than this many digit heights (two full digits are two digits)
MERGE_MAX_HEIGHT = 1.35  # together they are at most this many digit heights tall ...
MERGE_MAX_WIDTH = 1.5  # ... and wide (a 5 whose bar overhangs its belly is 1.4 heights wide); and either stacked:
MERGE_OVERLAP = 0.3  # overlapping horizontally by this fraction of the narrower piece ...
FRAGMENT_GAP = 0.15  # ... with a vertical gap under this fraction of the digit height; or small and near:
# (FRAGMENT_GAP was named MERGE_GAP = 0.3, shadowed by the lattice's MERGE_GAP = 0.15 below: 0.15 is what ran)
SMALL_FRAGMENT = 0.5  # a piece flatter than this fraction of the digit height (no digit is) ...
NEAR = 0.1  # ... within this fraction of the digit height of the other

# --- lines ---
LINE_OVERLAP = 0.4  # vertical overlap with the line's last glyph, as a fraction of the shorter one
SKEW_GLYPHS = 3  # a line of at least this many glyphs tells the page's slant (two digits' centres: too few) ...
SKEW_FIT = 0.2  # ... when their centres lie within this many line heights (RMS) of a straight line
MIN_SKEW_DEG = 1.0  # a page askew by less than this is read as it is (turning resamples the ink)
MAX_SKEW_DEG = 30.0  # glyphs chained into a line (LINE_OVERLAP) can't climb much steeper than this
SPACE_GAP = 1.0  # a gap wider than this many line heights is a space

# --- broken digits across lines: pieces that group_lines put on two lines (a 5's top above its hook) ---
STACK_OVERLAP = 0.3  # glyphs on neighbouring lines overlapping horizontally by this fraction of the narrower ...
STACK_GAP = 0.25  # ... with a vertical gap under this fraction of the taller one may be one digit's pieces


@dataclass
class Glyph:
    """One candidate digit: its box and its own ink (other components' pixels are zero)."""

    box: Box
    ink: np.ndarray  # (h, w) float32, 0.5 = stroke edge

    def __repr__(self) -> str:
        return f"Glyph(box={self.box})"


def find_glyphs(ink: InkMap, min_digit_px: int = MIN_DIGIT_PX) -> list[list[Glyph]]:
    """Ink map -> lines (top to bottom) of glyphs (left to right); none shorter than `min_digit_px`."""
    labels, stats = label_components(ink.mask)
    keep = drop_noise(stats, ink.mask.shape)
    groups = merge_fragments(stats, keep, digit_height(stats[keep]))
    glyphs = [g for g in (make_glyph(ink.ink, labels, stats, ids) for ids in groups) if not is_bar(g)]
    height = digit_height(np.array([g.box for g in glyphs]).reshape(-1, 4), area=False)
    glyphs = [g for g in glyphs if g.box[3] >= max(SPECK_SIZE * height, min_digit_px)]
    return group_lines(glyphs)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components: labels (H, W) int32 and stats (n, 5) [x, y, w, h, area], background dropped."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    stats = stats.copy()
    stats[0] = 0  # label 0 is the paper
    return labels, stats


def digit_height(stats: np.ndarray, area: bool = True) -> float:
    """Typical digit height: the median height of the significant components (rows [x, y, w, h, area?]),
    weighted by their ink: on a page of one 5 the broken-off bar (as much ink as half its body) is one of two
    significant components, and an unweighted median would halve the height."""
    if len(stats) == 0:
        return 0.0
    size = stats[:, 4] if area else stats[:, 2] * stats[:, 3]
    significant = size >= SIGNIFICANT_AREA * size.max()
    heights, weights = stats[significant, 3], size[significant].astype(np.float64)
    order = np.argsort(heights, kind="stable")
    half = np.searchsorted(np.cumsum(weights[order]), weights.sum() / 2)  # area-weighted median
    return float(heights[order][half])


def drop_noise(stats: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Indices of components that may be digits: no specks, rules, frames or background blobs."""
    H, W = shape
    x, y, w, h, area = stats.T
    alive = area >= MIN_SPECK_PIXELS
    touches = (x == 0) | (y == 0) | (x + w == W) | (y + h == H)
    alive &= ~(touches & (w * h >= BORDER_BLOB * H * W) & (alive.sum() > 1))
    alive &= ~((w >= FRAME_SPAN * W) & (h >= FRAME_SPAN * H) & (area < FRAME_FILL * w * h) & (alive.sum() > 1))
    height = digit_height(stats[alive]) if alive.any() else 0.0
    flat_rule = (w >= RULE_ASPECT * h) & (h < RULE_THICKNESS * height) & (w > RULE_LENGTH * height)
    tall_rule = (h >= RULE_ASPECT * w) & (h > TALL_RULE * height)
    alive &= ~(flat_rule | tall_rule)
    alive &= np.maximum(w, h) >= DOT_SIZE * height
    return np.flatnonzero(alive)


def merge_fragments(stats: np.ndarray, keep: np.ndarray, height: float) -> list[list[int]]:
    """Group the kept components so that the pieces of one broken digit are one group (union-find)."""
    parent = {int(i): int(i) for i in keep}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    boxes = {int(i): stats[i, :4].astype(int) for i in keep}
    order = sorted(parent, key=lambda i: -stats[i, 4])  # big pieces first: fragments join their body
    for a, b in _pairs_in_reach(order, boxes, height):
        ra, rb = root(a), root(b)
        if ra != rb and _belong_together(boxes[ra], boxes[rb], height):
            parent[rb] = ra
            boxes[ra] = _union(boxes[ra], boxes[rb])
    groups: dict[int, list[int]] = {}
    for i in parent:
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _pairs_in_reach(order: list[int], boxes: dict[int, np.ndarray], height: float) -> Iterator[tuple[int, int]]:
    """The pairs of itertools.combinations(order, 2), in its order, less those too far apart ever to merge.

    A merge never makes a box wider than MERGE_MAX_WIDTH or taller than MERGE_MAX_HEIGHT digit heights, and a
    group's box holds its pieces' boxes, so two pieces whose left (or top) edges are further apart than that
    never join, whatever merged before: skipping them changes no result. Bucketing by those edges makes a page
    of thousands of blobs (a noisy scan, a page of print) linear instead of quadratic.
    """
    reach_x, reach_y = max(MERGE_MAX_WIDTH * height, 1.0), max(MERGE_MAX_HEIGHT * height, 1.0)
    rank = {c: r for r, c in enumerate(order)}
    cell = {c: (int(boxes[c][0] // reach_x), int(boxes[c][1] // reach_y)) for c in order}
    cells: dict[tuple[int, int], list[int]] = {}
    for c in order:
        cells.setdefault(cell[c], []).append(c)
    for a in order:
        cx, cy = cell[a]
        near = [b for dx in (-1, 0, 1) for dy in (-1, 0, 1) for b in cells.get((cx + dx, cy + dy), ())
                if rank[b] > rank[a]]
        for b in sorted(near, key=rank.__getitem__):
            yield a, b


def _belong_together(a: np.ndarray, b: np.ndarray, height: float) -> bool:
    """Two pieces of one digit: stacked (not side by side), close, and together no taller than a digit."""
    if min(a[3], b[3]) >= FRAGMENT_HEIGHT * height:
        return False  # two full-height pieces are two digits
    h_overlap = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    v_overlap = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    merged_h = max(a[1] + a[3], b[1] + b[3]) - min(a[1], b[1])
    merged_w = max(a[0] + a[2], b[0] + b[2]) - min(a[0], b[0])
    if merged_h > MERGE_MAX_HEIGHT * height or merged_w > MERGE_MAX_WIDTH * height:
        return False
    stacked = h_overlap >= MERGE_OVERLAP * min(a[2], b[2]) and -v_overlap < FRAGMENT_GAP * height
    small = min(a[3], b[3]) < SMALL_FRAGMENT * height  # a flat piece: a bar, a dot, a serif
    near = h_overlap > -NEAR * height and v_overlap > -NEAR * height
    return stacked or (small and near)


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return np.array([x0, y0, x1 - x0, y1 - y0])


def is_bar(glyph: Glyph) -> bool:
    """A dash or a rule: flat (BAR_ASPECT) and nearly solid ink (BAR_FILL)."""
    _, _, w, h = glyph.box
    return w >= BAR_ASPECT * h and float((glyph.ink > 0).mean()) >= BAR_FILL


def make_glyph(ink: np.ndarray, labels: np.ndarray, stats: np.ndarray, ids: list[int]) -> Glyph:
    """The glyph of a group of components: their joint box, and only their pixels' ink."""
    box = stats[ids[0], :4].astype(int)
    for i in ids[1:]:
        box = _union(box, stats[i, :4].astype(int))
    x, y, w, h = (int(v) for v in box)
    window = labels[y:y + h, x:x + w]
    own = window == ids[0] if len(ids) == 1 else np.isin(window, ids)  # (h, w); isin costs 10x a comparison
    return Glyph((x, y, w, h), np.where(own, ink[y:y + h, x:x + w], 0).astype(np.float32))


def deskew_angle(lines: list[list[Glyph]]) -> float:
    """The angle (degrees, counter-clockwise as shown, cv2's sense) to turn a page by so that its lines of
    digits run level: the mean slope of the lines' glyph centres (weighted by glyphs) over the lines of
    SKEW_GLYPHS or more whose centres fit a straight line; 0.0 where none does, or the page is level to within
    MIN_SKEW_DEG. Digits' own slant (a shear of each glyph) leaves their centres on the line."""
    slopes, weights = [], []
    for line in lines:
        if len(line) < SKEW_GLYPHS:
            continue
        centres = np.array([(g.box[0] + g.box[2] / 2, g.box[1] + g.box[3] / 2) for g in line])  # (n, 2)
        x, y = (centres - centres.mean(0)).T
        if not x.any():
            continue
        slope = float(x @ y / (x @ x))  # least squares; image rows grow downward
        if np.sqrt(np.mean((y - slope * x) ** 2)) <= SKEW_FIT * line_height(line):
            slopes.append(slope)
            weights.append(len(line))
    if not slopes:
        return 0.0
    degrees = float(np.degrees(np.arctan(np.average(slopes, weights=weights))))
    return degrees if MIN_SKEW_DEG <= abs(degrees) <= MAX_SKEW_DEG else 0.0


def group_lines(glyphs: list[Glyph]) -> list[list[Glyph]]:
    """Chain glyphs left to right into lines (each overlapping the previous one vertically); top to bottom."""
    lines: list[list[Glyph]] = []
    for g in sorted(glyphs, key=lambda g: g.box[0] + g.box[2] / 2):
        best, best_overlap = None, 0.0
        for line in lines:
            overlap = _line_overlap(line[-1].box, g.box)
            if overlap > best_overlap:
                best, best_overlap = line, overlap
        if best is not None and best_overlap >= LINE_OVERLAP:
            best.append(g)
        else:
            lines.append([g])
    return sorted(lines, key=lambda line: float(np.median([g.box[1] + g.box[3] / 2 for g in line])))


def _line_overlap(prev: Box, box: Box) -> float:
    """Vertical overlap as a fraction of the shorter box, however far apart they are: glyphs on one row are
    one line (a wide gap becomes a space), so a row's groups are never ordered by a pixel of height."""
    overlap = min(prev[1] + prev[3], box[1] + box[3]) - max(prev[1], box[1])
    return max(0.0, overlap / min(prev[3], box[3]))


def stacked_pairs(lines: list[list[Glyph]]) -> list[tuple[int, int, int, int]]:
    """(line, glyph, next line, glyph) of glyphs on neighbouring lines stacked closely enough to be pieces of
    one broken digit; whether they are is for the verifier to say (lines of a page are further apart)."""
    out = []
    for n in range(len(lines) - 1):
        for i, a in enumerate(lines[n]):
            for j, b in enumerate(lines[n + 1]):
                if _stacked(a.box, b.box):
                    out.append((n, i, n + 1, j))
    return out


def _stacked(a: Box, b: Box) -> bool:
    h_overlap = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    v_gap = max(a[1], b[1]) - min(a[1] + a[3], b[1] + b[3])  # < 0: they overlap vertically
    return h_overlap >= STACK_OVERLAP * min(a[2], b[2]) and v_gap < STACK_GAP * max(a[3], b[3])


def line_height(line: list[Glyph]) -> float:
    return float(np.median([g.box[3] for g in line]))


def spaces_before(line: list[Glyph]) -> list[bool]:
    """For each glyph, whether a wide gap (a space) separates it from the previous one."""
    height = line_height(line)
    gaps = [0] + [b.box[0] - (a.box[0] + a.box[2]) for a, b in itertools.pairwise(line)]
    return [gap > SPACE_GAP * height for gap in gaps]
