"""Generate an OCR test set: photos and scans of handwritten numbers made from MNIST's *test* writers.

    python benchmarks/make_ocr_set.py --out /tmp/ocr_set2 --seed 2 --n 1000
    python benchmarks/make_ocr_set.py --out /tmp/lined8 --seed 8 --n 600 --category lined

Writes DIR/NNNNN.{png,jpg} and DIR/truth.json (a list of {file, text, category, style}). Categories, in the
default mix (CATEGORIES): isolated (one digit anywhere on a page), number (2-10 digits), touching (2-10
digits, 1-2 pairs touching), multiline (2-3 lines), long (11-12 digits), inverted (light ink on dark),
photo8 (a 1-megapixel photo of an 8-digit number). Asked for alone (--category): lined (2-10 digits on ruled
or squared paper). Every random choice is one of the named ranges below; the seed fixes them all.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ocr_fixtures import Style, make_image


@dataclass(frozen=True)
class Knobs:
    """The ranges styles are drawn from (uniform unless noted)."""

    height_px: tuple[int, int] = (24, 200)  # digit height, log-uniform
    spacing: tuple[float, float] = (0.05, 0.5)  # gap between digits, in heights
    touch_px: tuple[float, float] = (0.0, 0.06)  # overlap of touching strokes, in heights
    pen: tuple[float, float] = (0.6, 1.6)  # stroke width relative to the writer's
    inks: tuple[tuple[str, float], ...] = (("black", 0.5), ("blue", 0.3), ("pencil", 0.2))
    paper: tuple[float, float] = (0.7, 0.97)
    gradient: tuple[float, float] = (0.0, 0.5)
    shadow_chance: float = 0.4
    shadow: tuple[float, float] = (0.2, 0.6)
    rotation_deg: tuple[float, float] = (-10.0, 10.0)
    blur_px: tuple[float, float] = (0.0, 1.0)  # plus blur_per_height * height
    blur_per_height: tuple[float, float] = (0.0, 0.012)
    noise: tuple[float, float] = (0.0, 0.03)
    jpeg_chance: float = 0.7
    jpeg_quality: tuple[int, int] = (40, 95)
    margin: tuple[float, float] = (0.3, 1.5)  # in heights
    line_gap: tuple[float, float] = (0.4, 1.0)
    isolated_page: tuple[float, float] = (3.0, 12.0)  # page sides, in digit heights
    max_page_side: int = 2400
    photo8_page: tuple[int, int] = (1155, 866)  # 1.0 megapixel
    photo8_height: tuple[int, int] = (60, 110)
    # "lined": numbers written on ruled or squared paper (not in the default mix: --category lined)
    rules: tuple[str, ...] = ("ruled", "squared")
    rule_pitch: tuple[float, float] = (0.9, 1.6)  # rules this many digit heights apart
    rule_px: tuple[float, float] = (1.0, 3.0)  # rule thickness (uniform, rounded)
    rule_colours: tuple[str, ...] = ("blue", "grey")


# Share of the set per category (whole-number exact match is reported per category).
CATEGORIES = {"isolated": 0.3, "number": 0.3, "touching": 0.2, "multiline": 0.08, "long": 0.04,
              "inverted": 0.04, "photo8": 0.04}


def random_style(rng: np.random.Generator, k: Knobs, seed: int) -> Style:
    u = rng.uniform
    height = round(float(np.exp(u(*np.log(k.height_px)))))
    inks, weights = zip(*k.inks, strict=True)
    return Style(
        height=height, spacing=u(*k.spacing), touch_px=u(*k.touch_px), pen=u(*k.pen),
        ink=str(rng.choice(inks, p=np.array(weights) / sum(weights))), paper=u(*k.paper),
        gradient=u(*k.gradient), shadow=u(*k.shadow) if u() < k.shadow_chance else 0.0,
        rotation=u(*k.rotation_deg), blur_px=u(*k.blur_px) + u(*k.blur_per_height) * height,
        noise=u(*k.noise), jpeg_quality=int(rng.integers(*k.jpeg_quality)) if u() < k.jpeg_chance else None,
        margin=u(*k.margin), line_gap=u(*k.line_gap), seed=seed,
    )


def digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, n))


def make_case(category: str, rng: np.random.Generator, k: Knobs, seed: int) -> tuple[str, Style]:
    """(text, style) for one image of a category."""
    style = random_style(rng, k, seed)
    if category == "isolated":
        lo, hi = k.isolated_page
        side = [min(k.max_page_side, int(style.height * rng.uniform(lo, hi))) for _ in range(2)]
        return digits(rng, 1), _replace(style, page_px=tuple(side))
    if category in ("number", "inverted"):
        return digits(rng, int(rng.integers(2, 11))), _replace(style, invert=category == "inverted")
    if category == "touching":
        n = int(rng.integers(2, 11))
        pairs = rng.choice(n - 1, size=min(n - 1, int(rng.integers(1, 3))), replace=False)
        return digits(rng, n), _replace(style, touch=tuple(sorted(int(p) for p in pairs)))
    if category == "multiline":
        lines = [digits(rng, int(rng.integers(1, 9))) for _ in range(int(rng.integers(2, 4)))]
        return "\n".join(lines), style
    if category == "long":
        return digits(rng, int(rng.integers(11, 13))), style
    if category == "photo8":
        height = int(rng.integers(*k.photo8_height))
        quality = int(rng.integers(60, 91))
        return digits(rng, 8), _replace(style, height=height, page_px=k.photo8_page, jpeg_quality=quality,
                                        blur_px=min(style.blur_px, 1.5))
    if category == "lined":
        return digits(rng, int(rng.integers(2, 11))), _replace(
            style, rules=str(rng.choice(k.rules)), rule_pitch=float(rng.uniform(*k.rule_pitch)),
            rule_px=float(round(rng.uniform(*k.rule_px))), rule_colour=str(rng.choice(k.rule_colours)))
    raise ValueError(category)


def _replace(style: Style, **kw) -> Style:
    return Style(**{**asdict(style), **kw})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: 1; develop on 1, report on 2)")
    p.add_argument("--n", type=int, default=1000, help="number of images (default: 1000)")
    p.add_argument("--category", default=None, choices=[*CATEGORIES, "lined"],
                   help="make every image of this one category, e.g. lined (default: the CATEGORIES mix)")
    args = p.parse_args()

    from digitocr.data.datasets import load_dataset

    test = load_dataset("mnist", progress=False).test  # writers never seen in training
    rng = np.random.default_rng(args.seed)
    names, shares = zip(*(CATEGORIES if args.category is None else {args.category: 1.0}).items(), strict=True)
    counts = np.floor(np.array(shares) * args.n).astype(int)
    counts[min(1, len(counts) - 1)] += args.n - counts.sum()  # the rounding's remainder: numbers
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth, knobs = [], Knobs()
    for category, count in zip(names, counts, strict=True):
        for _ in range(count):
            i = len(truth)
            text, style = make_case(category, rng, knobs, seed=args.seed * 1_000_000 + i)
            data = make_image(text, style, test.images, test.labels)
            name = f"{i:05d}.{'png' if style.jpeg_quality is None else 'jpg'}"
            (out / name).write_bytes(data)
            truth.append({"file": name, "text": text, "category": category, "style": asdict(style)})
    (out / "truth.json").write_text(json.dumps({"seed": args.seed, "knobs": asdict(knobs), "images": truth},
                                               indent=1))
    print(f"wrote {len(truth)} images to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
