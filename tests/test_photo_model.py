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
    # (context vs clean: tests/test_preprocess.py, test_context_shows_only_the_ink_around_a_part and the cores)
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


def test_hard_parts_are_the_searchs_mistakes_labelled_by_ink(digits):
    """Mining is deterministic; it keeps parts only from misread lines, with labels 0..10."""
    from hard_parts import mine

    a, misread = mine(*digits, lines=12, seed=3, classifier="photo", verifier="reader")
    b, again = mine(*digits, lines=12, seed=3, classifier="photo", verifier="reader")
    assert misread == again and np.array_equal(a.context, b.context) and np.array_equal(a.labels, b.labels)
    assert (len(a) > 0) == (misread > 0)
    assert a.context.shape[1:] == (28, 28) and a.clean.shape == a.context.shape
    assert set(np.unique(a.labels)) <= set(range(CLASSES))


def test_a_line_read_right_yields_no_hard_parts(digits):
    from digitocr.ocr import Reader
    from digitocr.preprocess import stroke_width
    from hard_parts import mine_line
    from train_reader_model import Knobs, Labelling, render_line

    images, labels = digits
    rng = np.random.default_rng(0)
    ink, owner = render_line(rng, images[:1], Knobs(touch_chance=0.0, rotation_deg=(0.0, 0.0)))
    parts, ys, wrong = mine_line(Reader(), ink, owner, labels[:1], Labelling(),
                                 stroke_width((ink >= 0.5).astype(np.uint8)))
    assert not wrong and parts == [] and ys == []


def test_verifier_training_mixes_in_hard_crops(mnist):
    """--hard FILE --hard-share S: that share of every batch is drawn from the hard crops, and training runs."""
    import torch

    from train_photo_model import Recipe, batch_split, fit, start_model

    r = Recipe(head="reader", batch_size=40, mnist_share=0.1, hard_share=0.25, epochs=1.0, evals=1)
    assert batch_split(r, True) == (26, 4, 10) and batch_split(r, False) == (36, 4, 0)
    rng = np.random.default_rng(0)
    crops = (rng.random((52, 28, 28)) * 255).astype(np.uint8)
    hard = (crops[:8], np.full(8, NOT_ONE))
    seen = []
    model, history = fit(start_model("reader", 0.1), crops, rng.integers(0, CLASSES, 52), mnist.train, r,
                         lambda m: seen.append(1) or {"select": 0.0}, progress=False, hard=hard)
    assert len(history) == 1 == len(seen) and history[0]["step"] == 2  # 52 crops / 26 per batch
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, CLASSES)
