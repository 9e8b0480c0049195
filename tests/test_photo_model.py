"""The photo-crop tools behind the bundled `photo` classifier and `reader` verifier (benchmarks/)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from photo_crops import CHUNKS, cache_key, chunk_sizes, crop_set
from train_reader_model import CLASSES, NOT_ONE, make_crop_set, make_crops

LINES = 3  # a few short lines: enough crops of both kinds, a second or two


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.train.images[:200], mnist.train.labels[:200]


def test_chunks_cover_the_lines():
    assert sum(chunk_sizes(21)) == 21 and len(chunk_sizes(21)) == CHUNKS
    assert max(chunk_sizes(21)) - min(chunk_sizes(21)) <= 1
    assert cache_key("train", 10, 0) != cache_key("train", 10, 1) != cache_key("validation", 10, 0)


def test_crop_set_views_agree_with_make_crops(digits):
    """Both views of the same parts, with make_crops' labels: the refactor changed no training data."""
    s = make_crop_set(*digits, LINES, seed=5)
    x, y = make_crops(*digits, LINES, seed=5)
    assert np.array_equal(s.context, x) and np.array_equal(s.labels, y)
    assert s.clean.shape == s.context.shape and s.clean.dtype == np.uint8
    assert (s.context >= s.clean).all()  # context only adds the dimmed ink around a part
    assert set(np.unique(s.labels)) <= set(range(CLASSES)) and NOT_ONE in s.labels


def test_crop_set_is_cached_and_worker_independent(digits, tmp_path):
    one = crop_set(*digits, LINES, seed=2, workers=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again = crop_set(*digits, LINES, seed=2, workers=2, cache_dir=None)  # made afresh, by two processes
    cached = crop_set(*digits, LINES, seed=2, workers=1, cache_dir=tmp_path)
    for other in (again, cached):
        assert np.array_equal(one.context, other.context) and np.array_equal(one.labels, other.labels)


@pytest.mark.parametrize(("head", "outputs"), [("digits", 10), ("reader", 11)])
def test_start_model_begins_as_best(head, outputs):
    """Fine-tuning starts from `best`: the same digit logits, and the reader head's 11th output unchosen."""
    import torch

    from digitocr.registry import load_model
    from train_photo_model import start_model

    model = start_model(head, dropout=0.1).eval()
    best = load_model("best").model.eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        got, want = model(x), best(x)
    assert got.shape == (4, outputs)
    assert torch.allclose(got[:, :10], want, atol=1e-4)
    if outputs == 11:
        assert (got[:, 10] <= got[:, :10].max(1).values).all()
