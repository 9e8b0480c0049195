import gzip

import numpy as np
import pytest

from digitocr.data.idx import encode_idx, parse_idx, read_idx, write_idx
from digitocr.errors import DigitocrError


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip_every_idx_type(tmp_path, dtype):
    arr = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    write_idx(tmp_path / "a", arr)
    back = read_idx(tmp_path / "a")
    assert back.dtype == np.dtype(dtype) and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_gzip_is_read_by_magic_not_name(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "labels", arr, compress=True)
    assert (tmp_path / "labels").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), arr)


def test_header_is_big_endian_mnist_layout():
    data = encode_idx(np.zeros((3, 28, 28), np.uint8))
    assert data[:4] == b"\x00\x00\x08\x03"
    assert data[4:16] == (3).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    assert len(data) == 16 + 3 * 28 * 28


GOOD = encode_idx(np.zeros((4, 5, 5), np.uint8))


@pytest.mark.parametrize("data, message", [
    (b"", "too short"),
    (b"\x00\x00", "too short"),
    (b"\x01\x00\x08\x03" + GOOD[4:], "bad magic"),
    (b"\x00\x00\x07\x03" + GOOD[4:], "bad magic"),
    (b"\x00\x00\x08\x00", "dimensions"),
    (b"\x00\x00\x08\x09" + b"\x00" * 40, "dimensions"),
    (GOOD[:10], "truncated IDX header"),
    (GOOD[:-1], "truncated"),
    (GOOD + b"\x00", "disagree"),
    # a header claiming 2**32-1 images must be refused without allocating them
    (b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" + b"\x00\x00\x00\x1c" * 2 + b"\x00" * 100, "truncated"),
])
def test_corrupt_headers_give_clear_errors(data, message):
    with pytest.raises(DigitocrError, match=message):
        parse_idx(data, "f.idx")


def test_errors_name_the_file(tmp_path):
    p = tmp_path / "broken-images"
    p.write_bytes(GOOD[:-3])
    with pytest.raises(DigitocrError, match="broken-images"):
        read_idx(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DigitocrError, match="not found"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DigitocrError, match="directory"):
        read_idx(tmp_path)


def test_truncated_and_corrupt_gzip(tmp_path):
    z = gzip.compress(GOOD)
    (tmp_path / "t.gz").write_bytes(z[: len(z) // 2])
    with pytest.raises(DigitocrError, match="truncated gzip"):
        read_idx(tmp_path / "t.gz")
    (tmp_path / "c.gz").write_bytes(z[:10] + b"\xff" * 20)
    with pytest.raises(DigitocrError, match="gzip"):
        read_idx(tmp_path / "c.gz")
