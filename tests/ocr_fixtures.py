"""Synthetic photos and scans of handwritten numbers, for the OCR tests and benchmarks/make_ocr_set.py.

Digits are real handwriting (MNIST images, normally from the test split: writers the networks never saw),
scaled to a digit height, thickened or thinned like another pen, set side by side (optionally touching),
then put on paper: ink colour, lighting gradient, shadow, rotation, blur, sensor noise, JPEG compression.
Every knob is a field of `Style`; nothing else varies.
"""

from __future__ import annotations

import functools
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

MNIST_BOX = 20  # MNIST's digits fill a 20-px box; a Style's height is that box's side on the page
UPSCALE_THRESHOLD = 0.3  # the ink edge on upscaled MNIST grey levels (faint MNIST strokes are strokes)
INKS = {  # RGB reflectance of the ink; pencil is lighter and grainy
    "black": (0.08, 0.08, 0.10),
    "blue": (0.10, 0.18, 0.55),
    "pencil": (0.42, 0.42, 0.44),
}
PENCIL_GRAIN = 0.35  # pencil strokes lose up to this fraction of their darkness, pixel by pixel
PICK_SEED_OFFSET = 1_000_003  # make_image draws its writers from the style's seed plus this (not its pixels' rng)
RULES_SEED_OFFSET = 2_000_003  # ... and where a page's rules fall from this (pages without rules draw nothing more)
RULE_COLOURS = {  # RGB reflectance of printed rules: a school notebook's blue, a pad's grey
    "blue": (0.55, 0.70, 0.95),
    "grey": (0.62, 0.62, 0.62),
}


@dataclass
class Style:
    """How one image is drawn. Lengths in digit heights unless the name says px."""

    height: int = 48  # px: side of MNIST's 20-px box on the page (most digits are this tall)
    spacing: float = 0.2  # gap between neighbouring digits' boxes
    touch: tuple[int, ...] = ()  # digit i touches digit i+1 (strokes overlap by touch_px)
    touch_px: float = 0.03  # overlap of touching strokes
    pen: float = 1.0  # stroke width, relative to the MNIST writer's
    ink: str = "black"
    paper: float = 0.92  # paper brightness
    gradient: float = 0.0  # lighting falls by this fraction across the page
    shadow: float = 0.0  # the shadowed part of the page is this much darker (0: no shadow)
    rotation: float = 0.0  # degrees, counter-clockwise
    blur_px: float = 0.0  # Gaussian sigma
    noise: float = 0.0  # sensor noise sigma, in [0, 1] units
    jpeg_quality: int | None = None  # None: PNG
    invert: bool = False  # light ink on a dark background
    margin: float = 0.8  # empty paper around the text (minimum, when a page size is given)
    line_gap: float = 0.7  # between lines
    page_px: tuple[int, int] | None = None  # (width, height); None: the text plus margins
    rules: str = ""  # printed on the paper under the ink: "" none, "ruled" (lines), "squared" (a grid)
    rule_pitch: float = 1.2  # between neighbouring rules
    rule_px: float = 1.0  # rule thickness in px, before the photo's blur
    rule_colour: str = "blue"  # a key of RULE_COLOURS
    seed: int = 0  # placement on the page, jitter, grain and noise
    extra: dict = field(default_factory=dict)  # free notes carried into ground truth


def digit_pool(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Indices of each digit's images."""
    return {d: np.flatnonzero(labels == d) for d in range(10)}


def pick_indices(text: str, pool: dict[int, np.ndarray], rng: np.random.Generator) -> list[list[int]]:
    """For each line of `text` (digits and newlines), the index of one random MNIST image per digit."""
    return [[int(rng.choice(pool[int(c)])) for c in line] for line in text.split("\n")]


def pick_digits(text: str, images: np.ndarray, pool: dict[int, np.ndarray],
                rng: np.random.Generator) -> list[list[np.ndarray]]:
    """For each line of `text` (digits and newlines), one random MNIST image per digit."""
    return [[images[i] for i in line] for line in pick_indices(text, pool, rng)]


def digit_ink(image: np.ndarray, height: int, pen: float) -> np.ndarray:
    """(28, 28) uint8 MNIST digit -> its ink at `height` px per 20-px box, cropped: (h, w) float32 in [0, 1]."""
    scale = height / MNIST_BOX
    size = max(1, round(28 * scale))
    up = cv2.resize(image.astype(np.float32) / 255, (size, size), interpolation=cv2.INTER_CUBIC)
    mask = (up > UPSCALE_THRESHOLD).astype(np.uint8)
    radius = round((pen - 1) * 1.1 * scale)  # MNIST's strokes are ~2.2 px of the 20-px box
    if radius:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(radius) + 1,) * 2)
        thinner = cv2.erode(mask, k) if radius < 0 else cv2.dilate(mask, k)
        mask = thinner if thinner.sum() > 0.3 * mask.sum() else mask
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return np.zeros((1, 1), np.float32)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    return cv2.GaussianBlur(crop, (3, 3), 0.7)  # antialiased edge


def line_layout(inks: list[np.ndarray], style: Style,
                rng: np.random.Generator) -> tuple[list[int], list[int], tuple[int, int]]:
    """Where each digit's ink goes on its line: (lefts, tops, (line height, line width))."""
    h = style.height
    line_h = int(max(i.shape[0] for i in inks) + 0.2 * h)
    xs, x = [], 0
    tops = [int((line_h - i.shape[0]) / 2 + rng.uniform(-0.05, 0.05) * h) for i in inks]
    tops = [min(max(t, 0), line_h - i.shape[0]) for t, i in zip(tops, inks, strict=True)]
    for n, ink in enumerate(inks):
        if n > 0:
            x = _next_x(inks[n - 1], xs[-1], tops[n - 1], ink, tops[n], style, n - 1 in style.touch, line_h)
        xs.append(x)
    width = max(x + i.shape[1] for x, i in zip(xs, inks, strict=True))
    return xs, tops, (line_h, width)


def set_line(inks: list[np.ndarray], style: Style, rng: np.random.Generator) -> np.ndarray:
    """Digits side by side, vertically centred with a little jitter; touching pairs share a stroke edge."""
    xs, tops, shape = line_layout(inks, style, rng)
    line = np.zeros(shape, np.float32)
    for x, top, ink in zip(xs, tops, inks, strict=True):
        region = line[top:top + ink.shape[0], x:x + ink.shape[1]]
        np.maximum(region, ink, out=region)
    return line


def _next_x(prev: np.ndarray, prev_x: int, prev_top: int, ink: np.ndarray, top: int, style: Style,
            touching: bool, line_h: int) -> int:
    """Left edge of the next digit: a box gap, or for touching pairs the shift where strokes just meet."""
    if not touching:
        return prev_x + prev.shape[1] + max(1, round(style.spacing * style.height))
    right = np.full(line_h, -np.inf)
    left = np.full(line_h, np.inf)
    rows_prev = np.arange(prev.shape[0]) + prev_top
    rows_next = np.arange(ink.shape[0]) + top
    solid_prev, solid_next = prev > 0.5, ink > 0.5
    has_p, has_n = solid_prev.any(1), solid_next.any(1)
    right[rows_prev[has_p]] = prev.shape[1] - 1 - np.argmax(solid_prev[has_p][:, ::-1], 1)
    left[rows_next[has_n]] = np.argmax(solid_next[has_n], 1)
    gap = left - right  # per row: how far the next digit's leftmost ink is from the previous one's rightmost
    both = np.isfinite(gap)
    if not both.any():
        return prev_x + prev.shape[1] - round(style.touch_px * style.height)
    # place the next digit so that the closest rows overlap by touch_px
    return int(prev_x - gap[both].min() - round(style.touch_px * style.height)) + 1


def set_text(lines: list[list[np.ndarray]], style: Style, rng: np.random.Generator) -> np.ndarray:
    """Lines of MNIST images -> one ink canvas (H, W) float32, left-aligned with a little indent jitter."""
    rendered = [set_line([digit_ink(d, style.height, style.pen) for d in line], style, rng) for line in lines]
    gap = round(style.line_gap * style.height)
    indents = [round(rng.uniform(0, 0.3) * style.height) for _ in rendered]
    width = max(r.shape[1] + i for r, i in zip(rendered, indents, strict=True))
    height = sum(r.shape[0] for r in rendered) + gap * (len(rendered) - 1)
    canvas = np.zeros((height, width), np.float32)
    y = 0
    for r, indent in zip(rendered, indents, strict=True):
        canvas[y:y + r.shape[0], indent:indent + r.shape[1]] = r
        y += r.shape[0] + gap
    return canvas


def rotate(ink: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate the ink canvas, growing it so nothing is cut off."""
    if not degrees:
        return ink
    h, w = ink.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos) + 2, int(h * cos + w * sin) + 2
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(ink, m, (nw, nh), flags=cv2.INTER_LINEAR)


def place(ink: np.ndarray, style: Style, rng: np.random.Generator) -> np.ndarray:
    """The ink canvas on a page (H, W): at a random place with at least the margin around it."""
    margin = round(style.margin * style.height)
    h, w = ink.shape
    if style.page_px is None:
        pw, ph = w + 2 * margin, h + 2 * margin
    else:
        pw, ph = max(style.page_px[0], w + 2 * margin), max(style.page_px[1], h + 2 * margin)
    x = int(rng.integers(margin, pw - w - margin + 1))
    y = int(rng.integers(margin, ph - h - margin + 1))
    page = np.zeros((ph, pw), np.float32)
    page[y:y + h, x:x + w] = ink
    return page


def lighting(shape: tuple[int, int], style: Style, rng: np.random.Generator) -> np.ndarray:
    """Paper brightness over the page (H, W): a linear gradient and a soft-edged shadow."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = (xx * np.cos(angle) + yy * np.sin(angle)) / max(h, w)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    light = style.paper * (1 - style.gradient * t)
    if style.shadow:
        a2 = rng.uniform(0, 2 * np.pi)
        s = xx * np.cos(a2) + yy * np.sin(a2)
        edge = rng.uniform(np.percentile(s, 20), np.percentile(s, 80))
        softness = rng.uniform(0.02, 0.1) * max(h, w)
        light = light * (1 - style.shadow / (1 + np.exp((s - edge) / softness)))
    return light.astype(np.float32)


def paper_rules(shape: tuple[int, int], style: Style) -> np.ndarray:
    """The paper's reflectance (H, W, 3) under a ruled or squared pattern: lines style.rule_pitch digit heights
    apart, turned with the writing (style.rotation: the photo turned paper and ink together), at a random
    offset; antialiased, rule_px thick."""
    h, w = shape
    rng = np.random.default_rng(style.seed + RULES_SEED_OFFSET)
    pitch = max(2.0, style.rule_pitch * style.height)
    theta = np.radians(style.rotation)
    along = np.array([np.cos(theta), -np.sin(theta)])  # a "horizontal" rule's direction (image rows grow down)
    cover = np.zeros((h, w), np.float32)
    span = float(np.hypot(h, w))
    centre = np.array([w / 2, h / 2])
    directions = [along] + ([np.array([-along[1], along[0]])] if style.rules == "squared" else [])
    for direction in directions:
        normal = np.array([-direction[1], direction[0]])
        for offset in np.arange(-span / 2 + rng.uniform(0, pitch), span / 2, pitch):
            a, b = centre + offset * normal - span * direction, centre + offset * normal + span * direction
            line = np.zeros((h, w), np.float32)
            cv2.line(line, tuple(int(np.rint(v * 16)) for v in a), tuple(int(np.rint(v * 16)) for v in b), 1.0,
                     max(1, round(style.rule_px)), cv2.LINE_AA, shift=4)
            np.maximum(cover, line, out=cover)
    colour = np.array(RULE_COLOURS[style.rule_colour], np.float32)
    return 1 - cover[..., None] * (1 - colour)


def render(lines: list[list[np.ndarray]], style: Style) -> np.ndarray:
    """Lines of MNIST images -> an RGB photo (H, W, 3) uint8."""
    rng = np.random.default_rng(style.seed)
    ink = place(rotate(set_text(lines, style, rng), style.rotation), style, rng)  # (H, W) coverage
    return photograph(ink, style, rng)


def photograph(ink: np.ndarray, style: Style, rng: np.random.Generator) -> np.ndarray:
    """Ink coverage on a page (H, W) -> an RGB photo (H, W, 3) uint8: ink colour, lighting, blur, noise."""
    ink_rgb = np.array(INKS[style.ink], np.float32)
    if style.ink == "pencil":
        ink = ink * (1 - PENCIL_GRAIN * rng.random(ink.shape, dtype=np.float32))
    light = lighting(ink.shape, style, rng)[..., None]  # (H, W, 1)
    if style.rules:
        light = light * paper_rules(ink.shape, style)  # (H, W, 3): the rules' colour on the paper
    cover = ink[..., None]
    chalk = np.repeat(light * (0.15 + 0.7 * cover), 3, axis=2)  # light strokes on a dark board
    img = chalk if style.invert else light * (1 - cover + cover * ink_rgb)  # (H, W, 3)
    if style.blur_px:
        img = cv2.GaussianBlur(img, (0, 0), style.blur_px)
    if style.noise:
        img = img + rng.normal(0, style.noise, img.shape).astype(np.float32)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def encode(rgb: np.ndarray, style: Style) -> bytes:
    """PNG, or JPEG at the style's quality."""
    buf = io.BytesIO()
    if style.jpeg_quality is None:
        Image.fromarray(rgb).save(buf, "PNG", compress_level=1)
    else:
        Image.fromarray(rgb).save(buf, "JPEG", quality=style.jpeg_quality)
    return buf.getvalue()


def make_image(text: str, style: Style, images: np.ndarray, labels: np.ndarray) -> bytes:
    """`text` (digits, newline between lines) written by random MNIST writers, as an encoded image."""
    return encode(render(pick_digits(text, images, digit_pool(labels), _writers_rng(style)), style), style)


def image_indices(text: str, style: Style, labels: np.ndarray) -> list[list[int]]:
    """The MNIST images (indices, per line) that make_image writes `text` with in `style`."""
    return pick_indices(text, digit_pool(labels), _writers_rng(style))


def _writers_rng(style: Style) -> np.random.Generator:
    return np.random.default_rng(style.seed + PICK_SEED_OFFSET)


# --- for the tests: a small trained model and digits it reads with confidence ---

TEST_MODEL_ITERATIONS = 250  # "fast" preset steps: ~97% on MNIST, a few seconds on one core
EASY_PER_CLASS = 8  # the test pool keeps each class's most confidently read MNIST test images


@functools.cache
def mnist_test():
    """MNIST's test split from the digitocr cache (tests skip when it is not there)."""
    from digitocr.data.datasets import load_dataset

    return load_dataset("mnist", progress=False).test


@functools.cache
def small_model_dir() -> Path:
    """A tiny model, trained once and kept in the data cache (so later test runs only load it)."""
    import torch

    from digitocr.config import preset
    from digitocr.data.datasets import cache_root
    from digitocr.train import fit

    run = cache_root() / "test-models" / f"ocr-fast-{TEST_MODEL_ITERATIONS}"
    if (run / "checkpoint.safetensors").exists():
        return run
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="ocr-model-", dir=run.parent if run.parent.exists() else None))
    fit(preset("fast", iterations=TEST_MODEL_ITERATIONS, threads=1, checkpoint_every=0), tmp, progress=False,
        quiet=True)
    run.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(run)  # atomic: a parallel session either sees the whole model or trains its own
    except OSError:
        return tmp
    return run


@functools.cache
def easy_digits(model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels): per class the MNIST test images the model reads most confidently after framing."""
    from digitocr.classifier import load_classifier
    from digitocr.preprocess import frame_digits

    test = mnist_test()
    images, labels = test.images[:2000], test.labels[:2000]
    probs = load_classifier(str(model_dir))(frame_digits(list(images.astype(np.float32) / 255)))
    right = probs[np.arange(len(labels)), labels]
    keep = np.concatenate([np.flatnonzero(labels == d)[np.argsort(-right[labels == d])[:EASY_PER_CLASS]]
                           for d in range(10)])
    return images[keep], labels[keep]
