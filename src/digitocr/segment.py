"""Page -> digit glyphs in reading order: connected components, cleaned, merged, grouped into lines.

`find_glyphs` takes an ink map (preprocess.ink_map) and returns lines of glyphs, each glyph one candidate
digit with its own ink. Touching digits stay one glyph here; `lattice` over-segments a glyph into
candidate cuts (paths that follow the gap between touching strokes), and `best_path` picks the parts,
by dynamic programming, that a verifier finds most likely to be single digits.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from .preprocess import InkMap, stroke_width

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
FRAME_SPAN = 0.9  # a component spanning this fraction of both image sides ...
FRAME_FILL = 0.15  # ... with less ink than this fraction of its box is a frame around the page
BORDER_BLOB = 0.25  # a component touching the image edge and covering this much of it is background

# --- merging broken strokes (the bar of a 5 or 7, dotted strokes) ---
FRAGMENT_HEIGHT = 0.75  # one piece is shorter than this many digit heights (two full digits are two digits)
MERGE_MAX_HEIGHT = 1.35  # together they are at most this many digit heights tall ...
MERGE_MAX_WIDTH = 1.3  # ... and wide; and either stacked:
MERGE_OVERLAP = 0.3  # overlapping horizontally by this fraction of the narrower piece ...
MERGE_GAP = 0.3  # ... with a vertical gap under this fraction of the digit height; or small and near:
SMALL_FRAGMENT = 0.5  # a piece flatter than this fraction of the digit height (no digit is) ...
NEAR = 0.1  # ... within this fraction of the digit height of the other

# --- lines ---
LINE_OVERLAP = 0.4  # vertical overlap with the line's last glyph, as a fraction of the shorter one
LINE_REACH = 4.0  # a glyph further right than this many heights starts a new line
SPACE_GAP = 1.0  # a gap wider than this many line heights is a space

# --- touching digits (lengths in line heights, ink in stroke widths) ---
SPLIT_ASPECT = 0.5  # a glyph wider than this may be several digits (two touching 1s are narrow)
MIN_PART = 0.12  # no cut leaves a part narrower than this ...
MAX_PART = 1.5  # ... and parts wider than this are only tried between neighbouring cuts
CUT_SPACING = 0.08  # candidate cuts are at least this far apart where they cross the middle row
MAX_CUT_INK = 3.0  # a path crossing more ink than this is no junction of two digits
DRIFT = 3.0  # a cut's path moving sideways by one line height costs this much (it follows gaps)
THROUGH_ROWS = (0.5,)  # shortest-path cuts pass through points of these rows (fractions of the height)
STRAIGHT_CUTS = 2  # straight cuts tried at the lowest points of the column profile, for each of ...
SLANTS = (-0.4, -0.2, 0.0, 0.2, 0.4)  # ... these slants (columns per row; positive leans right at the top)
MIN_SIDE_INK = 0.08  # a cut leaves at least this share of the glyph's ink on either side
SAME_CUT = 0.03  # cuts that split the ink differently by less than this share are one cut
MAX_CUTS_PER_HEIGHT = 5.0  # at most this many cuts per line height of glyph width
SLIVER = 0.15  # bits of a neighbouring digit left in a part, below this fraction of its ink, are dropped
WIDE_ASPECT = 1.0  # single digits are seldom wider than tall: beyond this, ...
WIDE_SIGMA = 0.25  # ... log-width penalty spread (MNIST: 5% of digits are wider than 1.25)
LOG_P_TOUCH = -0.5  # log prior odds of each extra digit hiding in one glyph (touching is the exception)
CUT_FREE = 1.5  # a cut through up to this much ink costs nothing (touching digits meet briefly) ...
CUT_WEIGHT = 0.5  # ... each stroke width more costs this much log-odds
MIN_P = 1e-4  # probabilities are floored here before taking logs


@dataclass
class Glyph:
    """One candidate digit: its box and its own ink (other components' pixels are zero)."""

    box: Box
    ink: np.ndarray  # (h, w) float32, 0.5 = stroke edge

    def __repr__(self) -> str:
        return f"Glyph(box={self.box})"


def find_glyphs(ink: InkMap) -> list[list[Glyph]]:
    """Ink map -> lines (top to bottom) of glyphs (left to right)."""
    labels, stats = label_components(ink.mask)
    keep = drop_noise(stats, ink.mask.shape)
    groups = merge_fragments(stats, keep, digit_height(stats[keep]))
    glyphs = [make_glyph(ink.ink, labels, stats, ids) for ids in groups]
    height = digit_height(np.array([g.box for g in glyphs]).reshape(-1, 4), area=False)
    glyphs = [g for g in glyphs if g.box[3] >= max(SPECK_SIZE * height, MIN_DIGIT_PX)]
    return group_lines(glyphs)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components: labels (H, W) int32 and stats (n, 5) [x, y, w, h, area], background dropped."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    stats = stats.copy()
    stats[0] = 0  # label 0 is the paper
    return labels, stats


def digit_height(stats: np.ndarray, area: bool = True) -> float:
    """Typical digit height: the median height of the significant components (rows [x, y, w, h, area?])."""
    if len(stats) == 0:
        return 0.0
    size = stats[:, 4] if area else stats[:, 2] * stats[:, 3]
    significant = stats[size >= SIGNIFICANT_AREA * size.max()]
    return float(np.median(significant[:, 3]))


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
    for a, b in itertools.combinations(order, 2):
        ra, rb = root(a), root(b)
        if ra != rb and _belong_together(boxes[ra], boxes[rb], height):
            parent[rb] = ra
            boxes[ra] = _union(boxes[ra], boxes[rb])
    groups: dict[int, list[int]] = {}
    for i in parent:
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


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
    stacked = h_overlap >= MERGE_OVERLAP * min(a[2], b[2]) and -v_overlap < MERGE_GAP * height
    small = min(a[3], b[3]) < SMALL_FRAGMENT * height  # a flat piece: a bar, a dot, a serif
    near = h_overlap > -NEAR * height and v_overlap > -NEAR * height
    return stacked or (small and near)


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return np.array([x0, y0, x1 - x0, y1 - y0])


def make_glyph(ink: np.ndarray, labels: np.ndarray, stats: np.ndarray, ids: list[int]) -> Glyph:
    """The glyph of a group of components: their joint box, and only their pixels' ink."""
    box = stats[ids[0], :4].astype(int)
    for i in ids[1:]:
        box = _union(box, stats[i, :4].astype(int))
    x, y, w, h = (int(v) for v in box)
    own = np.isin(labels[y:y + h, x:x + w], ids)  # (h, w)
    return Glyph((x, y, w, h), np.where(own, ink[y:y + h, x:x + w], 0).astype(np.float32))


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
    """Vertical overlap as a fraction of the shorter box; 0 when too far to the right."""
    if box[0] - (prev[0] + prev[2]) > LINE_REACH * max(prev[3], box[3]):
        return 0.0
    overlap = min(prev[1] + prev[3], box[1] + box[3]) - max(prev[1], box[1])
    return max(0.0, overlap / min(prev[3], box[3]))


def line_height(line: list[Glyph]) -> float:
    return float(np.median([g.box[3] for g in line]))


def spaces_before(line: list[Glyph]) -> list[bool]:
    """For each glyph, whether a wide gap (a space) separates it from the previous one."""
    height = line_height(line)
    gaps = [0] + [b.box[0] - (a.box[0] + a.box[2]) for a, b in itertools.pairwise(line)]
    return [gap > SPACE_GAP * height for gap in gaps]




# --- touching digits: candidate cuts, and the parts between them ---


@dataclass
class Cut:
    """A path from the top of a glyph to its bottom: in row r, columns < path[r] lie left of it."""

    path: np.ndarray  # (h,) int
    ink: float  # ink it crosses, in stroke widths

    def __repr__(self) -> str:
        return f"Cut(x={float(self.path.mean()):.1f}, ink={self.ink:.2f})"


@dataclass
class Lattice:
    """Ways to read one glyph: boundaries 0 (left edge), cuts 1..K, K+1 (right edge), and the part between
    boundaries i < j for each edge (i, j). Edge 0 is the whole glyph."""

    glyph: Glyph
    cuts: list[Cut]
    edges: list[tuple[int, int]]
    parts: list[Glyph]

    def __repr__(self) -> str:
        return f"Lattice({self.glyph!r}, cuts={len(self.cuts)}, parts={len(self.parts)})"


def may_touch(glyph: Glyph, height: float) -> bool:
    return glyph.box[2] > SPLIT_ASPECT * height


def lattice(glyph: Glyph, height: float) -> Lattice:
    """The glyph whole, and if it is wide, cut at every candidate junction into parts of plausible width."""
    cuts = find_cuts(glyph, height) if may_touch(glyph, height) else []
    h, w = glyph.ink.shape
    bounds = [np.zeros(h, int), *(c.path for c in cuts), np.full(h, w)]
    mid = [float(b.mean()) for b in bounds]
    edges, parts = [(0, len(bounds) - 1)], [glyph]
    for i, j in itertools.combinations(range(len(bounds)), 2):
        if (i, j) == (0, len(bounds) - 1) or (j > i + 1 and mid[j] - mid[i] > MAX_PART * height):
            continue
        part = cut_part(glyph, bounds[i], bounds[j])
        if part is not None:
            edges.append((i, j))
            parts.append(part)
    return Lattice(glyph, cuts, edges, parts)


def find_cuts(glyph: Glyph, height: float) -> list[Cut]:
    """Candidate junctions, left to right: shortest-path cuts (the cheapest top-to-bottom paths through
    points of a few rows, bending around strokes into the gaps) and straight cuts at the column profile's
    minima; those that cross little ink, leave real ink on both sides and split it differently."""
    mask = glyph.ink >= 0.5
    w = mask.shape[1]
    stroke = max(stroke_width(mask.astype(np.uint8)), 1.0)
    cost = np.minimum(glyph.ink, 1.0) / stroke  # (h, w) stroke widths crossed per pixel
    margin = max(1, int(MIN_PART * height))
    if w <= 2 * margin:
        return []
    candidates = _shortest_path_cuts(cost, DRIFT / max(height, 1.0), margin, int(CUT_SPACING * height) or 1)
    candidates += _straight_cuts(cost, margin, int(CUT_SPACING * height) or 1)
    total = int(mask.sum())
    most = max(1, int(MAX_CUTS_PER_HEIGHT * w / max(height, 1.0)))
    cuts: list[Cut] = []
    lefts: list[np.ndarray] = []
    cols = np.arange(w)[None, :]
    for cut in sorted(candidates, key=lambda c: c.ink):
        if cut.ink > MAX_CUT_INK or len(cuts) >= most:
            break
        left = mask & (cols < cut.path[:, None])
        n = int(left.sum())
        if min(n, total - n) < MIN_SIDE_INK * total:
            continue
        if any(int((left ^ seen).sum()) < SAME_CUT * total for seen in lefts):
            continue
        cuts.append(cut)
        lefts.append(left)
    return sorted(cuts, key=lambda cut: float(cut.path.mean()))


def _straight_cuts(cost: np.ndarray, margin: int, spacing: int) -> list[Cut]:
    """Straight cuts along each slant (handwriting leans): per slant, the few crossing least ink among
    those that leave at least MIN_SIDE_INK of the ink on either side."""
    h, w = cost.shape
    rows = np.arange(h)[:, None]
    padded = np.pad(cost, ((0, 0), (1, 1)))  # columns 0 and w + 1 are paper
    before = np.concatenate([np.zeros((h, 1)), np.cumsum(cost, 1)], 1)  # (h, w + 1) ink left of each column
    total = before[:, -1].sum()
    cuts = []
    for slant in SLANTS:
        offsets = np.round(slant * (np.arange(h) - h / 2)).astype(int)  # (h,) the cut's shift per row
        cols = np.arange(w)[None, :] + offsets[:, None]  # (h, w): the cut left of column cols[r, c] in row r
        profile = padded[rows, np.clip(cols, -1, w) + 1].sum(0)  # (w,) ink each cut crosses
        left = before[rows, np.clip(cols, 0, w)].sum(0)  # (w,) ink left of each cut
        side = np.minimum(left, total - left) >= MIN_SIDE_INK * total
        profile = np.where(side, profile, np.inf)
        for c in _spaced_minima(profile, margin, spacing)[:STRAIGHT_CUTS]:
            if np.isfinite(profile[c]):
                cuts.append(Cut(np.clip(c + offsets, 0, w), float(profile[c])))
    return cuts


def _spaced_minima(values: np.ndarray, margin: int, spacing: int) -> list[int]:
    """Columns in [margin, len - margin) by increasing value, each at least `spacing` from those before."""
    chosen: list[int] = []
    for c in np.argsort(values[margin:len(values) - margin], kind="stable") + margin:
        if all(abs(int(c) - d) >= spacing for d in chosen):
            chosen.append(int(c))
    return chosen


def _shortest_path_cuts(cost: np.ndarray, step: float, margin: int, spacing: int) -> list[Cut]:
    """For each of a few rows, the cheapest paths through its columns (spaced apart), as cuts."""
    h, _ = cost.shape
    down, down_move = _path_costs(cost, step)
    up, up_move = _path_costs(cost[::-1], step)
    cuts = []
    for fraction in THROUGH_ROWS:
        m = min(h - 1, int(fraction * h))
        through = down[m] + up[h - 1 - m] - cost[m]  # (w,) the best path through (m, c)
        for c in _spaced_minima(through, margin, spacing):
            if through[c] > MAX_CUT_INK:
                break
            path = np.empty(h, int)
            path[m] = c
            for r in range(m, 0, -1):  # back up to the top ...
                path[r - 1] = path[r] + down_move[r, path[r]]
            col = c
            for r in range(h - 1 - m, 0, -1):  # ... and down to the bottom (rows flipped)
                col += int(up_move[r, col])
                path[h - r] = col
            cuts.append(Cut(path + 1, float(through[c])))  # the path's own pixels go left
    return cuts


def _path_costs(cost: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest paths from the top row down to each pixel, moving at most one column per row.

    Returns the accumulated cost (h, w) and, per pixel, the column offset (-1, 0, 1) of the row above.
    """
    h, w = cost.shape
    acc = np.empty_like(cost)
    move = np.zeros((h, w), np.int8)
    acc[0] = cost[0]
    inf = np.full(1, np.inf, cost.dtype)
    cols = np.arange(w)
    for r in range(1, h):
        prev = acc[r - 1]
        options = np.stack([np.concatenate([inf, prev[:-1]]) + step, prev,
                            np.concatenate([prev[1:], inf]) + step])  # (3, w): from c-1, c, c+1
        k = options.argmin(0)
        acc[r] = cost[r] + options[k, cols]
        move[r] = k - 1
    return acc, move


def cut_part(glyph: Glyph, left: np.ndarray, right: np.ndarray) -> Glyph | None:
    """The ink between two cut paths (each (h,) columns), without slivers of the neighbours; None if empty."""
    cols = np.arange(glyph.ink.shape[1])[None, :]
    inside = (cols >= left[:, None]) & (cols < right[:, None])
    ink = _drop_slivers(np.where(inside, glyph.ink, 0).astype(np.float32))
    rows, used = np.flatnonzero((ink >= 0.5).any(1)), np.flatnonzero((ink >= 0.5).any(0))
    if rows.size == 0:
        return None
    top, bottom, a, b = int(rows[0]), int(rows[-1]) + 1, int(used[0]), int(used[-1]) + 1
    x, y = glyph.box[:2]
    return Glyph((x + a, y + top, b - a, bottom - top), ink[top:bottom, a:b])


def _drop_slivers(ink: np.ndarray) -> np.ndarray:
    mask = (ink >= 0.5).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 2:
        return ink
    area = stats[1:, 4]
    small = np.flatnonzero(area < SLIVER * area.max()) + 1
    return np.where(np.isin(labels, small), 0, ink).astype(np.float32)


def edge_scores(lat: Lattice, p_single: np.ndarray, height: float) -> np.ndarray:
    """Log-score of each edge: P(one digit) of its part, a prior on its width, and the cost of its right cut."""
    scores = np.log(np.maximum(p_single, MIN_P))
    for e, ((_, j), part) in enumerate(zip(lat.edges, lat.parts, strict=True)):
        aspect = max(part.box[2], 1) / max(height, 1.0)
        scores[e] -= 0.5 * (max(np.log(aspect / WIDE_ASPECT), 0.0) / WIDE_SIGMA) ** 2
        if j <= len(lat.cuts):  # an inner cut: one more digit hides in the glyph
            scores[e] += LOG_P_TOUCH - CUT_WEIGHT * max(0.0, lat.cuts[j - 1].ink - CUT_FREE)
    return scores


def best_path(lat: Lattice, scores: np.ndarray) -> list[int]:
    """Indices of the edges, left to right, of the best-scoring way through the lattice (Viterbi)."""
    n = len(lat.cuts) + 2
    best = np.full(n, -np.inf)
    best[0] = 0.0
    back = [-1] * n
    for e in sorted(range(len(lat.edges)), key=lambda e: lat.edges[e]):
        i, j = lat.edges[e]
        if best[i] + scores[e] > best[j]:
            best[j], back[j] = best[i] + scores[e], e
    path, j = [], n - 1
    while j > 0:
        path.append(back[j])
        j = lat.edges[back[j]][0]
    return path[::-1]
