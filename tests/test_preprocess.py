"""preprocess: ink maps from photos, and MNIST framing checked against MNIST itself."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from digitocr.preprocess import (
    BOX,
    CONTEXT,
    CORE_STEP,
    HI_RES,
    MIN_CORE_FRACTION,
    MNIST_CENTRE,
    MNIST_STROKE_RANGE,
    _hi_res,
    _pad,
    core_mask,
    frame_digit,
    frame_in_context,
    framing,
    hi_res_mask,
    ink_box,
    ink_map,
    mnist_stroke_stats,
    stroke_width,
)


def ring(size: int, thickness: float) -> np.ndarray:
    """A '0'-like ellipse, white on black: (size*1.4, size) float32."""
    img = np.zeros((int(size * 1.4), size), np.uint8)
    t = max(1, round(thickness))
    cv2.ellipse(img, (size // 2, int(size * 0.7)), (size // 2 - t, int(size * 0.7) - t), 0, 0, 360, 255, t)
    return img.astype(np.float32) / 255


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    rows, cols = np.arange(img.shape[0]) + 0.5, np.arange(img.shape[1]) + 0.5
    return float(img.sum(1) @ rows / img.sum()), float(img.sum(0) @ cols / img.sum())


@pytest.fixture(scope="module")
def mnist():
    from ocr_fixtures import mnist_test

    try:
        return mnist_test()
    except Exception as e:  # no cached MNIST on this machine
        pytest.skip(f"MNIST not available: {e}")


def test_constants_match_mnist(mnist):
    stats = mnist_stroke_stats(mnist.images[:300])
    assert MNIST_STROKE_RANGE[0] == pytest.approx(stats["q1"], abs=0.2)
    assert MNIST_STROKE_RANGE[1] == pytest.approx(stats["q3"], abs=0.2)
    assert pytest.approx((stats["centre_row"], stats["centre_col"]), abs=0.2) == MNIST_CENTRE


def test_framing_mnist_is_nearly_the_identity(mnist):
    images = mnist.images[:200].astype(np.float32) / 255
    framed = np.stack([frame_digit(i) for i in images])
    assert np.corrcoef(framed.ravel(), images.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("size", [6, 28, 90, 600])
def test_frame_geometry_at_any_size(size):
    out = frame_digit(ring(size, size / 10))
    assert out.shape == (28, 28) and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    ys, xs = np.nonzero(out > 0.05)
    assert max(np.ptp(ys), np.ptp(xs)) + 1 == pytest.approx(BOX, abs=1.5)
    assert centre_of_mass(out) == pytest.approx(MNIST_CENTRE, abs=0.6)


def test_stroke_width_is_normalised():
    thin, thick = frame_digit(ring(300, 4)), frame_digit(ring(300, 45))
    widths = [stroke_width((cv2.resize(f, (112, 112)) > 0.5).astype(np.uint8)) / 4 for f in (thin, thick)]
    for w in widths:
        assert MNIST_STROKE_RANGE[0] - 0.5 <= w <= MNIST_STROKE_RANGE[1] + 0.5
    assert np.abs(thin - thick).mean() < 0.1


def test_a_thick_blurred_loop_is_framed_from_its_cores():
    """Blur fills a thick 0's hole above the stroke edge's level (0.5) but below its strokes' cores: the
    classifier's crop, drawn from the cores, shows the hole; the crop from the edge is a blob."""
    ink = 2.0 * cv2.GaussianBlur(ring(80, 22), (0, 0), 7)  # (112, 80) unclipped ink (InkMap): cores ~1.9
    assert 0.5 < ink[56, 40] < 1.0  # the hole's centre, ink at the edge's level
    hole = (slice(12, 16), slice(12, 16))  # the crop's centre
    assert framing(ink, cores=False)[0][hole].min() > 0.9
    assert frame_digit(ink)[hole].max() < 0.1
    alone, in_context = frame_in_context(ink, (0, 0, 80, 112), ink)
    assert np.array_equal(alone, frame_digit(ink))  # the classifier's view: the cores
    assert in_context[hole].min() > 0.9  # the verifier's: the edge, as it was trained


def test_a_lighter_stroke_survives_the_cores():
    """A 7 whose bar is drawn lighter (solid, 1.0) than its thick stem (3.5): a level that cuts the stem to
    MNIST's width would drop the bar; the cores may not lose a stroke, so the bar stays."""
    bar, stem = np.zeros((112, 80), np.float32), np.zeros((112, 80), np.float32)
    cv2.line(bar, (8, 12), (72, 12), 1, 22)
    cv2.line(stem, (70, 12), (30, 104), 1, 22)
    ink = cv2.GaussianBlur(np.maximum(1.0 * bar, 3.5 * stem), (0, 0), 2)  # (112, 80) unclipped ink
    top = (slice(4, 9), slice(None))  # the bar's rows in the crop
    edge_bar = framing(ink, cores=False)[0][top].sum()
    assert frame_digit(ink)[top].sum() > 0.8 * edge_bar > 10


def test_digits_no_thicker_than_mnist_frame_the_same_from_edge_or_cores(mnist):
    inks = [i.astype(np.float32) / 255 for i in mnist.images[:100]] + [ring(300, 4), ring(40, 3)]
    thin = 0
    for ink in inks:
        x, y, w, h = ink_box(ink >= 0.5)
        if stroke_width(hi_res_mask(ink[y:y + h, x:x + w])) / HI_RES <= MNIST_STROKE_RANGE[1]:
            assert np.array_equal(frame_digit(ink), framing(ink, cores=False)[0])
            thin += 1
    assert thin >= 50  # most of MNIST: its widths' upper quartile is the limit


def test_core_walk_lands_where_climbing_every_rung_would(mnist):
    """core_mask starts from an estimate and walks; it must take the lowest rung whose strokes are no wider
    than MNIST's widest (or the last rung that keeps enough ink), as climbing the ladder rung by rung does."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    thick = 0
    for img in mnist.images[:60]:
        big = cv2.resize(img.astype(np.float32) / 255, (112, 112), interpolation=cv2.INTER_CUBIC)
        ink = 2.0 * cv2.GaussianBlur(cv2.dilate(big, kernel), (0, 0), 3)  # a thick, blurred pen
        x, y, w, h = ink_box(ink >= 0.5)
        region = ink[y:y + h, x:x + w]
        edge = hi_res_mask(region)
        width = stroke_width(edge) / HI_RES
        if width <= MNIST_STROKE_RANGE[1]:
            continue
        thick += 1
        mask, _ = core_mask(region, edge, width)
        climbed, level = edge, 0.5 * CORE_STEP  # the reference: every rung, from the bottom
        while True:
            rung = _pad((_hi_res(region) >= level).astype(np.uint8)) & edge  # within the edge's ink
            if rung.sum() < MIN_CORE_FRACTION * edge.sum():
                break
            climbed = rung
            if stroke_width(rung) / HI_RES <= MNIST_STROKE_RANGE[1]:
                break
            level *= CORE_STEP
        assert np.array_equal(mask, climbed)
    assert thick >= 40


def test_hysteresis_joins_exactly_the_faint_pixels_connected_to_solid_ink():
    import cv2

    from digitocr.preprocess import hysteresis

    rng = np.random.default_rng(3)
    ink = cv2.GaussianBlur(rng.random((90, 120)).astype(np.float32), (0, 0), 2) * 1.6 - 0.3
    low = 0.35
    weak = (ink >= low).astype(np.uint8)
    _, labels = cv2.connectedComponents(weak, connectivity=8)
    solid = set(np.unique(labels[ink >= 0.5])) - {0}
    want = ink.copy()
    want[np.isin(labels, list(solid)) & (ink < 0.5)] = 0.5  # the definition, pixel by pixel
    assert np.count_nonzero(want != ink) > 0 and np.array_equal(hysteresis(ink.copy(), low), want)
    wide = np.zeros((90, 240), np.float32)
    wide[:, 10:130] = ink  # a view that no flat reshape can see: the joins must land in the caller's array
    assert np.array_equal(hysteresis(wide[:, 10:130], low), want) and np.array_equal(wide[:, 10:130], want)


def test_median_is_numpys_bit_for_bit():
    from digitocr.preprocess import median

    rng = np.random.default_rng(4)
    for n in [1, 2, 3, 4, 999, 1000, 50_000, 50_001]:
        for dtype in (np.float32, np.float64):
            values = rng.normal(size=n).astype(dtype)
            for x in (values, np.round(values * 3) / 3, values.reshape(-1, 1)[: n - n % 2].reshape(2, -1) if n > 1
                      else values):  # plain, many ties, 2-D
                got, want = median(x), np.median(x)
                assert got == want and np.asarray(got).dtype == np.asarray(want).dtype, (n, dtype)


def test_ink_darker_than_the_threshold_keeps_its_depth():
    """The ink map is not clipped at 1 (InkMap): a dark pen's cores read above 1, the strokes' edge at 0.5."""
    found = ink_map(photo(page_with_rings()))
    assert found.ink.min() >= 0 and found.ink.max() > 1.2


def test_blank_and_tiny_inputs_frame_to_empty():
    assert not frame_digit(np.zeros((1, 1), np.float32)).any()
    assert frame_digit(np.ones((1, 1), np.float32)).sum() > 0  # a dot is still a (tiny) digit


def photo(ink: np.ndarray, dark_ink: bool = True, gradient: float = 0.0, shadow: float = 0.0) -> np.ndarray:
    """Ink coverage (H, W) -> grey photo with lighting."""
    h, w = ink.shape
    light = 0.9 * (1 - gradient * np.linspace(0, 1, w))[None, :] * np.ones((h, 1))
    light[: h // 2] *= 1 - shadow
    grey = light * (1 - 0.8 * ink) if dark_ink else 0.1 + 0.8 * ink
    rng = np.random.default_rng(0)
    return np.clip(grey + rng.normal(0, 0.01, grey.shape), 0, 1).astype(np.float32)


def page_with_rings() -> np.ndarray:
    ink = np.zeros((200, 400), np.float32)
    for x in (40, 160, 280):
        ink[40:40 + 112, x:x + 80] = ring(80, 8)
    return ink


@pytest.mark.parametrize("kw", [{}, {"dark_ink": False}, {"gradient": 0.6}, {"shadow": 0.5},
                                {"gradient": 0.5, "shadow": 0.4}])
def test_ink_map_finds_the_strokes_under_any_lighting(kw):
    truth = page_with_rings() > 0.5
    found = ink_map(photo(page_with_rings(), **kw))
    mask = found.mask.astype(bool)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.8
    assert found.dark_ink == kw.get("dark_ink", True)


@pytest.mark.parametrize("grey", [np.full((300, 300), 0.8, np.float32), np.zeros((1, 1), np.float32),
                                  np.random.default_rng(1).normal(0.8, 0.02, (300, 300)).astype(np.float32)])
def test_blank_pages_have_no_ink(grey):
    assert ink_map(np.clip(grey, 0, 1)).mask.mean() < 1e-3  # at most specks, which segmentation drops


def test_framing_map_matches_the_crop(mnist):
    """framing's affine map, applied to the digit by cv2.warpAffine, lands where frame_digit put it."""
    for img in mnist.images[:20]:
        ink = np.pad(cv2.resize(img.astype(np.float32) / 255, (64, 87)), ((7, 3), (5, 9)))
        crop, m = framing(ink)
        warped = cv2.warpAffine(cv2.GaussianBlur(ink, (0, 0), 1.0), m, (28, 28))
        assert np.corrcoef(crop.ravel(), warped.ravel())[0, 1] > 0.85
        assert np.allclose(crop, frame_digit(ink))


def test_context_shows_only_the_ink_around_a_part():
    page = np.zeros((120, 200), np.float32)
    part = ring(40, 4)  # (56, 40)
    page[30:86, 50:90] = part
    alone, in_context = frame_in_context(part, (50, 30, 40, 56), page)
    assert np.allclose(alone, frame_digit(part)) and np.abs(in_context - alone).max() < 0.1
    page[30:86, 92:96] = 1.0  # a stroke just right of the part
    _, in_context = frame_in_context(part, (50, 30, 40, 56), page)
    extra = in_context - alone
    assert 0.5 * CONTEXT < extra.max() <= CONTEXT + 1e-6  # dimmed
    assert extra[:, 20:].sum() > 10 * extra[:, :8].sum()  # on the right


def test_border_surface_fits_smooth_lighting_and_refuses_a_shadow_edge():
    from digitocr.preprocess import border_fit, quadratic

    def border_surface(grey):
        coef = border_fit(grey)
        return None if coef is None else quadratic(coef, grey.shape)

    v, u = np.mgrid[-0.5:0.5:90j, -0.5:0.5:120j].astype(np.float32)
    lighting = 0.85 - 0.2 * u + 0.1 * v - 0.15 * u * u  # (90, 120) a gradient with some vignetting
    page = lighting.copy()
    page[30:60, 20:100] = 0.2  # a thick digit's worth of ink in the middle: the surface passes under it
    np.testing.assert_allclose(border_surface(page), lighting, atol=1e-4)
    page[40:50, :10] = 0.05  # a stroke running off the left edge: dropped from the fit as outliers
    np.testing.assert_allclose(border_surface(page)[:, 20:], lighting[:, 20:], atol=1e-3)
    shadowed = lighting * np.where(u < 0.1, 0.6, 1.0)  # a shadow's edge crossing the crop: no smooth surface
    assert border_surface(shadowed) is None


def test_a_small_noisy_crop_across_a_gradient_takes_a_plane_and_a_digit_filling_it_does_not():
    from digitocr.preprocess import border_fit, estimate_background

    rng = np.random.default_rng(0)
    u = np.mgrid[-0.5:0.5:54j, -0.5:0.5:57j][1].astype(np.float32)
    lighting = 0.6 + 0.25 * u  # (54, 57) a steep gradient across a small crop
    page = lighting + rng.normal(0, 0.03, u.shape).astype(np.float32)  # too noisy for the quadratic's test
    page[15:40, 20:26] = 0.2  # a stroke
    assert border_fit(page) is None
    plane = border_fit(page, plane=True)
    assert plane is not None and np.allclose(plane[3:], 0) and abs(plane[1] - 0.25) < 0.03
    assert np.abs(estimate_background(page) - lighting).max() < 0.03  # one level would be 0.12 off at the sides
    filled = np.zeros((32, 32), np.float32)  # an 8x8 digit blown up, its ink running off two edges
    filled[4:28, 0:10] = filled[4:28, 22:32] = filled[4:10, :] = 1.0
    assert border_fit(filled, plane=True) is None  # nothing to explain: the level is the background


def test_turning_a_page_levels_its_lines_and_keeps_every_stroke():
    """A line of zeros photographed 9 degrees askew: turned level (ocr.level), every glyph is found again,
    with the ink area of the level page, and each glyph's box maps back around that zero on the page."""
    from digitocr.ocr import level, page_box
    from digitocr.segment import deskew_angle, find_glyphs

    page = np.zeros((300, 700), np.float32)
    for i in range(8):
        cv2.ellipse(page, (43 + 80 * i, 150), (11, 18), 0, 0, 360, 0.6, 3)
    page = cv2.GaussianBlur(page, (0, 0), 1.2)  # (H, W) ink coverage
    m = cv2.getRotationMatrix2D((350, 150), 9, 1.0)  # counter-clockwise as shown: the line rises to the right
    askew = ink_map(1 - cv2.warpAffine(page, m, (700, 300)))
    assert deskew_angle(find_glyphs(askew)) == pytest.approx(-9, abs=0.3)
    turned, lines, to_page = level(askew)
    assert [len(line) for line in lines] == [8] and deskew_angle(lines) == 0.0
    assert int(turned.mask.sum()) == pytest.approx(int(ink_map(1 - page).mask.sum()), rel=0.03)
    # resampling the ink after hysteresis joined its faint edge (exactly 0.5) would have thinned the strokes
    h, w = askew.ink.shape
    joined = cv2.warpAffine(askew.ink, cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -9, 1.0), (w, h))
    assert int((joined >= 0.5).sum()) < 0.9 * int(turned.mask.sum())
    centres = (np.array([[43 + 80 * i, 150] for i in range(8)], np.float64) @ m[:, :2].T) + m[:, 2]  # on the page
    for g, (cx, cy) in zip(lines[0], centres, strict=True):
        x, y, bw, bh = page_box(g.box, to_page)
        assert x < cx < x + bw and y < cy < y + bh and bh < 50


def test_a_level_page_is_not_turned():
    from digitocr.ocr import level

    page = np.zeros((200, 500), np.float32)
    for i in range(5):
        cv2.ellipse(page, (43 + 80 * i, 100), (11, 18), 0, 0, 360, 0.6, 3)
    ink = ink_map(1 - page)
    turned, lines, to_page = level(ink)
    assert turned is ink and to_page is None and [len(line) for line in lines] == [5]


def test_a_faint_digit_survives_turning():
    """A digit whose ink is mostly faint (joined by hysteresis) with a few solid pixels: resampled, those few
    would average below 0.5 and leave nothing to join the rest to (a leading 6 vanished from a page)."""
    from digitocr.preprocess import InkMap, hysteresis, turn

    unjoined = np.zeros((80, 80), np.float32)
    cv2.circle(unjoined, (40, 40), 20, 0.45, 3)  # faint: above the join level (0.3), below the edge (0.5)
    unjoined[20, 40] = 0.508  # one pixel barely solid
    ink = InkMap(hysteresis(unjoined.copy(), 0.3), True, 0.5, unjoined, 0.3)
    turned, _ = turn(ink, 7.0, np.ones(unjoined.shape, bool), margin=10)
    assert int(turned.mask.sum()) > 0.85 * int(ink.mask.sum())  # the whole ring, a little thinner at its edges
