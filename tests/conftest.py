"""Shared fixtures: small synthetic IDX datasets (no network) and real MNIST (fetched once, cached)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from digitocr.constants import SPLIT_FILES
from digitocr.data.datasets import Dataset, Split
from digitocr.data.idx import write_idx
from digitocr.errors import DigitocrError

SYNTH_TRAIN, SYNTH_TEST = 600, 200


def synthetic_split(n: int, seed: int) -> Split:
    """Learnable fake digits: class c lights up a c-dependent block, plus noise. (N, 28, 28) uint8."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        r, col = divmod(int(c), 5)
        images[i, 4 + r * 10:12 + r * 10, 2 + col * 5:6 + col * 5] = 255
    return Split(images, labels.astype(np.int64))


def write_dataset_dir(path, train: Split, test: Split, compress: bool = False) -> None:
    ext = ".gz" if compress else ""
    write_idx(path / (SPLIT_FILES["train_images"] + ext), train.images, compress)
    write_idx(path / (SPLIT_FILES["train_labels"] + ext), train.labels.astype(np.uint8), compress)
    write_idx(path / (SPLIT_FILES["test_images"] + ext), test.images, compress)
    write_idx(path / (SPLIT_FILES["test_labels"] + ext), test.labels.astype(np.uint8), compress)


@pytest.fixture(scope="session")
def synthetic_dataset() -> Dataset:
    from pathlib import Path

    train = synthetic_split(SYNTH_TRAIN, 0)
    return Dataset("custom", Split(train.images[100:], train.labels[100:]),
                   Split(train.images[:100], train.labels[:100]), synthetic_split(SYNTH_TEST, 1), Path("."))


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """A folder of four IDX files in MNIST's layout holding the synthetic dataset."""
    d = tmp_path_factory.mktemp("synth")
    write_dataset_dir(d, synthetic_split(SYNTH_TRAIN, 0), synthetic_split(SYNTH_TEST, 1))
    return d


@pytest.fixture(scope="session")
def mnist() -> Dataset:
    """Real MNIST via the product's own fetcher. In CI it must load; elsewhere a failure skips."""
    from digitocr.data.datasets import load_dataset

    try:
        return load_dataset("mnist", progress=False)
    except DigitocrError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"MNIST not available: {e}")
