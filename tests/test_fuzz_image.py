"""Property-based tests for images: random bytes, mutated or truncated files of every supported format and
random arrays, through the decoder and the Reader's whole path, end in a valid result or a documented error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from digitocr.constants import IMAGE_SIZE, NUM_CLASSES
from digitocr.errors import DigitocrError, ImageError, ImageTooLargeError, UnsupportedImageError
from digitocr.imageio import load_grey
from digitocr.ocr import LINE_SEPARATOR, LOW_CONFIDENCE_MARK, Reader, ReadResult

# inputs tried per property (reported in BENCHMARKS.md)
IMAGE_BYTES_EXAMPLES = 1000  # random bytes, bare or behind a real format's signature
IMAGE_MUTATION_EXAMPLES = 3000  # valid small files with bytes overwritten and/or cut short
IMAGE_ARRAY_EXAMPLES = 1000  # random arrays of random shapes and dtypes

# corrupt files make PIL warn (bad TIFF tags, EXIF) and huge floats make numpy warn: expected, not failures
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.*", "ignore::RuntimeWarning")

NAME = "fuzz"
FUZZ_WORK_PIXELS = 200  # a second decode with a tiny working size takes the resize branch too
DOCUMENTED = {ImageError: 400, UnsupportedImageError: 415, ImageTooLargeError: 413, DigitocrError: 400}
TEXT_CHARS = set("0123456789 " + LOW_CONFIDENCE_MARK + LINE_SEPARATOR)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIGNATURES = [PNG_SIGNATURE, b"\xff\xd8\xff", b"BM", b"GIF89a", b"GIF87a", b"II*\x00", b"MM\x00*",
              b"RIFF\x00\x00\x00\x00WEBP"]
SIGNATURE_BYTES = 8
HEADER_BYTES = 64  # mutations favour the first bytes, where sizes, modes and offsets are stored
MAX_FLIPS = 8
ROUNDING = 1e-5  # an area resize of pixels in [0, 1] may come out a float32 ulp past either end
LARGE_SCALE = 6  # a (144, 192) seed, larger than imageio.PREVIEW_SIDE


def _page(scale: int = 1) -> np.ndarray:
    """(24, 32) x scale RGB uint8: a '1' and a '7' in dark strokes on light paper (intact files have ink)."""
    rgb = np.full((24, 32, 3), 230, np.uint8)
    rgb[4:20, 6:9] = (20, 30, 120)
    rgb[4:7, 14:26] = 30
    rgb[4:20, 23:26] = 30
    return np.kron(rgb, np.ones((scale, scale, 1), np.uint8))


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _seed_files() -> list[bytes]:
    """Small valid files in every supported format, in the modes and codecs users' files come in."""
    rgb = Image.fromarray(_page())
    grey = rgb.convert("L")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(_page()[..., 0] < 128, 255, 0).astype(np.uint8)))
    wide = Image.fromarray((np.asarray(grey).astype(np.int32) * 257).astype(np.uint16))  # mode I;16
    frames = [grey, grey.point(lambda v: 255 - v)]
    large = Image.fromarray(_page(LARGE_SCALE))
    return [
        _encode(grey, "PNG"), _encode(rgb, "PNG"), _encode(rgba, "PNG"), _encode(grey.convert("1"), "PNG"),
        _encode(rgb.convert("P"), "PNG", transparency=0), _encode(grey.convert("LA"), "PNG"), _encode(wide, "PNG"),
        _encode(grey, "JPEG", quality=80), _encode(rgb, "JPEG", quality=60, progressive=True),
        _encode(rgb.convert("CMYK"), "JPEG"),
        _encode(grey, "BMP"), _encode(rgb, "BMP"), _encode(grey.convert("1"), "BMP"), _encode(rgba, "BMP"),
        _encode(grey, "GIF"), _encode(rgb.convert("P"), "GIF", transparency=3),
        _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50),
        _encode(grey, "TIFF"), _encode(rgb, "TIFF", compression="tiff_lzw"),
        _encode(rgba, "TIFF", compression="tiff_deflate"), _encode(grey, "TIFF", compression="packbits"),
        _encode(wide, "TIFF"), _encode(grey.convert("F"), "TIFF"), _encode(rgb, "TIFF", compression="jpeg"),
        _encode(rgb, "WEBP", quality=70), _encode(rgba, "WEBP", lossless=True),
        # longer than PREVIEW_SIDE: the Reader picks its scale from a preview (for JPEG, a DCT-scaled decode)
        _encode(large.convert("L"), "JPEG", quality=70), _encode(large, "JPEG", quality=50, subsampling=2),
        _encode(large.convert("L"), "PNG"),
    ]


SEEDS = _seed_files()


@pytest.fixture(scope="module")
def reader() -> Reader:
    """The bundled seed network (offline, no training) with the default verifier: the path users take."""
    return Reader("seed")


def _check_error(e: DigitocrError) -> None:
    assert type(e) in DOCUMENTED and e.http_status == DOCUMENTED[type(e)], repr(e)
    message = str(e)
    assert message and "\n" not in message and message.startswith(f"{NAME}:"), repr(message)


def _check_page(data, **kw) -> None:
    """load_grey gives an (H, W) float32 page of pixels in [0, 1], or a documented error."""
    try:
        page = load_grey(data, NAME, **kw)
    except DigitocrError as e:
        _check_error(e)
        return
    w0, h0 = page.original_size
    h, w = page.pixels.shape
    assert page.name == NAME and page.pixels.dtype == np.float32 and w0 >= 1 and h0 >= 1
    assert 1 <= w <= w0 and 1 <= h <= h0 and 0 < page.scale <= 1
    assert np.isfinite(page.pixels).all()
    assert page.pixels.min() >= -ROUNDING and page.pixels.max() <= 1 + ROUNDING


def _outcome(what: str) -> None:
    """Count outcomes in hypothesis' statistics (pytest --hypothesis-show-statistics)."""
    if currently_in_test_context():
        event(what)


def _check_read(reader: Reader, data) -> ReadResult | None:
    """Reader.read gives a consistent result or a documented error (None)."""
    try:
        result = reader.read(data, name=NAME)
    except DigitocrError as e:
        _outcome(f"read: {type(e).__name__}")
        _check_error(e)
        return None
    _outcome("read: a result" + (" with digits" if result.digits else ""))
    assert isinstance(result, ReadResult) and result.file == NAME
    n = len(result.digits)
    assert set(result.text) <= TEXT_CHARS, repr(result.text)
    assert len(result.text.replace(" ", "").replace(LINE_SEPARATOR, "")) == n
    assert result.crops.shape == (n, IMAGE_SIZE, IMAGE_SIZE) and np.isfinite(result.crops).all()
    assert result.probabilities.shape == (n, NUM_CLASSES) and np.isfinite(result.probabilities).all()
    for d in result.digits:
        assert 0 <= d.digit < NUM_CLASSES and 0 <= d.confidence <= 1 + ROUNDING
        assert d.box[2] >= 1 and d.box[3] >= 1
    result.to_dict()
    return result


def _check_bytes(reader: Reader, data: bytes) -> None:
    _check_page(data)
    _check_page(data, work_pixels=FUZZ_WORK_PIXELS)
    _check_read(reader, data)


def _as_buffer(data: bytes, kind: str):
    return {"bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data)}[kind]


@settings(max_examples=IMAGE_BYTES_EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(st.binary(max_size=512),
                 st.tuples(st.sampled_from(SIGNATURES), st.binary(max_size=512)).map(b"".join)),
       st.sampled_from(["bytes", "bytearray", "memoryview"]))
def test_image_random_bytes(reader, data, kind):
    _check_bytes(reader, _as_buffer(data, kind))


def _fix_png_crcs(data: bytearray) -> None:
    """Rewrite each PNG chunk's CRC, so that a mutated chunk is parsed instead of refused for its checksum."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        end = pos + 8 + length  # length, type, data
        if end + 4 > len(data):
            return
        data[end:end + 4] = struct.pack(">I", zlib.crc32(bytes(data[pos + 4:end])))
        pos = end + 4


@st.composite
def mutated_files(draw) -> bytes:
    """A seed file with up to MAX_FLIPS bytes overwritten (mostly in its header) and maybe cut short."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    n = len(data)
    # the header past the signature (random_bytes tries bad signatures), or anywhere
    position = st.one_of(st.integers(SIGNATURE_BYTES, HEADER_BYTES), st.integers(0, n - 1))
    for pos, value in draw(st.lists(st.tuples(position, st.integers(0, 255)), max_size=MAX_FLIPS)):
        data[pos] = value
    if data.startswith(PNG_SIGNATURE) and draw(st.booleans()):
        _fix_png_crcs(data)
    cut = draw(st.one_of(st.none(), st.integers(min(n, HEADER_BYTES), n), st.integers(0, n)))
    return bytes(data if cut is None else data[:cut])


def test_seed_files_are_read(reader):
    """Unmutated, every seed decodes and reads: the mutations start from files the reader accepts."""
    for data in SEEDS:
        assert load_grey(data, NAME).pixels.shape == Image.open(io.BytesIO(data)).size[::-1]
        assert _check_read(reader, data) is not None


@settings(max_examples=IMAGE_MUTATION_EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mutated_files())
def test_image_mutated_valid_files(reader, data):
    _check_bytes(reader, data)


SIDES = st.one_of(st.integers(0, 40), st.sampled_from([0, 1, 2, 129, 300]))  # 129, 300: the preview path
ARRAY_DTYPES = [np.uint8, np.bool_, np.float32, np.float64, np.float16, np.uint16, np.int16, np.int64,
                np.complex64]


@st.composite
def random_arrays(draw) -> np.ndarray:
    """(H, W), (H, W, 1|3|4), and some shapes no image has: any values of the dtype, NaN and inf included."""
    h, w = draw(SIDES), draw(SIDES)
    shape = draw(st.sampled_from([(h, w), (h, w, 1), (h, w, 3), (h, w, 4)] * 3 + [(h, w, 2), (h,), (h, w, 3, 1), ()]))
    dtype = np.dtype(draw(st.sampled_from(ARRAY_DTYPES)))
    if int(np.prod(shape)) > 4096:  # large arrays: a random constant page with a random stroke
        fill = draw(arrays(dtype, ()))
        a = np.full(shape, fill, dtype)
        stroke = draw(arrays(dtype, ()))
        a[h // 4:3 * h // 4, w // 3:w // 3 + max(1, w // 10)] = stroke
        return a
    return draw(arrays(dtype, shape))


@settings(max_examples=IMAGE_ARRAY_EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(random_arrays())
def test_image_random_arrays(reader, a):
    _check_page(a)
    _check_read(reader, a)


@pytest.mark.parametrize("a", [np.array([[-0.5, 0.5]]), np.array([[-np.inf, 1.0]]),
                               np.array([[[-1.8446744e19] * 3 + [1.0], [-1.8446744e19] * 4]], np.float32)],
                         ids=["negative", "-inf", "RGBA overflow to inf"])
def test_float_arrays_with_negative_values_give_pixels_in_0_1(a):
    pixels = load_grey(a, NAME).pixels
    assert np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 1


def test_non_numeric_array_error_names_the_image():
    with pytest.raises(ImageError) as e:
        load_grey(np.zeros((4, 4), np.complex64), NAME)
    _check_error(e.value)
