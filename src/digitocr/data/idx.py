"""Read and write IDX files (the MNIST format) with numpy, checking every header against the file.

Layout: 2 zero bytes, 1 dtype code, 1 byte ndim, then ndim big-endian uint32 sizes, then the data
(big-endian for multi-byte types). Sizes in a header are never trusted: the data length they imply is
compared with the bytes actually present before anything is allocated.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..constants import NUM_CLASSES
from ..errors import DigitocrError
from ..fsutil import atomic_write_bytes

# IDX type codes -> big-endian numpy dtypes.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_NDIM = 4  # images are 3-D, labels 1-D; nothing in this family needs more
MAX_DECOMPRESSED_BYTES = 1 << 30  # a .gz that inflates past 1 GiB is not an MNIST-family file
_MAGIC_PREFIX_LEN = 4
_DIM_LEN = 4


def inflate(raw: bytes, name: str) -> bytes:
    """`raw` itself, or its gzip inflation (recognised by magic, not by name), capped in size."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out = d.decompress(raw, MAX_DECOMPRESSED_BYTES + 1)
    except zlib.error as e:
        raise DigitocrError(f"{name}: corrupt gzip data ({e})") from None
    if len(out) > MAX_DECOMPRESSED_BYTES:
        raise DigitocrError(f"{name}: gzip inflates past {MAX_DECOMPRESSED_BYTES} bytes; refusing")
    if not d.eof:
        raise DigitocrError(f"{name}: truncated gzip data")
    return out


def read_file_bytes(path: Path) -> bytes:
    """A file's bytes, inflated if it is gzip; unreadable files become one-line errors."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DigitocrError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DigitocrError(f"{path}: is a directory, expected an IDX file") from None
    except OSError as e:
        raise DigitocrError(f"{path}: cannot read ({e.strerror})") from None
    return inflate(raw, str(path))


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a native-endian array; `name` is used in error messages."""
    if len(data) < _MAGIC_PREFIX_LEN:
        raise DigitocrError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise DigitocrError(f"{name}: not an IDX file (bad magic number 0x{data[:4].hex()})")
    dtype = IDX_DTYPES[data[2]]
    ndim = data[3]
    if not 1 <= ndim <= MAX_NDIM:
        raise DigitocrError(f"{name}: IDX header claims {ndim} dimensions (expected 1 to {MAX_NDIM})")
    header_len = _MAGIC_PREFIX_LEN + _DIM_LEN * ndim
    if len(data) < header_len:
        raise DigitocrError(f"{name}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=_MAGIC_PREFIX_LEN))
    # Python ints: no overflow however large the claimed sizes.
    expected = dtype.itemsize
    for s in shape:
        expected *= s
    actual = len(data) - header_len
    if actual < expected:
        raise DigitocrError(
            f"{name}: truncated: header says {shape} ({expected} data bytes) but only {actual} are present"
        )
    if actual > expected:
        raise DigitocrError(
            f"{name}: header says {shape} ({expected} data bytes) but the file holds {actual}; dimensions disagree"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a numpy array."""
    path = Path(path)
    return parse_idx(read_file_bytes(path), str(path))


def encode_idx(arr: np.ndarray) -> bytes:
    """IDX bytes for an array (the inverse of parse_idx)."""
    codes = {v.newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    native = arr.dtype.newbyteorder("=")
    if native not in codes:
        raise DigitocrError(f"cannot write dtype {arr.dtype} as IDX")
    if not 1 <= arr.ndim <= MAX_NDIM:
        raise DigitocrError(f"cannot write a {arr.ndim}-D array as IDX")
    header = bytes([0, 0, codes[native], arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(arr).astype(IDX_DTYPES[codes[native]]).tobytes()


def write_idx(path: str | os.PathLike, arr: np.ndarray, compress: bool = False) -> None:
    """Write an array as IDX (gzip if `compress`), atomically."""
    path = Path(path)
    data = encode_idx(arr)
    if compress:
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)


def check_pair(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str) -> None:
    """Images must be (N, H, W) and labels (N,) class indices 0-9, with the same N."""
    if images.ndim != 3:
        raise DigitocrError(f"{images_name}: expected 3-D images (N, H, W), got shape {images.shape}")
    if labels.ndim != 1:
        raise DigitocrError(f"{labels_name}: expected 1-D labels (N,), got shape {labels.shape}")
    if len(images) != len(labels):
        raise DigitocrError(
            f"{images_name} holds {len(images)} images but {labels_name} holds {len(labels)} labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):  # the networks have NUM_CLASSES outputs
        bad = labels[(labels < 0) | (labels >= NUM_CLASSES)][0]
        raise DigitocrError(f"{labels_name}: labels must be classes 0 to {NUM_CLASSES - 1}, found {bad}")
