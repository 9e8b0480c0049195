"""Decode what users send (a path, bytes or an array) into one grey image, refusing oversized input early.

Every reader of images (CLI, Python API, HTTP server) comes through `load_grey`, so the limits hold for all:
the byte count is checked before reading, the pixel count from the header before decoding, and huge
images are decoded straight to a reduced working size (JPEG's DCT scaling, else an area resize). A caller
that knows what scale it wants from a glance at the image passes `choose_scale`: it gets a small preview
(for JPEG, decoded at 1/2 to 1/8 size, which is cheap) and the image is then decoded at the scale it names.
"""

from __future__ import annotations

import io
import os
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .constants import PIXEL_MAX
from .errors import ImageError, ImageTooLargeError, UnsupportedImageError

DEFAULT_MAX_PIXELS = 25_000_000  # 20-megapixel photos plus a margin
DEFAULT_MAX_BYTES = 100 * 2**20  # an uncompressed 25-megapixel RGB TIFF/BMP still fits
SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "MPO")  # MPO: multi-picture JPEG from phones
FORMAT_NAMES = "PNG, JPEG, BMP, TIFF, WebP or GIF"
ALPHA_OPAQUE = 0.5  # pixels at least this opaque decide whether the ink is light or dark
BIT_DEPTHS = (8, 10, 12, 14, 16)  # integer pixels are read at the smallest of these depths that holds them
FLOAT_UNIT_MAX = 2.0  # float pixels up to this are [0, 1] (resampling overshoots 1); above, they are 0-255
# ITU-R 601 luma, as PIL's convert("L") uses: blue ink stays darker than the paper.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)

DCT_SLACK = 0.8  # a chosen scale may be lowered this much to decode a JPEG straight at 1/2, 1/4 or 1/8 size
PREVIEW_SIDE = 128  # the preview handed to `choose_scale` is about this long (at least, for JPEG)
EXIF_ORIENTATION = 0x0112  # the EXIF tag phones set instead of rotating the pixels they store
# EXIF orientation -> the numpy view that shows stored (H, W) pixels upright, as image viewers do
# (the same turns as PIL.ImageOps.exif_transpose; 5-8 swap width and height)
UPRIGHT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1], 5: lambda a: a.T,
           6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].T, 8: lambda a: np.rot90(a, 1)}
# a path, encoded bytes, a binary file object, a numpy array or a PIL image
ImageInput = str | os.PathLike | bytes | bytearray | memoryview | typing.BinaryIO | np.ndarray | Image.Image


ScaleChooser = Callable[["GreyImage"], float]  # a preview -> working pixels per original pixel


@dataclass
class GreyImage:
    """A decoded image: `pixels` (H, W) float32 in [0, 1], maybe reduced from the original (W0, H0)."""

    pixels: np.ndarray
    original_size: tuple[int, int]  # (width, height) upright (after the file's EXIF orientation)
    name: str

    @property
    def scale(self) -> float:
        """Working pixels per original pixel (1.0 unless decoded at a reduced size)."""
        return self.pixels.shape[1] / self.original_size[0]


def load_grey(image: ImageInput, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
              max_bytes: int = DEFAULT_MAX_BYTES, work_pixels: int | None = None,
              choose_scale: ScaleChooser | None = None) -> GreyImage:
    """Any supported image -> grey, at most `work_pixels` pixels (None: full size).

    With `choose_scale`, the image is decoded at the scale it returns for a preview (never enlarged).
    Raises ImageTooLargeError above `max_bytes` / `max_pixels`, UnsupportedImageError for other file types
    and ImageError for empty, truncated or undecodable data; every message names the image.
    """
    if isinstance(image, Image.Image):  # decoded already: upright as a viewer shows it, then as any array
        label = name or "PIL image"
        check_pixels(image.width, image.height, max_pixels, label)
        grey = pil_to_grey(ImageOps.exif_transpose(image))
        page = GreyImage(grey, (grey.shape[1], grey.shape[0]), label)
        return _rescale(page, _wanted_scale(page, work_pixels, choose_scale))
    if isinstance(image, np.ndarray):
        label = name or "array"
        if image.ndim in (2, 3):  # refused from its shape, before a float copy of it is made (other shapes:
            check_pixels(image.shape[1], image.shape[0], max_pixels, label)  # array_to_grey says why not)
        grey = array_to_grey(image, label)
        page = GreyImage(grey, (grey.shape[1], grey.shape[0]), label)
        return _rescale(page, _wanted_scale(page, work_pixels, choose_scale))
    data, label = read_bytes(image, name, max_bytes)
    return decode_bytes(data, label, max_pixels, work_pixels, choose_scale)


def read_bytes(image: ImageInput, name: str | None, max_bytes: int) -> tuple[bytes, str]:
    """(the encoded bytes, a name for messages), with the size checked before the file is read."""
    if isinstance(image, bytes | bytearray | memoryview):
        data, label = bytes(image), name or "image"
    elif isinstance(image, str | os.PathLike):
        if not os.fspath(image):  # Path("") is the working directory: say what was given
            raise ImageError(f"{name or 'image'}: an empty path names no file")
        path = Path(image)
        label = name or str(path)
        data = _read_file(path, label, max_bytes)
    elif callable(getattr(image, "read", None)):  # an open file, io.BytesIO: one byte past the limit at most
        label = name or str(getattr(image, "name", "image"))
        data = image.read(max_bytes + 1)
        if not isinstance(data, bytes | bytearray):
            raise ImageError(f"{label}: a file opened in text mode; open it in binary mode ('rb')")
        data = bytes(data)
    else:
        raise ImageError(f"{name or 'image'}: expected a path, bytes, a file object, a numpy array or a PIL image, "
                         f"got {type(image).__name__}")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"{label}: {len(data):,} bytes is more than the limit of {max_bytes:,}")
    if not data:
        raise ImageError(f"{label}: the file is empty (0 bytes)")
    return data, label


def _read_file(path: Path, label: str, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ImageError(f"{label}: is a directory, not an image")
        if size > max_bytes:
            raise ImageTooLargeError(f"{label}: {size:,} bytes is more than the limit of {max_bytes:,}")
        with open(path, "rb") as f:  # pipes and devices report no size: read one byte past the limit at most
            return f.read(max_bytes + 1)
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except OSError as e:
        raise ImageError(f"{label}: cannot read it ({e.strerror or e})") from None


def check_pixels(width: int, height: int, max_pixels: int, label: str) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"{label}: the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"{label}: {width}x{height} is {width * height:,} pixels, more than the limit "
                                 f"of {max_pixels:,}")


def decode_bytes(data: bytes, label: str, max_pixels: int, work_pixels: int | None = None,
                 choose_scale: ScaleChooser | None = None) -> GreyImage:
    """Encoded bytes -> grey; the header's size is checked before any pixel is decoded."""
    _raise_pil_limit(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _open(data, label, max_pixels)
            if img.format not in ("JPEG", "MPO"):
                img.seek(0)  # GIF, TIFF, WebP: the first frame
                page = upright(GreyImage(pil_to_grey(img), img.size, label), orientation(img))
                return _rescale(page, _wanted_scale(page, work_pixels, choose_scale))
            original = img.size
            # JPEG: decode straight to grey at 1/2, 1/4 or 1/8 size where that is enough
            scale = _work_scale(original, work_pixels)
            if choose_scale is not None and max(original) > PREVIEW_SIDE:
                preview = _decode_jpeg(img, PREVIEW_SIDE / max(original), label)
                scale = _dct_scale(min(scale, choose_scale(preview)))
                if scale <= preview.scale:  # the preview is large enough: no second decode
                    return _rescale(preview, scale)
                img = _open(data, label, max_pixels)
            return _rescale(_decode_jpeg(img, scale, label), scale)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(f"{label}: the image claims more pixels than the limit of {max_pixels:,} "
                                 "(a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"{label}: not an image digitocr can read; send {FORMAT_NAMES}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{label}: cannot decode the image, it may be truncated or corrupt ({e})") from None


def _open(data: bytes, label: str, max_pixels: int) -> Image.Image:
    img = Image.open(io.BytesIO(data))  # lazy: reads the header only
    if img.format not in SUPPORTED_FORMATS:
        raise UnsupportedImageError(f"{label}: {img.format} images are not supported; send {FORMAT_NAMES}")
    check_pixels(img.width, img.height, max_pixels, label)
    return img


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (2-8) still to apply to a decoded image; 1 when it has none or it is unreadable.

    Asked after decoding: Pillow turns TIFFs upright itself and then drops the tag, JPEGs it leaves as stored."""
    try:
        turn = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block must not stop the pixels being read
        return 1
    return turn if turn in UPRIGHT else 1


def upright(page: GreyImage, turn: int) -> GreyImage:
    """`page` turned by EXIF orientation `turn`, so that boxes are where the user's viewer shows the digits."""
    if turn not in UPRIGHT:
        return page
    w, h = page.original_size
    return GreyImage(np.ascontiguousarray(UPRIGHT[turn](page.pixels)), (h, w) if turn >= 5 else (w, h), page.name)


def _decode_jpeg(img: Image.Image, scale: float, label: str) -> GreyImage:
    """Decode a JPEG to grey, upright, at the DCT scale (1, 1/2, 1/4, 1/8) nearest above `scale`."""
    original = img.size
    img.draft("L", (max(1, int(img.width * scale)), max(1, int(img.height * scale))))
    return upright(GreyImage(pil_to_grey(img), original, label), orientation(img))


def _dct_scale(scale: float) -> float:
    """A scale chosen by a caller, lowered to a JPEG DCT scale (1/2, 1/4, 1/8) when one is within
    DCT_SLACK of it: decoding straight at that size is faster than decoding larger and resizing."""
    for dct in (1.0, 0.5, 0.25, 0.125):
        if DCT_SLACK * scale <= dct < scale:
            return dct
    return scale


def _work_scale(size: tuple[int, int], work_pixels: int | None) -> float:
    """The scale that brings `size` (width, height) down to at most `work_pixels` pixels."""
    pixels = size[0] * size[1]
    return 1.0 if not work_pixels or pixels <= work_pixels else (work_pixels / pixels) ** 0.5


def _wanted_scale(page: GreyImage, work_pixels: int | None, choose_scale: ScaleChooser | None) -> float:
    scale = _work_scale(page.original_size, work_pixels)
    if choose_scale is not None and max(page.original_size) > PREVIEW_SIDE:
        scale = min(scale, choose_scale(_rescale(page, PREVIEW_SIDE / max(page.original_size))))
    return scale


def _rescale(page: GreyImage, scale: float) -> GreyImage:
    """`page` area-averaged to `scale` x its original size (kept as it is when it is not larger than that)."""
    w0, h0 = page.original_size
    size = (max(1, round(w0 * min(scale, 1.0))), max(1, round(h0 * min(scale, 1.0))))
    h, w = page.pixels.shape
    if w <= size[0] and h <= size[1]:
        return replace(page, pixels=np.ascontiguousarray(page.pixels, dtype=np.float32))
    return replace(page, pixels=cv2.resize(page.pixels.astype(np.float32, copy=False), size,
                                           interpolation=cv2.INTER_AREA))


def _raise_pil_limit(max_pixels: int) -> None:
    """PIL's bomb guard must not fire below our own limit (we check the header ourselves first)."""
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def pil_to_grey(img: Image.Image) -> np.ndarray:
    """A PIL image in any mode -> (H, W) float32 in [0, 1]; transparency is composited (see _composite)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(img, dtype=np.float32)
        return np.clip(a / _integer_top(float(a.max())), 0, 1) if img.mode != "F" else _normalise_float(a)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        la = np.asarray(img.convert("LA"), dtype=np.float32) / PIXEL_MAX  # (H, W, 2)
        return _composite(la[..., 0], la[..., 1])
    grey = np.asarray(img if img.mode == "L" else img.convert("L")).astype(np.float32)
    grey *= 1.0 / PIXEL_MAX
    return grey


def _composite(lum: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Drawings on a transparent canvas: put the strokes on a backdrop of the opposite brightness."""
    opaque = alpha >= ALPHA_OPAQUE
    if not opaque.any():
        return np.ones_like(lum)
    backdrop = 0.0 if lum[opaque].mean() > 0.5 else 1.0
    return lum * alpha + backdrop * (1 - alpha)


def _normalise_float(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if a.min() >= 0 and a.max() <= 1:
        return a
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def array_to_grey(a: np.ndarray, label: str = "array") -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA, any numeric dtype -> (H, W) float32 in [0, 1]."""
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        channels = a.shape[2]
    elif a.ndim == 2:
        channels = 0
    else:
        raise ImageError(f"{label}: expected an (H, W) or (H, W, 1|3|4) array, got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageError(f"{label}: the image has no pixels ({a.shape[1]}x{a.shape[0]})")
    f = _to_unit(a, label)
    if channels in (0, 1):
        return f.reshape(a.shape[:2])
    grey = f[..., :3] @ LUMA  # (H, W)
    return _composite(grey, f[..., 3]) if channels == 4 else grey


def _integer_top(top: float) -> float:
    """The white of integer pixels whose largest value is `top`: 255 for 8-bit data, 1023 for 10-bit, ...,
    65535 for 16-bit (an 8-bit image in a 16-bit container, as some PNGs and arrays are, is not read as black);
    beyond 16 bits, the largest value itself."""
    for bits in BIT_DEPTHS:
        if top <= 2 ** bits - 1:
            return float(2 ** bits - 1)
    return top


def _to_unit(a: np.ndarray, label: str) -> np.ndarray:
    """Any numeric array -> float32 in [0, 1]. Floats up to FLOAT_UNIT_MAX are taken as [0, 1] (a cubic
    resize of a [0, 1] image overshoots 1), larger ones as 0-255; integers at their bit depth (_integer_top).
    Values outside the range (negative, NaN, infinite) are clipped into it."""
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / PIXEL_MAX
    if np.issubdtype(a.dtype, np.integer):
        f = a.astype(np.float32)
        return np.clip(f / _integer_top(float(f.max(initial=0))), 0, 1)
    if np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a, nan=0.0, posinf=float(PIXEL_MAX), neginf=0.0).astype(np.float32)
        scale = 1.0 if a.max(initial=0) <= FLOAT_UNIT_MAX else float(PIXEL_MAX)
        return np.clip(a / scale, 0, 1)
    raise ImageError(f"{label}: an array of dtype {a.dtype} is not an image")
