"""Any grey image -> ink map, and one digit's ink -> the MNIST frame the networks were trained on.

MNIST digits are white on black, their strokes antialiased from a binary image, the longest side scaled to
20 px (aspect kept) and the centre of mass put at the centre of a 28x28 field. `ink_map` finds the ink on
photos and scans (background flattening, polarity, threshold); `frame_digit` recreates MNIST's framing,
including its typical stroke width. CLI, Python API and web page all go through these two functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np

from .constants import IMAGE_SIZE, PIXEL_MAX

# --- MNIST's framing (measured on the training split by `mnist_stroke_stats`, see tests) ---
BOX = 20  # longest side of the digit inside the 28x28 field
HI_RES = 4  # strokes are binarised and thickened at 4x the 20-px box, then area-averaged down (antialiasing)
HI_BOX = BOX * HI_RES
HI_PAD = HI_BOX // 4  # room around the hi-res digit for thickening its strokes
MNIST_CENTRE = (14.5, 14.5)  # MNIST's mean centre of mass (row, col), pixel centres at index + 0.5
MNIST_STROKE_RANGE = (1.9, 2.8)  # interquartile stroke width in the 20-px box; widths outside are pulled in
MIN_STROKE_FRACTION = 0.5  # never erode away more than this fraction of a digit's ink
CORE_STEP = 1.15  # each rung of the ladder that finds a thick digit's cores raises the ink level this much ...
MAX_RUNGS = 32  # ... up to 0.5 * 1.15 ** 32 = 44, far above any ink map's depth (0.5 / MIN_INK_CONTRAST)
MIN_CORE_FRACTION = 0.5  # a rung keeps at least this fraction of the digit's ink ...
MIN_CORE_COVER = 0.9  # ... and, grown back by the width it took off, covers this much of it (no stroke lost)
CONTEXT = 0.4  # brightness of the ink around a part, framed with it for the verifier (frame_in_context)

# --- finding ink on a page ---
SMALL_IMAGE_SIDE = 64  # at most this long: the background is one level or a plane (the image is probably one digit)
CROP_SIDE = 512  # at most this long, a border explained by a smooth surface makes that the background
EVEN_PERCENTILES = (5, 95)  # the border's spread about the surface, between these percentiles, ...
BORDER_FITS = 3  # ... after this many robust fits, ...
QUADRATIC_TERMS, PLANE_TERMS = 6, 3  # the surface's terms (_quadratic_terms), and a plane's
PLANE_SPREAD = 0.5  # a small image's plane leaves at most this share of its border's spread about one level
BORDER_OUTLIER = 4.0  # ... each dropping border pixels this many noise sigmas off (ink touching the edge)
MIN_BORDER_SIGMA = 0.005  # a noise-free border still keeps pixels this close
SUNK_SHARE = 0.01  # the usual background strays from the border's surface over this much of a crop: use it
MIN_PAPER_BORDER = 0.9  # a border less than this much paper (shadows, ink) is no guide to the background
BG_SIDE = 128  # the background is estimated on a copy this long ...
BG_KERNEL_FRACTION = 0.25  # ... by a median filter this fraction of its long side: wider than any stroke
BG_FLOOR = 0.05  # darkest paper we divide by (no blow-up in black corners)
MIN_INK_CONTRAST = 0.12  # ink is at least this much darker than its paper (fraction of the paper level)
MIN_ABS_INK = 0.06  # ... and this much in absolute grey level
NOISE_SIGMAS = 4.0  # ...and this many noise standard deviations
STRONG_SIGMAS = 6.0  # real strokes' cores stand out by this much; blank pages' noise does not ...
STRONG_PERCENTILE = 90  # ... at this percentile of the candidate ink pixels
MAD_TO_SIGMA = 1.4826
NOISY = 0.04  # noise sigma (contrast units) above which the image is smoothed before thresholding
NEIGHBOURHOOD = 7  # Otsu looks at candidate ink pixels and paper within this many pixels of them
MIN_INK_PIXELS = 4  # fewer candidate pixels than this: a blank image
STATS_PIXELS = 50_000  # polarity and noise are measured on a strided sample of about this many pixels
HYSTERESIS = 0.6  # pixels above this fraction of the threshold count as ink where they join a stroke


@dataclass
class InkMap:
    """Where the ink is: `ink` (H, W) float32, 0 = paper, 0.5 = stroke edge, 1 = solid stroke. Darker ink
    goes on above 1, in the same units: the cores of thick, blurred strokes stand out from loops that the blur
    filled in (`core_mask`)."""

    ink: np.ndarray
    dark_ink: bool  # the original had dark ink on light paper
    threshold: float  # contrast (fraction of the paper level) that made 0.5
    # (H, W) `ink` before hysteresis joined faint stroke pixels to it (None: the same as `ink`), and the level
    # from which it joined them: what `turn` resamples
    unjoined: np.ndarray | None = field(default=None, repr=False)
    join_level: float = 0.5

    @property
    def mask(self) -> np.ndarray:
        return (self.ink >= 0.5).astype(np.uint8)  # (H, W) 1 = ink


def ink_map(grey: np.ndarray) -> InkMap:
    """(H, W) grey in [0, 1] -> ink map: flatten the lighting, pick the polarity, threshold the contrast."""
    background, usual = paper_estimate(grey)  # (H, W); `usual` (H, W) or None
    small = max(grey.shape) <= SMALL_IMAGE_SIDE
    step = max(1, int(np.ceil((grey.size / STATS_PIXELS) ** 0.5)))  # statistics on a strided sample
    if small:  # one digit, maybe half the pixels: the ink is on the side the image leans to from its border
        dark = float((grey - background).mean()) <= 0
    else:
        sample = grey[::step, ::step] - background[::step, ::step]  # (h, w) mostly paper, lighting removed
        sample_sigma = noise_sigma(sample)  # the same whichever way the ink lies
        if usual is None:
            dark = dark_ink(sample, sample_sigma)
        else:  # a border surface fits the border but can miss a lit corner inside, which then outweighs thin
            # dark strokes as "light ink": the median, which follows it, decides the polarity
            dark = dark_ink(grey[::step, ::step] - usual[::step, ::step])
    if not dark:
        grey, background = 1.0 - grey, 1.0 - background
    darker = background - grey  # (H, W) how much darker than its paper each pixel is
    paper = np.maximum(background, BG_FLOOR)
    contrast = np.divide(darker, paper, out=paper)  # (H, W) as a fraction of the paper's brightness
    np.clip(contrast, 0, 1, out=contrast)
    abs_sigma = noise_sigma(_border(darker)) if small else sample_sigma
    sigma = abs_sigma / max(float(median(np.maximum(background[::step, ::step], BG_FLOOR))), BG_FLOOR)
    if sigma > NOISY:
        contrast = cv2.GaussianBlur(contrast, (3, 3), 0)
        sigma /= 3  # a 3x3 Gaussian averages about nine pixels of noise
    faint = darker < max(MIN_ABS_INK, NOISE_SIGMAS * abs_sigma)
    np.minimum(contrast, MIN_INK_CONTRAST, out=contrast, where=faint)  # noise on dark paper is not ink
    threshold = ink_threshold(contrast, sigma)
    if threshold is None:
        return InkMap(np.zeros_like(contrast), dark, 1.0)
    ink = contrast * (0.5 / threshold)  # not clipped at 1: see InkMap
    low = max(HYSTERESIS * 0.5, 0.5 * NOISE_SIGMAS * sigma / threshold)
    return InkMap(hysteresis(ink.copy(), low), dark, threshold, ink, low)


def turn(ink: InkMap, degrees: float, keep: np.ndarray, margin: int) -> tuple[InkMap, np.ndarray]:
    """The ink under `keep` (H, W) bool turned by `degrees` (counter-clockwise as shown, cv2's sense), on a
    canvas that holds all of it with `margin` px of paper around, and the map (2, 3) from the canvas's pixels
    back to the original's. `keep` is the glyphs a first look found: rules, specks and blobs it dropped stay
    dropped, and only their region is turned (a tenth of a photo's pixels, which every later step pays for).

    The ink is resampled before hysteresis joins faint stroke pixels and joined again after: joined pixels
    sit exactly at the 0.5 edge, and interpolating them with fainter neighbours would thin every stroke (on
    3,000 generated numbers that misread 12 more than this; a second ink map of the turned grey page, at twice
    the cost, 3 fewer)."""
    x, y, w, h = ink_box(keep) or (0, 0, *keep.shape[::-1])
    source = ink.ink if ink.unjoined is None else ink.unjoined
    region = np.where(keep[y:y + h, x:x + w], source[y:y + h, x:x + w], 0).astype(np.float32)  # (h, w)
    m, size = turn_matrix((w, h), degrees, margin)  # region -> canvas
    turned = cv2.warpAffine(region, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # where the solid ink went, pixel for pixel: a faint digit's few solid pixels, averaged with their joined
    # neighbours, would fall below 0.5 and leave hysteresis nothing to join the digit to
    solid = cv2.warpAffine((region >= 0.5).view(np.uint8), m, size, flags=cv2.INTER_NEAREST).view(bool)
    back = cv2.invertAffineTransform(m)  # canvas -> region ...
    back[:, 2] += (x, y)  # ... -> the original
    return InkMap(hysteresis(turned.copy(), ink.join_level, solid), ink.dark_ink, ink.threshold, turned,
                  ink.join_level), back


def turn_matrix(size: tuple[int, int], degrees: float, margin: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """The map (2, 3) that turns an image of `size` (w, h) by `degrees` (counter-clockwise as shown, cv2's
    sense) about its centre onto the smallest canvas that holds all of it with `margin` px around, and that
    canvas's size (W', H')."""
    w, h = size
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    canvas = (int(np.ceil(w * cos + h * sin)) + 2 * margin, int(np.ceil(w * sin + h * cos)) + 2 * margin)
    m[:, 2] += ((canvas[0] - w) / 2, (canvas[1] - h) / 2)  # the image's centre to the canvas's
    return m, canvas


def _border(grey: np.ndarray) -> np.ndarray:
    return np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])


def hysteresis(ink: np.ndarray, low: float, seeds: np.ndarray | None = None) -> np.ndarray:
    """Faint stroke pixels (ink >= low) touching solid ones (>= 0.5, or `seeds` (H, W) bool) become stroke
    edge (0.5): no broken strokes."""
    if low >= 0.5:
        return ink if seeds is None else np.maximum(ink, 0.5 * seeds, out=ink)
    weak = ink >= low
    strong = ink >= 0.5
    if seeds is not None:
        weak |= seeds
        strong |= seeds
    weak = weak.view(np.uint8)
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    solid = np.zeros(n, bool)
    solid[labels[strong]] = True
    solid[0] = False
    # only the faint pixels' labels are looked up: a lookup over the whole page cost 3x the rest
    faint = np.flatnonzero((ink < 0.5) & weak.view(bool))  # (F,) flat indices
    ink.flat[faint[solid[labels.reshape(-1)[faint]]]] = 0.5  # .flat writes through any array, views too
    return ink


def estimate_background(grey: np.ndarray) -> np.ndarray:
    """The paper's brightness everywhere (H, W) float32 (`paper_estimate`)."""
    return paper_estimate(grey).level


class Paper(NamedTuple):
    """The paper's brightness, and what the usual estimate made of it where a crop's border surface replaced it."""

    level: np.ndarray  # (H, W) float32
    usual: np.ndarray | None  # (H, W) float32: the large median or a small image's border level; None: `level`


def paper_estimate(grey: np.ndarray) -> Paper:
    """The paper's brightness everywhere (Paper.level): a large median on a reduced copy, resized back; small
    images (probably one digit) take their border's median.

    Where a smooth surface fitted to the border of a crop (at most CROP_SIDE) explains that border, and the
    usual estimate strays from it by half the faintest ink's contrast over SUNK_SHARE of the image, the
    surface is the background: a median sinks into a thick digit that fills most of its crop, and one level
    misses a gradient across it. Elsewhere the usual estimate stands (the networks were trained on it).
    A small image's surface is a plane (`border_fit`'s `plane`): a small crop of a photo across a shadow, too
    noisy for the quadratic's evenness test, read blank with one level."""
    h, w = grey.shape
    if max(h, w) <= SMALL_IMAGE_SIDE:
        bg = np.full_like(grey, float(median(_border(grey))))
        coef = border_fit(grey, plane=True)
    else:  # the estimates are compared on the reduced copy; the chosen one is resized once
        f = BG_SIDE / max(h, w)
        small = cv2.resize(grey, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        bg = median_background(small)
        coef = border_fit(grey) if max(h, w) <= CROP_SIDE else None
    if coef is not None:
        surface = quadratic(coef, bg.shape)
        strays = np.abs(surface - bg) > 0.5 * MIN_INK_CONTRAST * np.maximum(surface, BG_FLOOR)
        if strays.mean() > SUNK_SHARE:  # the usual estimate sank into ink, or missed a gradient
            return Paper(_sized(surface, grey.shape), _sized(bg, grey.shape))
    return Paper(_sized(bg, grey.shape), None)


def _sized(level: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A paper level estimated on a reduced copy, resized back to the image's (H, W)."""
    return level if level.shape == shape else cv2.resize(level, shape[::-1], interpolation=cv2.INTER_LINEAR)


def median_background(small: np.ndarray) -> np.ndarray:
    """A median over BG_KERNEL_FRACTION of the reduced copy's side: follows lighting and shadows, not strokes."""
    small8 = np.clip(small * PIXEL_MAX + 0.5, 0, PIXEL_MAX).astype(np.uint8)
    k = int(BG_SIDE * BG_KERNEL_FRACTION) | 1
    bg = cv2.medianBlur(small8, k).astype(np.float32) / PIXEL_MAX
    return cv2.GaussianBlur(bg, (5, 5), 0)  # the median is blocky; ink halos stay small


def _quadratic_terms(u: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    return [np.ones_like(u * v), u, v, u * v, u * u, v * v]  # the first PLANE_TERMS make a plane


def quadratic(coef: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The surface sum(coef * terms) over an (H, W) grid spanning [-0.5, 0.5] both ways. float32"""
    h, w = shape
    u, v = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :], np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    return sum(np.float32(c) * t for c, t in zip(coef, _quadratic_terms(u, v), strict=True)).astype(np.float32)


def border_fit(grey: np.ndarray, plane: bool = False) -> np.ndarray | None:
    """Coefficients (6,) of a quadratic surface a + bu + cv + duv + eu^2 + fv^2 fitted to the image's border
    pixels (robustly: pixels off by more than BORDER_OUTLIER noise sigmas, ink touching the edge, are dropped
    and it is fitted again), or None where it leaves the border varying by half the faintest ink's contrast.

    `plane`: a + bu + cv only (the rest 0), kept where it halves the border's spread about one level (the
    lighting's slope is most of that spread), however noisy the border. A quadratic judged that way bends
    into digits that fill a small image: optdigits' 8x8 digits read 95.33% against 96.77% with one level."""
    h, w = grey.shape
    if min(h, w) < 3:
        return None
    u, v = np.linspace(-0.5, 0.5, w, dtype=np.float32), np.linspace(-0.5, 0.5, h, dtype=np.float32)
    # the border in _border's order: top row, bottom row, left column, right column
    bu = np.concatenate([u, u, np.full(h, u[0]), np.full(h, u[-1])])
    bv = np.concatenate([np.full(w, v[0]), np.full(w, v[-1]), v, v])
    n_terms = PLANE_TERMS if plane else QUADRATIC_TERMS
    terms = np.stack(_quadratic_terms(bu, bv)[:n_terms], 1).astype(np.float64)  # (n, n_terms)
    values = _border(grey).astype(np.float64)
    keep = np.ones(len(values), bool)
    for _ in range(BORDER_FITS):
        # (k, 6): normal equations on a 6x6 system. lstsq's multi-threaded BLAS cost 10% a page; a (6, k) @ (k, 6)
        # product with k <= 4 * CROP_SIDE stays under OpenBLAS's threading threshold
        t = terms[keep]
        try:
            coef = np.linalg.solve(t.T @ t, values[keep] @ t)
        except np.linalg.LinAlgError:  # too few kept pixels, or all on two sides: no surface is determined
            return None
        residual = values - terms @ coef
        keep = np.abs(residual) <= BORDER_OUTLIER * max(noise_sigma(residual), MIN_BORDER_SIGMA)
    if keep.mean() < MIN_PAPER_BORDER:
        return None
    lo, hi = np.percentile(residual[keep], EVEN_PERCENTILES)
    if plane:
        level_lo, level_hi = np.percentile(values[keep], EVEN_PERCENTILES)
        return np.pad(coef, (0, QUADRATIC_TERMS - n_terms)) if hi - lo < PLANE_SPREAD * (level_hi - level_lo) else None
    paper = max(float(median(values - residual)), BG_FLOOR)
    return coef if hi - lo < 0.5 * MIN_INK_CONTRAST * paper else None


def noise_sigma(values: np.ndarray) -> float:
    """Robust noise level of the (mostly paper) values: median absolute deviation, as a sigma."""
    med = float(median(values))
    return MAD_TO_SIGMA * float(median(np.abs(values - med)))


def median(values: np.ndarray) -> np.floating:
    """np.median of a non-empty array, bit for bit, ~9x faster on a page's 50,000-pixel sample (0.05 ms vs
    0.45): numpy partitions at the two middle ranks at once, which its SIMD selection does not do; one rank
    is partitioned here, and the rank below it is the largest value left of it."""
    flat = np.asarray(values).reshape(-1)
    k = flat.size // 2
    part = np.partition(flat, k)
    if flat.size % 2:
        return part[k]
    return np.array([part[:k].max(), part[k]], part.dtype).mean()  # np.median's mean of the two, same dtype


def dark_ink(diff: np.ndarray, sigma: float | None = None) -> bool:
    """Is the ink darker than the paper? Ink is the strong minority on one side of the background.
    `diff` is grey minus background; `sigma`, its noise_sigma, if known."""
    sigma = noise_sigma(diff) if sigma is None else sigma
    floor = max(MIN_INK_CONTRAST / 2, NOISE_SIGMAS * sigma)
    dark = np.clip(-diff - floor, 0, None).sum()
    light = np.clip(diff - floor, 0, None).sum()
    return bool(dark >= light)


def ink_threshold(contrast: np.ndarray, sigma: float) -> float | None:
    """Otsu's threshold between strokes and the paper around them, or None if there is no ink."""
    floor = max(MIN_INK_CONTRAST, NOISE_SIGMAS * sigma)
    candidates = (contrast > floor).astype(np.uint8)
    n = int(np.count_nonzero(candidates))
    if n < MIN_INK_PIXELS:
        return None
    # the 90th percentile (the value at its rank, rounded up) below STRONG_SIGMAS: only the tail of the noise,
    # a blank page. Counted: np.percentile's partition cost 10x this
    strong = np.count_nonzero(contrast[candidates.view(bool)] >= STRONG_SIGMAS * sigma)
    if strong <= (1 - STRONG_PERCENTILE / 100) * (n - 1):
        return None
    near = cv2.dilate(candidates, np.ones((NEIGHBOURHOOD, NEIGHBOURHOOD), np.uint8)).astype(bool)
    values = np.clip(contrast[near] * PIXEL_MAX, 0, PIXEL_MAX).astype(np.uint8)
    otsu, _ = cv2.threshold(values, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return max(floor, float(otsu) / PIXEL_MAX)


# --- one digit -> the MNIST frame ---


def frame_digit(ink: np.ndarray) -> np.ndarray:
    """(h, w) ink of one digit (0.5 = stroke edge, any size) -> (28, 28) float32 in [0, 1], MNIST-framed, as
    the classifier sees it (`cores=True` in `framing`)."""
    return framing(ink)[0]


def framing(ink: np.ndarray, cores: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """frame_digit's crop, and the affine map (2, 3) it applied: ink pixel (col, row) -> field (col, row).
    `cores`: a thick digit is drawn from its strokes' cores (`core_mask`); else from its ink's edge."""
    return framings(ink, cores).core  # without `cores`, the core view is the edge view


class Views(NamedTuple):
    """One digit framed two ways, each (crop (28, 28), affine map (2, 3)); `core` is `edge` itself where the
    digit is no thicker than MNIST's widest strokes (or `cores` was not asked for)."""

    edge: tuple[np.ndarray, np.ndarray]  # from the ink's edge (0.5): the verifier's view
    core: tuple[np.ndarray, np.ndarray]  # from a thick digit's cores (core_mask): the classifier's view


def framings(ink: np.ndarray, cores: bool = True) -> Views:
    """Both views of one digit's ink (h, w): one binarisation at the edge serves both."""
    box = ink_box(ink >= 0.5)
    if box is None:
        empty = (np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32), np.array([[1.0, 0, 0], [0, 1.0, 0]]))
        return Views(empty, empty)
    x, y, w, h = box
    region = ink[y:y + h, x:x + w]
    edge = hi_res_mask(region)  # (~h*s, ~w*s) uint8, longest side HI_BOX
    width = stroke_width(edge) / HI_RES  # in 20-px-box pixels
    edge_view = _place(normalise_stroke(edge, width), box)
    core = core_mask(region, edge, width) if cores and width > MNIST_STROKE_RANGE[1] else None
    return Views(edge_view, edge_view if core is None else _place(normalise_stroke(*core), box))


def _place(mask: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A hi-res mask of the ink at `box` -> (its 28x28 crop, the affine map from ink pixels to the field)."""
    x, y, w, h = box
    hx, hy, hw, hh = ink_box(mask)
    digit = downsample(mask)
    crop, (top, left) = place_in_field(digit)
    sx, ox = _axis_map(x, w, mask.shape[1], hx, hw, digit.shape[1], left)
    sy, oy = _axis_map(y, h, mask.shape[0], hy, hh, digit.shape[0], top)
    return crop, np.array([[sx, 0.0, ox], [0.0, sy, oy]])


def _axis_map(start: int, size: int, hi_side: int, hi_start: int, hi_size: int, side: int,
              placed: int) -> tuple[float, float]:
    """framing's map along one axis, (scale, offset): page pixel -> hi-res pixel -> field pixel, with pixel
    centres at integer coordinates as cv2.resize and cv2.warpAffine count them. Plain floats: a page frames
    10 parts or more, and small numpy arrays cost more than this arithmetic."""
    s1 = (hi_side - 2 * HI_PAD) / size  # page pixels -> hi-res pixels (the mask's padding excluded)
    s2 = side / hi_size  # hi-res pixels -> field pixels
    return s1 * s2, ((-start + 0.5) * s1 - 0.5 + HI_PAD - hi_start + 0.5) * s2 - 0.5 + placed


def ink_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the nonzero pixels of a 2-D bool or uint8 mask, or None."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8) if mask.dtype == np.bool_ else mask.astype(np.uint8))
    return None if w == 0 else (int(x), int(y), int(w), int(h))


def hi_res_mask(ink: np.ndarray) -> np.ndarray:
    """Resize the ink so its longest side is HI_BOX px and binarise it at the stroke edge (0.5), padded for
    thickening. uint8 0/1."""
    mask = (_hi_res(np.minimum(ink, 1)) >= 0.5).astype(np.uint8)
    if not mask.any():  # a speck thinner than a hi-res pixel
        mask[mask.shape[0] // 2, mask.shape[1] // 2] = 1
    return _pad(mask)


def _hi_res(ink: np.ndarray) -> np.ndarray:
    """(h, w) ink -> float32 resized so its longest side is HI_BOX px."""
    h, w = ink.shape
    s = HI_BOX / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(ink.astype(np.float32), size, interpolation=interp)


def _pad(hi: np.ndarray) -> np.ndarray:
    """HI_PAD zeros around a hi-res image: room for thickening its strokes."""
    return cv2.copyMakeBorder(hi, HI_PAD, HI_PAD, HI_PAD, HI_PAD, cv2.BORDER_CONSTANT, value=0)


def core_mask(ink: np.ndarray, edge: np.ndarray, width: float) -> tuple[np.ndarray, float] | None:
    """A thick digit's strokes cut at the lowest ink level (rungs of CORE_STEP above the edge's 0.5) where they
    are no wider than MNIST's widest, and their width (20-px-box pixels); None where no rung may be taken.
    `ink` (h, w) unclipped (InkMap), `edge` its hi_res_mask, `width` the edge's stroke width (wider than that).

    A thick pen and blur fill a digit's loops and gaps at the edge's level, which makes a 5 or a 7 a blob
    that eroding can't reopen; the filled parts stay lighter than the strokes' cores, which a higher level
    finds. A rung must keep MIN_CORE_FRACTION of the edge's ink and, grown back by the width it took off,
    cover MIN_CORE_COVER of it: a stroke drawn lighter than the rest (a 7's bar) must not vanish."""
    hi = _hi_res(ink)  # (like edge, unpadded) float32: padding would only slow each rung's outline
    inside = edge[HI_PAD:-HI_PAD, HI_PAD:-HI_PAD].view(bool)  # (like hi) the edge's ink, unpadded
    area = int(np.count_nonzero(inside))
    levels, areas = _rungs(hi, inside, MIN_CORE_FRACTION * area)
    if not levels:
        return None
    tried: dict[int, tuple[np.ndarray, float]] = {}  # rung -> (its mask, its stroke width)

    def at(k: int) -> tuple[np.ndarray, float]:
        if k not in tried:
            mask = ((hi >= levels[k]) & inside).view(np.uint8)
            tried[k] = (mask, stroke_width(mask) / HI_RES)
        return tried[k]

    # Walk from the rung whose area a stroke of the wanted width would keep (strokes keep their length as
    # they thin): one or two outlines instead of one per rung. Widths fall as the level rises.
    k = min(int(np.count_nonzero(areas >= area * MNIST_STROKE_RANGE[1] / width)), len(levels) - 1)
    if at(k)[1] <= MNIST_STROKE_RANGE[1]:
        while k > 0 and at(k - 1)[1] <= MNIST_STROKE_RANGE[1]:
            k -= 1
    else:
        while k < len(levels) - 1 and at(k)[1] > MNIST_STROKE_RANGE[1]:
            k += 1
    while not _covers(*at(k), inside, width):  # a lighter stroke went: take a lower rung
        if k == 0:
            return None
        k -= 1
    mask, core_width = at(k)
    return _pad(mask), core_width


def _rungs(hi: np.ndarray, inside: np.ndarray, least: float) -> tuple[list[float], np.ndarray]:
    """The ink levels core_mask may cut at (rising) and the ink each keeps (falling, at least `least`)."""
    values = hi[inside]  # (area,) the edge's ink
    levels: list[float] = []
    areas: list[int] = []
    for n in range(1, MAX_RUNGS + 1):  # most digits stop after a few rungs: cheaper than sorting the values
        level = 0.5 * CORE_STEP ** n
        kept = int(np.count_nonzero(values >= level))
        if kept < least:
            break
        levels.append(level)
        areas.append(kept)
    return levels, np.array(areas)


def _covers(core: np.ndarray, core_width: float, inside: np.ndarray, width: float) -> bool:
    """Does the core, grown back by half the width it took off, cover MIN_CORE_COVER of the edge's ink?"""
    radius = max(0, int(np.ceil((width - core_width) * HI_RES / 2))) + 1
    square = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)  # a square grows 3-6x faster than a disc
    grown = cv2.dilate(core, square).view(bool)
    return np.count_nonzero(grown & inside) >= MIN_CORE_COVER * np.count_nonzero(inside)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary image (uint8 0/1), in pixels: ink area over half its outline's length."""
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return float(2 * mask.sum() / perimeter) if perimeter > 0 else 0.0


def normalise_stroke(mask: np.ndarray, width: float | None = None) -> np.ndarray:
    """Thicken or thin strokes so that, in the 20-px box, they are as wide as MNIST's (hi-res uint8 0/1);
    `width`: their width in 20-px-box pixels, if known."""
    width = stroke_width(mask) / HI_RES if width is None else width
    target = min(max(width, MNIST_STROKE_RANGE[0]), MNIST_STROKE_RANGE[1])  # scalars: np.clip costs 10 us
    radius = round((target - width) * HI_RES / 2)
    if radius == 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(radius) + 1, 2 * abs(radius) + 1))
    if radius > 0:
        return cv2.dilate(mask, kernel)
    thinned = cv2.erode(mask, kernel)
    return thinned if thinned.sum() >= MIN_STROKE_FRACTION * mask.sum() else mask


def downsample(mask: np.ndarray) -> np.ndarray:
    """Hi-res binary digit -> grey digit whose longest side is 20 px (area-averaged, as MNIST was made)."""
    x, y, w, h = ink_box(mask)
    crop = mask[y:y + h, x:x + w].astype(np.float32)
    s = BOX / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)  # (<=20, <=20)


def centre_in_field(digit: np.ndarray) -> np.ndarray:
    """Place a (<=20, <=20) grey digit in 28x28 with its centre of mass at MNIST's."""
    return place_in_field(digit)[0]


def place_in_field(digit: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """centre_in_field's 28x28 image, and where the digit's top-left corner went (row, col)."""
    h, w = digit.shape
    total = float(digit.sum())
    rows, cols = np.arange(h) + 0.5, np.arange(w) + 0.5
    cy = float(digit.sum(1) @ rows) / total if total > 0 else h / 2
    cx = float(digit.sum(0) @ cols) / total if total > 0 else w / 2
    top = min(max(round(MNIST_CENTRE[0] - cy), 0), IMAGE_SIZE - h)
    left = min(max(round(MNIST_CENTRE[1] - cx), 0), IMAGE_SIZE - w)
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    out[top:top + h, left:left + w] = digit
    return out, (top, left)


def frame_in_context(ink: np.ndarray, box: tuple[int, int, int, int], page: np.ndarray) -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """(frame_digit's crop of a part of a page: the classifier's view; the part framed from its ink's edge
    over the rest of the page's ink around it, dimmed to CONTEXT: the verifier's view). In the second, whether
    the part's strokes run on into other ink (a bad cut) or end there (a whole digit) shows. `ink` (h, w) is
    the part's own ink, at `box` (x, y, w, h) of `page` (H, W)."""
    views = framings(ink)
    crop, m = views.edge  # the verifier's view: from the ink's edge, as it was trained
    clean = views.core[0]  # the classifier's: from a thick digit's cores
    x, y, w, h = box
    own = cv2.dilate((ink >= 0.5).astype(np.uint8), np.ones((3, 3), np.uint8))  # the part, and its halo
    scale = float(min(m[0, 0], m[1, 1]))
    reach = int(np.ceil(IMAGE_SIZE / max(scale, 1e-6)))  # page pixels the field can show around the part
    x0, y0 = max(0, x - reach), max(0, y - reach)
    x1, y1 = min(page.shape[1], x + w + reach), min(page.shape[0], y + h + reach)
    around = np.minimum(page[y0:y1, x0:x1], 1)  # (h', w') a copy; ink darker than solid counts as solid
    own_region = around[y - y0:y - y0 + h, x - x0:x - x0 + w]
    own_region[own.astype(bool)] = 0
    if scale < 0.5:  # shrinking: average first, as an area resize would
        around = cv2.GaussianBlur(around, (0, 0), 0.4 / scale)
    shift = m.copy()
    shift[:, 2] += m[:, :2] @ np.array([x0 - x, y0 - y])  # window pixel -> part pixel -> field
    context = cv2.warpAffine(around, shift, (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_LINEAR)
    return clean, np.maximum(crop, CONTEXT * np.clip(context, 0, 1))


def frame_parts(parts: list, page: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parts (anything with `.ink` and `.box` on `page`) -> (crops (N, 28, 28), crops in context (N, 28, 28))."""
    if not parts:
        empty = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        return empty, empty.copy()
    clean, context = zip(*(frame_in_context(p.ink, p.box, page) for p in parts), strict=True)
    return np.stack(clean), np.stack(context)


def frame_digits(inks: list[np.ndarray], cores: bool = True) -> np.ndarray:
    """A list of ink crops -> (N, 28, 28) float32 batch for one call: the classifier's view, or with
    `cores=False` the verifier's (from the ink's edge)."""
    if not inks:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    return np.stack([framing(i, cores)[0] for i in inks])


def mnist_stroke_stats(images: np.ndarray) -> dict[str, float]:
    """Stroke width quartiles (20-px box) and mean centre of mass of MNIST digits, to check the constants."""
    widths, centres = [], []
    for img in images:
        g = img.astype(np.float32) / PIXEL_MAX
        x, y, w, h = ink_box(g >= 0.5)
        widths.append(stroke_width(hi_res_mask(g[y:y + h, x:x + w])) / HI_RES)
        rows, cols = np.arange(IMAGE_SIZE) + 0.5, np.arange(IMAGE_SIZE) + 0.5
        centres.append((g.sum(1) @ rows / g.sum(), g.sum(0) @ cols / g.sum()))
    q1, med, q3 = np.percentile(widths, [25, 50, 75])
    cy, cx = np.mean(centres, 0)
    return {"q1": float(q1), "median": float(med), "q3": float(q3), "centre_row": float(cy), "centre_col": float(cx)}
