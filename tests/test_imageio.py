"""imageio: every supported format decodes to the same grey image; bad input fails with the right error."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitocr.errors import ImageError, ImageTooLargeError, UnsupportedImageError
from digitocr.imageio import array_to_grey, load_grey

LOSSLESS = ["PNG", "BMP", "TIFF", "GIF"]
LOSSY = ["JPEG", "WEBP"]


def gradient(h: int = 40, w: int = 60) -> np.ndarray:
    return np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", LOSSLESS + LOSSY)
def test_formats_decode_to_the_same_grey(fmt):
    g = gradient()
    got = load_grey(encode(Image.fromarray(g), fmt)).pixels
    tolerance = 0.02 if fmt in LOSSLESS else 0.06
    assert got.shape == g.shape and got.dtype == np.float32
    assert np.abs(got - g / 255).mean() < tolerance


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
@pytest.mark.parametrize("turn", range(1, 9))
def test_exif_orientation_turns_the_pixels_upright_as_viewers_show_them(fmt, turn):
    """Phones store the sensor's pixels and an EXIF orientation; the pixels read must be what the user sees."""
    from PIL import ImageOps

    stored = (np.random.default_rng(turn).random((30, 50)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = turn
    data = encode(Image.fromarray(stored), fmt, exif=exif.tobytes(), **({"quality": 100} if fmt in LOSSY else {}))
    shown = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("L"), np.float32) / 255
    page = load_grey(data)
    assert page.pixels.shape == shown.shape and page.original_size == (shown.shape[1], shown.shape[0])
    assert np.abs(page.pixels - shown).max() < 1e-6


def test_colour_uses_luma_so_blue_ink_stays_dark():
    rgb = np.full((10, 10, 3), 235, np.uint8)
    rgb[3:7, 3:7] = (25, 45, 140)  # blue ballpoint
    grey = load_grey(encode(Image.fromarray(rgb), "PNG")).pixels
    assert grey[5, 5] < 0.3 < 0.85 < grey[0, 0]


def test_gif_first_frame():
    frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (0, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert load_grey(buf.getvalue()).pixels.max() < 0.1


def test_transparent_canvas_gets_a_contrasting_backdrop():
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[5:15, 9:11] = (0, 0, 0, 255)  # black stroke on a transparent canvas
    grey = load_grey(encode(Image.fromarray(rgba), "PNG")).pixels
    assert grey[10, 10] < 0.1 and grey[0, 0] > 0.9
    rgba[5:15, 9:11] = (255, 255, 255, 255)  # white stroke on a transparent canvas
    grey = load_grey(encode(Image.fromarray(rgba), "PNG")).pixels
    assert grey[10, 10] > 0.9 and grey[0, 0] < 0.1


@pytest.mark.parametrize("array", [
    np.full((5, 6), 128, np.uint8), np.full((5, 6, 3), 128, np.uint8), np.full((5, 6, 1), 128, np.uint8),
    np.full((5, 6), 128 / 255, np.float64), np.full((5, 6), 128 * 257, np.uint16),
])
def test_arrays(array):
    assert np.allclose(array_to_grey(array), 128 / 255, atol=0.01)


@pytest.mark.parametrize("array, white", [
    (np.array([[0.0, 0.5, 1.12]]), 1.0),  # a [0, 1] image resized with cubic interpolation overshoots 1
    (np.array([[0.0, 127.5, 255.0]]), 255.0),  # floats in 0-255
    (np.array([[0, 100, 255]], np.uint16), 255.0),  # 8-bit data in a 16-bit container
    (np.array([[0, 100, 1020]], np.uint16), 1023.0),  # 10-bit
    (np.array([[0, 100, 40000]], np.int32), 65535.0),  # 16-bit data in a wider integer
])
def test_array_values_are_read_at_their_range(array, white):
    assert np.allclose(array_to_grey(array), np.clip(array / white, 0, 1), atol=1e-6)


def test_a_16_bit_png_of_10_bit_data_is_not_black():
    pixels = np.array([[0, 60, 255]] * 4, np.uint16) * 4  # 10-bit values in a 16-bit PNG
    grey = load_grey(encode(Image.fromarray(pixels), "PNG")).pixels
    assert np.allclose(grey[0], [0, 240 / 1023, 1020 / 1023], atol=1e-3)


def test_paths_and_names(tmp_path):
    path = tmp_path / "g.png"
    path.write_bytes(encode(Image.fromarray(gradient()), "PNG"))
    assert load_grey(path).name == str(path)
    assert load_grey(str(path), name="upload").name == "upload"


def test_work_pixels_reduces_and_keeps_the_scale():
    img = load_grey(encode(Image.fromarray(gradient(400, 600)), "PNG"), work_pixels=60_000)
    assert img.pixels.shape == (200, 300) and img.original_size == (600, 400) and img.scale == 0.5


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("wanted", [0.1, 0.4, 2.0])
def test_choose_scale_sees_a_preview_and_sets_the_scale(fmt, wanted):
    g = gradient(900, 1200)
    seen = []

    def choose(preview):
        seen.append(preview)
        return wanted

    img = load_grey(encode(Image.fromarray(g), fmt), choose_scale=choose)
    [preview] = seen
    assert preview.original_size == (1200, 900) and 128 <= max(preview.pixels.shape) <= 256
    assert img.original_size == (1200, 900)
    assert img.scale == pytest.approx(min(wanted, 1.0), abs=0.01)  # never enlarged
    assert img.pixels.mean() == pytest.approx(g.mean() / 255, abs=0.02)  # the same picture


def test_choose_scale_is_not_asked_about_small_images():
    img = load_grey(encode(Image.fromarray(gradient(90, 120)), "JPEG"), choose_scale=lambda p: 1 / 0)
    assert img.pixels.shape == (90, 120)


def test_jpeg_is_decoded_straight_at_a_nearby_dct_scale():
    img = load_grey(encode(Image.fromarray(gradient(900, 1200)), "JPEG"), choose_scale=lambda p: 0.55)
    assert img.pixels.shape == (450, 600)  # 1/2: within DCT_SLACK of 0.55


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header says width x height: a decompression bomb's signature."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


def test_decompression_bomb_refused_from_its_header():
    with pytest.raises(ImageTooLargeError, match="limit"):
        load_grey(png_claiming(30_000, 30_000))
    with pytest.raises(ImageTooLargeError):  # below PIL's own guard, above ours
        load_grey(png_claiming(6_000, 5_000))


def test_byte_limit():
    with pytest.raises(ImageTooLargeError, match="bytes"):
        load_grey(encode(Image.fromarray(gradient()), "PNG"), max_bytes=10)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs a device file that never ends")
def test_byte_limit_holds_for_files_that_report_no_size():
    """A pipe or a device has no size to check first: reading stops one byte past the limit."""
    with pytest.raises(ImageTooLargeError, match="bytes"):
        load_grey("/dev/zero", max_bytes=1000)


@pytest.mark.parametrize(("data", "error", "message"), [
    (b"", ImageError, "empty"),
    (b"hello, I am a text file\n" * 10, UnsupportedImageError, r"not an image"),
    (encode(Image.new("L", (8, 8)), "PDF"), UnsupportedImageError, "not an image|not supported"),
])
def test_bad_bytes(data, error, message):
    with pytest.raises(error, match=message):
        load_grey(data, name="upload.bin")


def test_truncated_png():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)), "PNG")
    with pytest.raises(ImageError, match=r"truncated|corrupt"):
        load_grey(data[: len(data) // 2])


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_grey(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="an empty path"):
        load_grey("")


def test_an_oversized_array_is_refused_from_its_shape_before_any_copy():
    import tracemalloc

    huge = np.broadcast_to(np.uint8(255), (20_000, 20_000))  # 400 megapixels that take no memory yet
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match="400,000,000 pixels"):
            load_grey(huge)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # a float copy would be 1.6 GB


def test_pil_images_and_file_objects_read_as_their_bytes_do(tmp_path):
    pixels = gradient()
    path = tmp_path / "g.png"
    path.write_bytes(encode(Image.fromarray(pixels), "PNG"))
    want = load_grey(path).pixels
    with Image.open(path) as img:
        assert np.array_equal(load_grey(img).pixels, want)
    with open(path, "rb") as f:
        page = load_grey(f)
    assert np.array_equal(page.pixels, want) and page.name == str(path)
    assert np.array_equal(load_grey(io.BytesIO(path.read_bytes())).pixels, want)
    with open(path, encoding="latin-1") as f, pytest.raises(ImageError, match="binary mode"):
        load_grey(f)
    with pytest.raises(ImageTooLargeError, match="pixels"):  # a PIL image is held to the pixel limit too
        load_grey(Image.new("L", (6000, 5000)))
    with pytest.raises(ImageError, match="expected a path"):
        load_grey(3.5)
