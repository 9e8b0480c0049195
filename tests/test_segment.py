"""segment: glyphs in reading order, candidate cuts and the lattice search, from synthetic ink (no model)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from digitocr.cuts import Lattice, PathSearch, find_cuts
from digitocr.preprocess import InkMap
from digitocr.segment import Glyph, find_glyphs, spaces_before, stacked_pairs


def ink_of(mask: np.ndarray) -> InkMap:
    return InkMap(mask.astype(np.float32), True, 0.5)


def draw_zero(page: np.ndarray, x: int, y: int, h: int = 40, w: int = 26, t: int = 4) -> None:
    cv2.ellipse(page, (x + w // 2, y + h // 2), (w // 2 - t // 2, h // 2 - t // 2), 0, 0, 360, 1, t)


def boxes(lines):
    return [[g.box for g in line] for line in lines]


def test_left_to_right_top_to_bottom():
    page = np.zeros((200, 300), np.uint8)
    for x in (200, 20, 110):  # drawn out of order
        draw_zero(page, x, 120)
        draw_zero(page, x + 10, 20)
    lines = find_glyphs(ink_of(page))
    assert [len(line) for line in lines] == [3, 3]
    assert [b[0] for b in boxes(lines)[0]] == [30, 120, 210]
    assert all(b[1] > 100 for b in boxes(lines)[1])


def test_a_slanted_line_stays_one_line():
    page = np.zeros((300, 600), np.uint8)
    for i in range(10):  # 10 degrees of slope over the line
        draw_zero(page, 20 + 55 * i, 200 - int(55 * i * np.tan(np.radians(10))))
    assert [len(line) for line in find_glyphs(ink_of(page))] == [10]


def test_specks_rules_and_frames_are_dropped():
    page = np.zeros((200, 400), np.uint8)
    draw_zero(page, 50, 60)
    draw_zero(page, 100, 60)
    clean = boxes(find_glyphs(ink_of(page)))
    page[150:153, 20:380] = 1  # a ruled line
    page[30, 200] = page[170, 300] = 1  # specks
    cv2.rectangle(page, (2, 2), (397, 197), 1, 2)  # a frame around the page
    assert boxes(find_glyphs(ink_of(page))) == clean and len(clean[0]) == 2


def test_a_lone_dash_is_not_a_row_of_ones():
    page = np.zeros((200, 200), np.uint8)
    cv2.line(page, (20, 100), (70, 100), 1, 12)  # the page's only ink: it sets the "digit height" itself
    assert find_glyphs(ink_of(page)) == []
    draw_zero(page, 90, 80)  # beside a digit, the dash is still dropped and the digit kept
    assert [len(line) for line in find_glyphs(ink_of(page))] == [1]


def test_the_bar_of_a_five_joins_its_body():
    page = np.zeros((100, 100), np.uint8)
    cv2.ellipse(page, (50, 62), (14, 14), 0, -120, 160, 1, 4)  # the belly
    page[28:56, 36:40] = 1  # the stem ...
    page[50:56, 36:48] = 1  # ... joined to the belly
    page[20:24, 38:66] = 1  # the bar, not touching the stem
    [[glyph]] = find_glyphs(ink_of(page))
    assert glyph.box[1] == 20 and glyph.box[3] >= 56


def test_a_lone_five_keeps_a_heavy_overhanging_bar():
    """MNIST writers' bars can be thick (as much ink as half the body) and overhang the body far to the right.
    On a page with no other digit the bar must neither set the digit height nor be dropped as a speck."""
    page = np.zeros((120, 140), np.uint8)
    cv2.ellipse(page, (45, 82), (16, 16), 0, -120, 160, 1, 5)  # the belly, bottom at ~100
    page[58:78, 30:35] = 1  # the stem ...
    page[72:78, 30:45] = 1  # ... joined to the belly: the body is 42 px tall
    page[48:57, 40:88] = 1  # a 9-px bar, 48 px long, overhanging the belly, 1 px above the stem
    [[glyph]] = find_glyphs(ink_of(page))
    assert glyph.box[1] == 48 and glyph.box[0] + glyph.box[2] == 88


def test_wide_gap_is_a_space():
    page = np.zeros((80, 400), np.uint8)
    for x in (10, 45, 200, 235):
        draw_zero(page, x, 20)
    [line] = find_glyphs(ink_of(page))
    assert spaces_before(line) == [False, False, True, False]


def test_groups_far_apart_on_one_row_are_one_line():
    page = np.zeros((80, 900), np.uint8)
    for x, y in ((10, 22), (45, 22), (800, 18), (835, 18)):  # the right pair 4 px higher, 20 heights away
        draw_zero(page, x, y)
    [line] = find_glyphs(ink_of(page))
    assert [b[0] for b in boxes([line])[0]] == [10, 45, 800, 835]
    assert spaces_before(line) == [False, False, True, False]


def touching_zeros() -> Glyph:
    page = np.zeros((60, 80), np.uint8)
    draw_zero(page, 10, 10)
    draw_zero(page, 33, 10)  # overlaps the first by 3 px
    [[glyph]] = find_glyphs(ink_of(page))
    return glyph


def test_touching_zeros_get_a_cut_at_the_junction():
    glyph = touching_zeros()
    cuts = find_cuts(glyph, height=40)
    junction = 35 - glyph.box[0]
    mids = [float(c.path.mean()) for c in cuts]
    assert any(abs(m - junction) <= 2 for m in mids)
    assert mids == sorted(mids)  # left to right


def test_distinct_cuts_are_those_all_pairs_would_keep():
    """_distinct compares a candidate only with kept cuts whose ink totals are near; it must keep exactly the
    cuts that comparing every pair (the distance matrix it replaced) kept, ties at the limit included."""
    from digitocr.cuts import Cut, _distinct

    rng = np.random.default_rng(0)
    for trial in range(30):
        n, h = int(rng.integers(1, 120)), int(rng.integers(1, 12))
        lefts = rng.integers(0, 6, (n, h)).astype(np.float64).cumsum(0)  # ink left of cuts, loosely ordered
        cands = [Cut(np.zeros(h, int), float(i)) for i in range(n)]
        order = rng.permutation(n)[: int(rng.integers(1, n + 1))]
        apart, most = float(rng.integers(1, 3 * h + 2)), int(rng.integers(1, n + 2))
        same = np.abs(lefts[order][:, None] - lefts[order][None]).sum(2) < apart
        free, expect = np.ones(len(order), bool), []
        for k in range(len(order)):
            if free[k]:
                expect.append(cands[order[k]])
                free &= ~same[k]
                if len(expect) == most:
                    break
        assert _distinct(cands, lefts, order, apart, most) == expect, trial


def test_cutting_a_page_wide_glyph_needs_memory_in_proportion_to_its_width():
    """A 20,000-px-wide stretched digit took 50 s and 13 GB: every candidate cut was compared with every
    other in an (N, N) matrix. Here a 2,000-px glyph (~10,000 candidates) must stay far below that matrix."""
    import tracemalloc

    ink = np.zeros((40, 2000), np.float32)
    ink[18:22] = 1.0  # an underline run through a line of digits
    ink[:, ::97] = 1.0  # with strokes crossing it
    glyph = Glyph((0, 0, 2000, 40), ink)
    tracemalloc.start()
    try:
        cuts = find_cuts(glyph, height=40)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert cuts and peak < 100 * 2**20  # the old all-pairs matrix alone: ~800 MB


def zero_likeness(part: Glyph) -> float:
    """A stand-in verifier: P(one digit) is high for parts about one zero wide and whole, low otherwise."""
    return float(np.exp(-((part.box[2] - 26) / 4) ** 2) * min(1.0, part.box[3] / 38))


def run_search(lat: Lattice, p_whole: list[float], verifier) -> PathSearch:
    search = PathSearch(lat, p_whole)
    while edges := search.next_edges(3):
        for e in edges:
            if lat.part(*e) is not None:
                search.record(e, verifier(lat.part(*e)))
        search.update()
    return search


def test_search_splits_touching_zeros_in_two():
    glyph = touching_zeros()
    lat = Lattice([glyph], 40)
    search = run_search(lat, [zero_likeness(glyph)], zero_likeness)
    parts = [lat.part(*e) for e in search.path()]
    assert len(parts) == 2
    assert abs(parts[0].box[0] - 10) <= 2 and abs(parts[1].box[0] + parts[1].box[2] - 59) <= 2


def test_search_keeps_a_sure_single_digit_whole():
    glyph = touching_zeros()
    lat = Lattice([glyph], 40)
    assert run_search(lat, [0.999], lambda part: 0.9).path() == [lat.whole(0)]


def looped_glyph() -> Glyph:
    """A wide digit with a small loop at its lower left, like a looped 2: a zero and a ring half its height."""
    page = np.zeros((60, 100), np.uint8)
    draw_zero(page, 40, 10, h=32, w=30)
    cv2.circle(page, (35, 35), 6, 1, 4)  # overlaps the zero's left side near its foot
    [[glyph]] = find_glyphs(ink_of(page))
    assert glyph.box[2] > glyph.box[3]  # wider than tall: the width prior alone would cut it
    return glyph


@pytest.mark.parametrize("small_part, parts", [(1e-6, 2), (None, 1)])
def test_a_small_loop_is_not_cut_off_as_a_digit_of_its_own(monkeypatch, small_part, parts):
    """The loop alone, the zero alone and the whole all look like one digit to this verifier (parts cutting
    through the zero do not); only the size prior tells the loop from a digit."""
    import digitocr.cuts

    if small_part is not None:  # the prior switched off, to show that the search would cut the loop off
        monkeypatch.setattr(digitocr.cuts, "SMALL_PART", small_part)
    glyph = looped_glyph()
    lat = Lattice([glyph], glyph.box[3])
    loop_or_zero = lambda part: 0.95 if max(part.box[2:]) <= 18 or part.box[2] >= 28 else 0.05  # noqa: E731
    search = run_search(lat, [0.95], loop_or_zero)
    assert len(search.path()) == parts


def test_the_size_prior_spares_whole_glyphs_and_full_size_parts(monkeypatch):
    import digitocr.cuts

    page = np.zeros((40, 40), np.uint8)
    cv2.circle(page, (20, 20), 8, 1, 3)
    [[small]] = find_glyphs(ink_of(page))
    lat = Lattice([small], 40)
    assert lat.edge_score(*lat.whole(0), 1.0) == 0.0  # a small glyph standing apart: not cut, no cost
    glyph = touching_zeros()
    lat = Lattice([glyph], 40)
    halves = [(0, j) for j in lat.successors(0) if abs(lat.part(0, j).box[2] - 26) <= 2]  # one zero each
    slivers = [(0, j) for j in lat.successors(0) if max(lat.part(0, j).box[2:]) < 0.6 * 40]
    assert halves and slivers
    with_prior = [lat.edge_score(*e, 1.0) for e in halves + slivers]
    monkeypatch.setattr(digitocr.cuts, "SMALL_PART", 1e-6)  # the prior switched off
    without = [lat.edge_score(*e, 1.0) for e in halves + slivers]
    assert with_prior[:len(halves)] == without[:len(halves)]
    assert all(a < b for a, b in zip(with_prior[len(halves):], without[len(halves):], strict=True))


def test_best_first_search_finds_the_best_path_of_all():
    """Against a second implementation: Viterbi over every part of the lattice, scores made up at random."""
    glyph = touching_zeros()
    lat = Lattice([glyph], 40)
    rng = np.random.default_rng(0)
    made_up: dict[tuple[int, int], float] = {}

    def verifier_for(edge):
        return made_up.setdefault(edge, float(rng.uniform(0.01, 1.0)))

    search = PathSearch(lat, [verifier_for(lat.whole(0))])
    while edges := search.next_edges(2):
        for e in edges:
            if lat.part(*e) is not None:
                search.record(e, verifier_for(e))
        search.update()
    best = np.full(lat.end + 1, -np.inf)
    best[0] = 0.0
    for i in range(lat.end):
        for j in [*lat.successors(i), *([lat.end] if i == 0 else [])]:
            if lat.part(i, j) is not None:
                best[j] = max(best[j], best[i] + lat.edge_score(i, j, verifier_for((i, j))))
    found = sum(lat.edge_score(*e, verifier_for(e)) for e in search.path())
    assert abs(found - best[lat.end]) < 1e-9


def test_pieces_of_a_broken_digit_may_be_joined():
    page = np.zeros((60, 60), np.uint8)
    cv2.ellipse(page, (30, 30), (12, 20), 0, 100, 260, 1, 4)  # the left half of a zero ...
    cv2.ellipse(page, (32, 30), (12, 20), 0, -80, 80, 1, 4)  # ... and its right half, 2 px apart
    [line] = find_glyphs(ink_of(page))
    assert len(line) == 2
    lat = Lattice(line, 40, split=[False, False])
    assert lat.end in lat.successors(0)
    joined = lat.part(0, lat.end)
    assert joined.box == (min(g.box[0] for g in line), min(g.box[1] for g in line),
                          max(g.box[0] + g.box[2] for g in line) - min(g.box[0] for g in line), joined.box[3])
    search = run_search(lat, [0.05, 0.05], lambda part: 0.95 if part.box[2] > 20 else 0.05)
    assert search.path() == [(0, lat.end)]


def test_pieces_on_two_lines_are_stacked_pairs_and_lines_of_digits_are_not():
    page = np.zeros((200, 200), np.uint8)
    cv2.ellipse(page, (50, 40), (14, 14), 0, 90, 270, 1, 4)  # a piece (the left half of a ring) ...
    cv2.ellipse(page, (54, 80), (16, 20), 0, -90, 180, 1, 4)  # ... and, just below it, a taller one
    draw_zero(page, 120, 20)  # two lines of whole digits, a normal line gap apart
    draw_zero(page, 120, 80)
    lines = find_glyphs(ink_of(page))
    assert len(lines) == 2
    pairs = stacked_pairs(lines)
    assert [(lines[n][i].box[0] < 100, lines[m][j].box[0] < 100) for n, i, m, j in pairs] == [(True, True)]


def test_part_scores_never_exceed_zero():
    """The search is best-first: a part's score (log-probability) must not be positive."""
    glyph = touching_zeros()
    lat = Lattice([glyph], 40)
    for j in lat.successors(0):
        assert lat.edge_score(0, j, 1.0) <= 0.0


def test_blank_gives_no_lines():
    assert find_glyphs(ink_of(np.zeros((50, 50), np.uint8))) == []


def test_merging_only_pairs_in_reach_groups_as_all_pairs_do(monkeypatch):
    """Pieces too far apart ever to merge are never compared; the groups are exactly all pairs' groups."""
    import itertools

    import digitocr.segment as seg

    rng = np.random.default_rng(0)
    n, height = 400, 20.0
    xy = rng.integers(0, 600, (n, 2))
    wh = rng.integers(2, 24, (n, 2))
    stats = np.column_stack([xy, wh, wh[:, 0] * wh[:, 1]])  # [x, y, w, h, area] of 400 scattered pieces
    keep = np.arange(n)
    fast = seg.merge_fragments(stats, keep, height)
    monkeypatch.setattr(seg, "_pairs_in_reach", lambda order, boxes, h: itertools.combinations(order, 2))
    slow = seg.merge_fragments(stats, keep, height)
    assert sorted(map(sorted, fast)) == sorted(map(sorted, slow))
    assert len(fast) < n  # some pieces did merge: the comparison is not of two trivial answers


def test_deskew_angle_is_the_lines_slope():
    from digitocr.segment import MIN_SKEW_DEG, deskew_angle

    def line(degrees: float, n: int, y0: int = 150) -> list[list[Glyph]]:
        page = np.zeros((400, 700), np.uint8)
        for i in range(n):
            draw_zero(page, 20 + 60 * i, y0 + round(60 * i * np.tan(np.radians(degrees))))
        return find_glyphs(ink_of(page))

    # rows grow downward: a line that falls to the right as shown is levelled by a counter-clockwise turn (+)
    assert deskew_angle(line(7, 8)) == pytest.approx(7, abs=0.3)
    assert deskew_angle(line(-12, 8, 300)) == pytest.approx(-12, abs=0.3)
    assert deskew_angle(line(7, 2)) == 0.0  # two centres: too few to tell the page's slant from the writing
    assert deskew_angle(line(MIN_SKEW_DEG / 2, 8)) == 0.0  # level enough: not resampled


def test_deskew_angle_ignores_glyphs_that_are_not_on_a_line():
    from digitocr.segment import deskew_angle

    zigzag = [[Glyph((60 * i, 100 + (40 if i % 2 else 0), 26, 40), np.ones((40, 26), np.float32))
               for i in range(6)]]  # centres 40 px up and down: no straight line
    assert deskew_angle(zigzag) == 0.0
