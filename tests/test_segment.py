"""segment: glyphs in reading order from synthetic ink (no model needed)."""

from __future__ import annotations

import cv2
import numpy as np

from digitocr.preprocess import InkMap
from digitocr.segment import Glyph, choose_split, find_glyphs, spaces_before, split_options


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


def test_the_bar_of_a_five_joins_its_body():
    page = np.zeros((100, 100), np.uint8)
    cv2.ellipse(page, (50, 62), (14, 14), 0, -120, 160, 1, 4)  # the belly
    page[28:56, 36:40] = 1  # the stem ...
    page[50:56, 36:48] = 1  # ... joined to the belly
    page[20:24, 38:66] = 1  # the bar, not touching the stem
    [[glyph]] = find_glyphs(ink_of(page))
    assert glyph.box[1] == 20 and glyph.box[3] >= 56


def test_wide_gap_is_a_space():
    page = np.zeros((80, 400), np.uint8)
    for x in (10, 45, 200, 235):
        draw_zero(page, x, 20)
    [line] = find_glyphs(ink_of(page))
    assert spaces_before(line) == [False, False, True, False]


def test_touching_zeros_are_offered_a_cut_at_the_junction():
    page = np.zeros((60, 80), np.uint8)
    draw_zero(page, 10, 10)
    draw_zero(page, 33, 10)  # overlaps the first by 3 px
    [[glyph]] = find_glyphs(ink_of(page))
    options = split_options(glyph, height=40)
    two = [o for o in options if len(o) == 2]
    assert two and any(abs(o[1].box[0] - 35) <= 3 for o in two)
    # a confident two-digit reading beats a doubtful one-digit reading
    confidences = [np.array([0.6])] + [np.full(len(o), 0.99) for o in options[1:]]
    assert len(options[choose_split(options, confidences, 40)]) == 2


def test_a_single_digit_is_not_split_when_the_classifier_is_sure():
    glyph = Glyph((0, 0, 30, 40), np.ones((40, 30), np.float32))
    options = split_options(glyph, height=40)
    confidences = [np.array([0.999])] + [np.full(len(o), 0.9) for o in options[1:]]
    assert choose_split(options, confidences, 40) == 0


def test_blank_gives_no_lines():
    assert find_glyphs(ink_of(np.zeros((50, 50), np.uint8))) == []
