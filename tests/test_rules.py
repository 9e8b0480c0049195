"""Ruled and squared paper: rules lifted out of the ink map, the digits across them read as on plain paper."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from digitocr.ocr import page_ink
from digitocr.preprocess import InkMap, ink_map
from digitocr.rules import lift_rules, rule_angle
from ocr_fixtures import Style, make_image, photograph

NUMBER = "0714"
PAPERS = {  # each misread without lifting the rules (0714 read 47718, 7844, 71, 4)
    "ruled, grey": Style(rules="ruled", rule_pitch=1.0, rule_px=2, rule_colour="grey", seed=30),
    "ruled, blue, thick, turned": Style(rules="ruled", rule_pitch=1.3, rule_px=3, rule_colour="blue", rotation=5,
                                        seed=30),
    "squared, grey": Style(rules="squared", rule_pitch=1.3, rule_px=2, rule_colour="grey", seed=30),
    "squared, blue, thick, turned": Style(rules="squared", rule_pitch=1.3, rule_px=3, rule_colour="blue",
                                          rotation=5, seed=30),
}


def grey_of(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255


@pytest.mark.parametrize("paper", list(PAPERS))
def test_numbers_on_ruled_and_squared_paper_read_as_on_plain(reader, digits, paper):
    assert reader.read(make_image(NUMBER, PAPERS[paper], *digits)).text == NUMBER


@pytest.mark.parametrize("paper", list(PAPERS))
def test_the_rules_are_what_is_lifted(digits, paper):
    """The digits' ink stays (strokes crossing a rule included): a stroke ending on a rule loses the rule's
    width and rim there (3 px rules on 48 px digits: up to ~16% of the writing), no more."""
    with_rules = make_image(NUMBER, PAPERS[paper], *digits)
    plain = make_image(NUMBER, Style(**{**vars(PAPERS[paper]), "rules": ""}), *digits)
    lifted, before = page_ink(grey_of(with_rules)).mask, ink_map(grey_of(with_rules)).mask
    writing = ink_map(grey_of(plain)).mask
    assert lifted.sum() < before.sum()  # something went ...
    kept = (lifted & writing).sum() / writing.sum()
    assert kept > 0.8  # ... and it was not the writing


def test_a_page_without_long_ink_is_left_as_it_is(digits):
    ink = ink_map(grey_of(make_image(NUMBER, Style(seed=25), *digits)))
    assert lift_rules(ink) is ink


@pytest.mark.parametrize("shape", ["one", "seven", "dash"])
def test_a_digit_filling_its_own_image_is_not_a_rule(shape):
    """A 1's stroke, a 7's bar or a dash that spans its image is long and straight, but it is no rule: the
    bar and the dash stop short of the image's edges (rules run across the paper), an upright stroke counts
    only beside level rules (squared paper), and the 7's bar is as long as the stroke left beside it."""
    page = np.zeros((60, 60), np.float32)
    if shape in ("one", "seven"):
        cv2.line(page, (40, 2), (30, 57), 1.0, 5)
    if shape == "seven":
        cv2.line(page, (5, 4), (42, 4), 1.0, 5)
    if shape == "dash":
        cv2.line(page, (2, 30), (57, 30), 1.0, 4)
    ink = InkMap(page, True, 0.5)
    assert lift_rules(ink) is ink


def test_a_page_of_rules_alone_keeps_them_and_reads_blank(reader):
    """Rules are long beside the writing; with none, nothing is lifted (segment drops lone rules itself)."""
    style = Style(rules="ruled", seed=26)
    blank = photograph(np.zeros((300, 400), np.float32), style, np.random.default_rng(0))  # no ink, only rules
    ink = ink_map(cv2.cvtColor(blank, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255)
    assert ink.mask.any() and lift_rules(ink) is ink
    assert reader.read(blank).text == ""


def test_rule_angle_is_the_rules_slope():
    page = np.zeros((300, 400), np.uint8)
    for y in range(40, 300, 50):  # rules sloping up by 4 degrees to the right (cv2's counter-clockwise)
        cv2.line(page, (0, y), (399, round(y - 399 * np.tan(np.radians(4)))), 1, 1)
    ys, xs = np.nonzero(page)
    assert abs(rule_angle(xs, ys) - 4.0) <= 0.15


def test_a_stroke_crossing_a_rule_stays_one_piece():
    page = np.zeros((120, 300), np.float32)
    for y in (30, 60, 90):
        page[y:y + 2] = 1.0  # ruled lines across the page
    cv2.line(page, (150, 15), (150, 105), 1.0, 5)  # a 1 written across two of them
    lifted = lift_rules(InkMap(page, True, 0.5))
    n, _, stats, _ = cv2.connectedComponentsWithStats(lifted.mask, connectivity=8)
    assert n == 2  # the paper and the 1: the rules went, the stroke kept its pixels where it crossed them
    assert stats[1, cv2.CC_STAT_HEIGHT] >= 88


def test_an_image_that_is_all_ink_is_left_as_it_is():
    ink = InkMap(np.ones((100, 100), np.float32), True, 0.5)
    assert lift_rules(ink) is ink


def test_a_tight_crop_of_touching_digits_keeps_its_ink():
    """A number cropped to its ink, every pair of digits touching: rows through the digits and the stems of
    1s and 4s run from border to border, but they are not rules. Each of these lost 6-18% of its ink to an
    earlier version that judged rules by one end and took stems without level rules."""
    from ocr_fixtures import mnist_test

    test = mnist_test()
    for seed, text, pen in [(6, "5539", 1.3), (10, "922785", 1.0), (14, "863", 1.0)]:
        style = Style(margin=0.0, touch=tuple(range(len(text) - 1)), pen=pen, height=48, seed=seed)
        ink = ink_map(grey_of(make_image(text, style, test.images[:2000], test.labels[:2000])))
        assert lift_rules(ink) is ink, text
