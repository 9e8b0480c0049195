"""Shared fixtures: small synthetic IDX datasets (no network), real MNIST (fetched once, cached), a tiny
trained run on random data (plots, report), the small OCR model (ocr, cli read), and `run_cli`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from digitocr.constants import IMAGE_SIZE, NUM_CLASSES, SPLIT_FILES
from digitocr.data.datasets import CUSTOM, Dataset, Split
from digitocr.data.idx import write_idx
from digitocr.errors import DigitocrError

SYNTH_TRAIN, SYNTH_TEST = 600, 200
N_TRAIN, N_VAL, N_TEST = 96, 16, 40  # the tiny run: random labels, so most test images are errors
TINY_ITERATIONS, TINY_BATCH = 20, 16
PIXEL_LEVELS = 256


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


def run_cli(argv: list[str]) -> int:
    """main()'s exit status, whether it returns it or argparse exits with it."""
    from digitocr.cli import main

    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


def random_split(rng: np.random.Generator, n: int) -> Split:
    """n random 28x28 uint8 images with random labels."""
    images = rng.integers(0, PIXEL_LEVELS, (n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    return Split(images, rng.integers(0, NUM_CLASSES, n).astype(np.int64))


class TinyRun(NamedTuple):
    data_dir: Path  # the four IDX files
    run_dir: Path  # the trained run
    dataset: Dataset


@pytest.fixture(scope="module")
def tiny_run_name() -> str:
    """The tiny run's folder name; a test module overrides it to test names that need escaping."""
    return "run"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_run_name) -> TinyRun:
    """A 20-iteration seed-net run on random IDX data; its config.json names that data folder."""
    from digitocr.config import preset
    from digitocr.train import fit

    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    ds = Dataset(CUSTOM, random_split(rng, N_TRAIN), random_split(rng, N_VAL), random_split(rng, N_TEST),
                 root)
    data_dir = root / "data"
    # the training file holds validation first: load_dataset takes the first N_VAL as validation
    write_idx(data_dir / SPLIT_FILES["train_images"], np.concatenate([ds.validation.images, ds.train.images]))
    write_idx(data_dir / SPLIT_FILES["train_labels"],
              np.concatenate([ds.validation.labels, ds.train.labels]).astype(np.uint8))
    write_idx(data_dir / SPLIT_FILES["test_images"], ds.test.images)
    write_idx(data_dir / SPLIT_FILES["test_labels"], ds.test.labels.astype(np.uint8))
    cfg = preset("seed", iterations=TINY_ITERATIONS, batch_size=TINY_BATCH, dataset=CUSTOM,
                 data_dir=str(data_dir), validation_size=N_VAL, threads=1, precision="fp32",
                 checkpoint_every=0)
    run_dir = root / tiny_run_name
    fit(cfg, run_dir, data=ds, progress=False, quiet=True)
    return TinyRun(data_dir, run_dir, ds)


@pytest.fixture(scope="module")
def model() -> Path:
    """The small OCR test model's run folder (ocr_fixtures.small_model_dir); skips without MNIST."""
    from ocr_fixtures import mnist_test, small_model_dir

    try:
        mnist_test()
    except Exception as e:
        pytest.skip(f"MNIST not available: {e}")
    return small_model_dir()


@pytest.fixture(scope="module")
def reader(model):
    """A Reader of the small OCR test model (with the bundled verifier)."""
    from digitocr.ocr import Reader

    return Reader(str(model))


@pytest.fixture(scope="module")
def digits(model):
    """(images, labels): MNIST test digits the small model reads surely (ocr_fixtures.easy_digits)."""
    from ocr_fixtures import easy_digits

    return easy_digits(model)
