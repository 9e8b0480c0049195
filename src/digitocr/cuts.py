"""Touching digits: candidate cuts through a glyph, the parts between them, and the best way through.

`find_cuts` proposes paths from a glyph's top to its bottom (straight cuts along a few slants, and
shortest-path cuts that bend around strokes); `Lattice` holds a line's glyphs and their cuts, and the parts
between any two boundaries (also joins of neighbouring glyphs: pieces of a broken digit); `PathSearch`
finds, best first, the reading whose parts a verifier finds most surely single digits.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from .preprocess import stroke_width
from .segment import Glyph

# --- touching digits (lengths in line heights, ink in stroke widths) ---
SPLIT_ASPECT = 0.5  # a glyph wider than this may be several digits (two touching 1s are narrow)
MIN_PART = 0.12  # no part is narrower than this ...
MAX_PART = 1.5  # ... or wider (between candidate cuts; the whole glyph is always tried)
SLANTS = (-0.4, -0.2, 0.0, 0.2, 0.4)  # straight cuts lean like handwriting: columns per row (+: right at top)
CUT_STEP = 0.03  # straight cuts of one slant are this far apart
SEAM_CUTS = 3  # plus this many shortest-path cuts (bending around strokes) through the middle row ...
DRIFT = 3.0  # ... where moving sideways by one line height costs this much ink
MAX_CUT_INK = 6.0  # a cut crossing more ink than this is no junction (overlapping strokes cross much)
MIN_SIDE_INK = 0.08  # a cut leaves at least this share of the glyph's ink on either side
SAME_CUT = 0.05  # cuts whose parts differ by less than this share of the ink are one cut (the cheaper)
MAX_CUTS_PER_HEIGHT = 25  # at most this many cuts per line height of glyph width
SLIVER = 0.15  # bits of a neighbouring digit left in a part, below this fraction of its ink, are dropped
WIDE_ASPECT = 1.0  # single digits are seldom wider than tall: beyond this, ...
WIDE_SIGMA = 0.25  # ... log-width penalty spread (MNIST training digits: 2.4% wider than 1.25, 0.5% than 1.65)
SMALL_PART = 0.8  # a part cut from a glyph whose longest side is under this many line heights: MNIST frames every
SMALL_SIGMA = 0.15  # digit's longest side alike, and one writer's digits are alike in size; log-size penalty spread
LOG_P_TOUCH = -0.25  # log prior odds of each extra digit hiding in one glyph (touching is the exception)
CUT_FREE = 3.5  # a cut through up to this much ink costs nothing: touching digits overlap, and a 1 drawn
# across a 5 is crossed 2-3.5 stroke widths deep (was 1.5, LOG_P_TOUCH -0.5: seeds 1+3 touching 64 -> 56 misses)
CUT_WEIGHT = 0.5  # ... each stroke width more costs this much log-odds
MIN_P = 1e-4  # probabilities are floored here before taking logs
MERGE_GAP = 0.15  # neighbouring glyphs this close (or overlapping) ...
MERGE_WIDTH = 1.2  # ... and together no wider than this may be the pieces of one broken digit ...
MAX_MERGE = 3  # ... up to this many of them


@dataclass
class Cut:
    """A path from the top of a glyph to its bottom: in row r, columns < path[r] lie left of it."""

    path: np.ndarray  # (h,) int
    ink: float  # ink it crosses, in stroke widths

    def __repr__(self) -> str:
        return f"Cut(x={float(self.path.mean()):.1f}, ink={self.ink:.2f})"


def may_touch(glyph: Glyph, height: float) -> bool:
    return glyph.box[2] > SPLIT_ASPECT * height


def find_cuts(glyph: Glyph, height: float) -> list[Cut]:
    """Candidate junctions of touching digits, left to right.

    Straight cuts at every few columns along each slant, and shortest-path cuts that bend around strokes;
    kept when they cross little ink, leave real ink on both sides and split it unlike any cheaper cut.
    Which of them are junctions is for the verifier to say: ink alone can't tell a junction from a stroke.
    """
    mask = glyph.ink >= 0.5
    h, w = mask.shape
    margin = max(1, int(MIN_PART * height))
    if w <= 2 * margin or not mask.any():
        return []
    stroke = max(stroke_width(mask.astype(np.uint8)), 1.0)
    cost = np.minimum(glyph.ink, 1.0) / stroke  # (h, w) stroke widths crossed per pixel
    candidates = _straight_cuts(cost, margin, max(1, round(CUT_STEP * height)))
    candidates += _seam_cuts(cost, DRIFT / max(height, 1.0), margin)
    candidates = [c for c in sorted(candidates, key=lambda c: c.ink) if c.ink <= MAX_CUT_INK]
    if not candidates:
        return []
    before = np.concatenate([np.zeros((h, 1)), np.cumsum(mask, 1)], 1)  # (h, w + 1) ink left of each column
    total = before[:, -1].sum()
    lefts = before[np.arange(h)[None, :], np.stack([c.path for c in candidates])]  # (N, h) ink left, per row
    side = np.minimum(lefts.sum(1), total - lefts.sum(1)) >= MIN_SIDE_INK * total
    most = max(1, int(MAX_CUTS_PER_HEIGHT * w / max(height, 1.0)))
    return sorted(_distinct(candidates, lefts, np.flatnonzero(side), SAME_CUT * total, most),
                  key=lambda cut: float(cut.path.mean()))


def _distinct(candidates: list[Cut], lefts: np.ndarray, order: np.ndarray, apart: float, most: int) -> list[Cut]:
    """Cheapest first, each kept cut hiding the candidates that split the ink like it (`lefts` (N, h): ink
    left of each candidate, per row; alike: less than `apart` apart, summed over rows), up to `most` cuts.

    Two cuts whose totals of ink to their left differ by `apart` or more can't be alike (|sum a - sum b| <=
    sum |a - b|), so a candidate is compared only with the kept cuts whose totals lie nearer than that: a
    glyph as wide as a page has thousands of candidates, and comparing all pairs (the all-pairs distance
    matrix this replaces) took minutes and gigabytes on a 20,000-px-wide image."""
    totals = lefts.sum(1)  # (N,)
    kept_totals: list[float] = []  # sorted
    kept_rows: list[int] = []  # the candidates kept, in the same order as kept_totals
    cuts: list[Cut] = []
    for n in order:
        lo = bisect.bisect_right(kept_totals, totals[n] - apart)
        hi = bisect.bisect_left(kept_totals, totals[n] + apart)
        near = kept_rows[lo:hi]
        if near and (np.abs(lefts[near] - lefts[n]).sum(1) < apart).any():
            continue
        at = bisect.bisect_left(kept_totals, totals[n])
        kept_totals.insert(at, float(totals[n]))
        kept_rows.insert(at, int(n))
        cuts.append(candidates[n])
        if len(cuts) == most:
            break
    return cuts


def _straight_cuts(cost: np.ndarray, margin: int, step: int) -> list[Cut]:
    """Straight cuts along each slant, every `step` columns of the middle row."""
    h, w = cost.shape
    rows = np.arange(h)[:, None]
    padded = np.pad(cost, ((0, 0), (1, 1)))  # columns 0 and w + 1 are paper
    starts = np.arange(margin, w - margin + 1, step)
    cuts = []
    for slant in SLANTS:
        offsets = np.round(slant * (np.arange(h) - h / 2)).astype(int)  # (h,) the cut's shift per row
        paths = np.clip(starts[None, :] + offsets[:, None], 0, w)  # (h, n): cut left of column paths[r, k]
        crossed = padded[rows, paths].sum(0)  # (n,) the ink in the column each cut runs through
        cuts += [Cut(paths[:, k], float(crossed[k])) for k in range(len(starts))]
    return cuts


def _seam_cuts(cost: np.ndarray, step: float, margin: int) -> list[Cut]:
    """The cheapest top-to-bottom paths (moving at most a column per row) through the middle row."""
    h, w = cost.shape
    down, down_move = _path_costs(cost, step)
    up, up_move = _path_costs(cost[::-1], step)
    m = h // 2
    through = down[m] + up[h - 1 - m] - cost[m]  # (w,) the best path through (m, c)
    chosen: list[int] = []
    for c in np.argsort(through[margin:w - margin], kind="stable") + margin:
        if len(chosen) == SEAM_CUTS:
            break
        if all(abs(int(c) - d) > margin for d in chosen):
            chosen.append(int(c))
    cuts = []
    for c in chosen:
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
    from_left, from_right = np.full(w, np.inf, cost.dtype), np.full(w, np.inf, cost.dtype)
    for r in range(1, h):
        prev = acc[r - 1]
        from_left[1:] = prev[:-1] + step
        from_right[:-1] = prev[1:] + step
        best = np.minimum(prev, np.minimum(from_left, from_right))
        move[r] = np.where(best == prev, 0, np.where(best == from_left, -1, 1))
        acc[r] = cost[r] + best
    return acc, move


class Lattice:
    """Ways to read a run of neighbouring glyphs, each maybe touching digits, or pieces of one broken digit.

    Boundaries are numbered left to right: each glyph's left edge, its candidate cuts, and after the last
    glyph its right edge (a glyph's right edge is its neighbour's left edge). A part between two boundaries
    of one glyph is a candidate digit; so is a run of whole glyphs merged. Parts are made when asked for.
    """

    def __init__(self, glyphs: list[Glyph], height: float, split: list[bool] | None = None):
        self.glyphs, self.height = glyphs, height
        split = split if split is not None else [True] * len(glyphs)
        self.cuts = [find_cuts(g, height) if s and may_touch(g, height) else [] for g, s in zip(glyphs, split,
                                                                                              strict=True)]
        self.starts = np.cumsum([0] + [len(c) + 1 for c in self.cuts])  # boundary number of each glyph's left edge
        self.bounds = [[np.zeros(g.ink.shape[0], int), *(c.path for c in cuts), np.full(g.ink.shape[0], g.box[2])]
                       for g, cuts in zip(glyphs, self.cuts, strict=True)]  # per glyph: (h,) paths, edge to edge
        self.mids = np.array([g.box[0] + float(b.mean()) for g, bs in zip(glyphs, self.bounds, strict=True)
                              for b in bs[:-1]] + [glyphs[-1].box[0] + glyphs[-1].box[2]])
        last = len(glyphs) - 1
        self._where = [(k, i) for k, bs in enumerate(self.bounds) for i in range(len(bs) - 1)]
        self._where.append((last, len(self.bounds[last]) - 1))  # boundary -> (glyph, boundary within it)
        self._parts: dict[tuple[int, int], Glyph | None] = {}

    @property
    def end(self) -> int:
        return int(self.starts[-1])

    def __repr__(self) -> str:
        return f"Lattice({len(self.glyphs)} glyphs, cuts={sum(len(c) for c in self.cuts)})"

    def glyph_of(self, i: int) -> tuple[int, int]:
        """(glyph, boundary number within it) of boundary i; the last boundary is the last glyph's right edge."""
        return self._where[i]

    def whole(self, k: int) -> tuple[int, int]:
        return int(self.starts[k]), int(self.starts[k + 1])

    def successors(self, i: int) -> list[int]:
        """Boundaries j that may end a part starting at i, other than a whole glyph's right edge: cuts of the
        same glyph (parts neither too narrow nor too wide), and the right edges of runs of merged glyphs."""
        k, local = self.glyph_of(i)
        last = int(self.starts[k + 1])
        width = self.mids[i + 1:last + 1] - self.mids[i]
        ok = (width >= MIN_PART * self.height) & (width <= MAX_PART * self.height)
        out = [i + 1 + int(n) for n in np.flatnonzero(ok) if (local, i + 1 + int(n)) != (0, last)]
        if local == 0:
            out += [int(self.starts[m + 1]) for m in range(k + 1, min(k + MAX_MERGE, len(self.glyphs)))
                    if self._mergeable(k, m)]
        return out

    def _mergeable(self, k: int, m: int) -> bool:
        boxes = [g.box for g in self.glyphs[k:m + 1]]
        left, right = min(b[0] for b in boxes), max(b[0] + b[2] for b in boxes)
        gaps = [b[0] - (a[0] + a[2]) for a, b in itertools.pairwise(boxes)]
        return right - left <= MERGE_WIDTH * self.height and max(gaps) <= MERGE_GAP * self.height

    def part(self, i: int, j: int) -> Glyph | None:
        if (i, j) not in self._parts:
            k, a = self.glyph_of(i)
            m, b = self.glyph_of(j)
            if b == 0:  # j is the left edge of glyph m: the part ends at glyph m - 1's right edge
                m, b = m - 1, len(self.bounds[m - 1]) - 1
            if m > k:
                part = merge_glyphs(self.glyphs[k:m + 1])
            elif a == 0 and b == len(self.bounds[k]) - 1:
                part = self.glyphs[k]
            else:
                part = cut_part(self.glyphs[k], self.bounds[k][a], self.bounds[k][b])
            self._parts[(i, j)] = part
        return self._parts[(i, j)]

    def edge_score(self, i: int, j: int, p_single: float) -> float:
        """Log-score of reading the part (i, j) as one digit: P(one digit), a width prior, a size prior on parts
        cut from a glyph, and the cost of its right cut (each inner cut: one more digit hiding in the glyph,
        through this much ink).

        The size prior keeps a mark or a loop from being cut off as a digit of its own: the tick beside a 9
        read "91", the loop of a looped 2 read "02", a sliver split off a blob 9 read "19". A small glyph standing
        apart is not a cut part and pays nothing."""
        part = self.part(i, j)
        height = max(self.height, 1.0)
        aspect = max(part.box[2], 1) / height
        score = np.log(max(p_single, MIN_P)) - 0.5 * (max(np.log(aspect / WIDE_ASPECT), 0.0) / WIDE_SIGMA) ** 2
        m, b = self.glyph_of(j)
        inner_right = b > 0 and j < self.end  # j is an inner cut of glyph m (not its right edge)
        if inner_right or self.glyph_of(i)[1] > 0:  # a part cut from its glyph
            size = max(part.box[2], part.box[3], 1) / height
            score -= 0.5 * (min(np.log(size / SMALL_PART), 0.0) / SMALL_SIGMA) ** 2
        if inner_right:
            score += LOG_P_TOUCH - CUT_WEIGHT * max(0.0, self.cuts[m][b - 1].ink - CUT_FREE)
        return float(score)


def merge_glyphs(glyphs: list[Glyph]) -> Glyph:
    """Several glyphs as one: their joint box and all their ink."""
    x0, y0 = min(g.box[0] for g in glyphs), min(g.box[1] for g in glyphs)
    x1, y1 = max(g.box[0] + g.box[2] for g in glyphs), max(g.box[1] + g.box[3] for g in glyphs)
    ink = np.zeros((y1 - y0, x1 - x0), np.float32)
    for g in glyphs:
        x, y, w, h = g.box
        region = ink[y - y0:y - y0 + h, x - x0:x - x0 + w]
        np.maximum(region, g.ink, out=region)
    return Glyph((x0, y0, x1 - x0, y1 - y0), ink)


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


class PathSearch:
    """The best reading of a lattice: the cheapest path from its first boundary to its last, a part costing
    -edge_score. Best-first (Dijkstra): only parts leaving boundaries that may still beat the best path so
    far are verified, a few boundaries per round, so that a page's searches can share one verifier call.
    Starts from each whole glyph's P(one digit)."""

    def __init__(self, lattice: Lattice, p_whole: list[float]):
        self.lattice = lattice
        self.scores = {lattice.whole(k): lattice.edge_score(*lattice.whole(k), p) for k, p in enumerate(p_whole)}
        self.expanded = np.zeros(lattice.end + 1, bool)
        self.expanded[lattice.end] = True
        self.update()

    def __repr__(self) -> str:
        return f"PathSearch({self.lattice!r}, verified={len(self.scores)})"

    def next_edges(self, boundaries: int) -> list[tuple[int, int]]:
        """The parts to verify next: those leaving the `boundaries` cheapest unexpanded boundaries that can
        still lead to a cheaper path; [] when the best path is final."""
        open_ = np.flatnonzero(~self.expanded & (self.cost < self.cost[self.lattice.end]))
        edges = []
        for i in open_[np.argsort(self.cost[open_], kind="stable")][:boundaries]:
            self.expanded[i] = True
            edges += [(int(i), j) for j in self.lattice.successors(int(i))]
        return edges

    def record(self, edge: tuple[int, int], p_single: float) -> None:
        self.scores[edge] = self.lattice.edge_score(*edge, p_single)

    def update(self) -> None:
        """Cheapest cost to every boundary over the parts verified so far (the lattice is a DAG, left to right)."""
        n = self.lattice.end + 1
        self.cost, self.back = np.full(n, np.inf), [-1] * n
        self.cost[0] = 0.0
        for (i, j), score in sorted(self.scores.items()):
            if self.cost[i] - score < self.cost[j]:
                self.cost[j], self.back[j] = self.cost[i] - score, i

    def path(self) -> list[tuple[int, int]]:
        """The parts (i, j), left to right, of the cheapest reading found."""
        out, j = [], self.lattice.end
        while j > 0:
            out.append((self.back[j], j))
            j = self.back[j]
        return out[::-1]
