"""Property-based tests: random and mutated bytes end only in the documented errors."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitocr.data.idx import encode_idx, parse_idx
from digitocr.errors import DigitocrError

IDX_EXAMPLES = 600  # inputs tried per property (reported in BENCHMARKS.md)
VALID = encode_idx(np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5))


def _parse_or_documented_error(data: bytes) -> None:
    try:
        arr = parse_idx(data, "fuzz")
    except DigitocrError as e:
        assert "\n" not in str(e) and str(e).startswith("fuzz:")
        return
    # whatever parses must agree exactly with its header
    assert arr.size * arr.dtype.itemsize == len(data) - 4 - 4 * arr.ndim


@settings(max_examples=IDX_EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=256))
def test_idx_random_bytes(data):
    _parse_or_documented_error(data)


@settings(max_examples=IDX_EXAMPLES, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(VALID)))
def test_idx_mutated_valid_file(flips, cut):
    data = bytearray(VALID)
    for pos, value in flips:
        data[pos] = value
    _parse_or_documented_error(bytes(data[:cut]) if cut < 8 else bytes(data))
