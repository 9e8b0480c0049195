import hashlib

import numpy as np
import pytest

from conftest import synthetic_split, write_dataset_dir
from digitocr.constants import DATASETS, SPLIT_FILES
from digitocr.data import datasets
from digitocr.data.datasets import ensure_files, load_dataset, resolve_dataset_name, split_validation
from digitocr.data.idx import encode_idx, write_idx
from digitocr.errors import DigitocrError


def test_validation_is_the_first_training_images():
    train = synthetic_split(50, 0)
    rest, val = split_validation(train, 10)
    np.testing.assert_array_equal(val.images, train.images[:10])
    np.testing.assert_array_equal(rest.labels, train.labels[10:])
    with pytest.raises(DigitocrError, match="validation-size"):
        split_validation(train, 50)


def test_custom_idx_dataset_from_data_dir(synthetic_dir):
    assert resolve_dataset_name(None, str(synthetic_dir)) is None  # unknown checksums -> custom
    ds = load_dataset(None, synthetic_dir, validation_size=100)
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (500, 100, 200)
    assert ds.train.images.dtype == np.uint8 and ds.train.images.shape[1:] == (28, 28)


def test_image_label_count_mismatch_is_reported(tmp_path):
    write_dataset_dir(tmp_path, synthetic_split(20, 0), synthetic_split(10, 1), compress=True)
    write_idx(tmp_path / (SPLIT_FILES["test_labels"] + ".gz"), np.zeros(9, np.uint8), compress=True)
    with pytest.raises(DigitocrError, match=r"10 images but .* 9 labels"):
        load_dataset(None, tmp_path, validation_size=5)


def _fake_spec(monkeypatch, files: dict[str, bytes]):
    """Register a dataset 'fake' whose checksums are those of `files`."""
    spec = {"sha256": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()},
            "mirrors": [], "npm_package": None, "local_dirs": []}
    monkeypatch.setitem(DATASETS, "fake", spec)


def _fake_files():
    tr, te = synthetic_split(20, 0), synthetic_split(10, 1)
    return {SPLIT_FILES["train_images"]: encode_idx(tr.images), SPLIT_FILES["train_labels"]:
            encode_idx(tr.labels.astype(np.uint8)), SPLIT_FILES["test_images"]: encode_idx(te.images),
            SPLIT_FILES["test_labels"]: encode_idx(te.labels.astype(np.uint8))}


def test_fetch_from_local_dir_verifies_and_caches(tmp_path, monkeypatch):
    files = _fake_files()
    _fake_spec(monkeypatch, files)
    src = tmp_path / "src"
    write_dataset_dir(src, synthetic_split(20, 0), synthetic_split(10, 1), compress=True)  # .gz accepted
    target = ensure_files("fake", src, cache_dir=tmp_path / "cache", progress=False)
    for name, data in files.items():
        assert (target / name).read_bytes() == data  # cached uncompressed
    ds = load_dataset("fake", src, validation_size=5, cache_dir=tmp_path / "cache")
    assert len(ds.train) == 15


def test_verify_hashes_the_cache_again_and_refetches_a_changed_file(tmp_path, monkeypatch):
    files = _fake_files()
    _fake_spec(monkeypatch, files)
    src = tmp_path / "src"
    write_dataset_dir(src, synthetic_split(20, 0), synthetic_split(10, 1))
    target = ensure_files("fake", src, cache_dir=tmp_path / "cache", progress=False)
    name = SPLIT_FILES["test_labels"]
    flipped = bytearray(files[name])
    flipped[-1] ^= 1
    (target / name).write_bytes(bytes(flipped))  # bit rot, or a hand edit
    ensure_files("fake", src, cache_dir=tmp_path / "cache", progress=False)
    assert (target / name).read_bytes() == bytes(flipped)  # runs trust the cache: hashing it each time costs
    ensure_files("fake", src, cache_dir=tmp_path / "cache", progress=False, verify=True)
    assert (target / name).read_bytes() == files[name]  # fetch hashes it, and fetches it again
    (target / name).write_bytes(bytes(flipped))
    with pytest.raises(DigitocrError, match="could not fetch"):  # no source now: the changed file is gone too
        ensure_files("fake", tmp_path / "nowhere", cache_dir=tmp_path / "cache", progress=False, verify=True)
    assert not (target / name).exists()


def test_checksum_mismatch_is_not_cached_and_no_source_says_where(tmp_path, monkeypatch):
    _fake_spec(monkeypatch, _fake_files())
    src = tmp_path / "src"
    write_dataset_dir(src, synthetic_split(20, 7), synthetic_split(10, 8))  # different bytes
    with pytest.raises(DigitocrError) as err:
        ensure_files("fake", src, cache_dir=tmp_path / "cache", progress=False)
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path / "cache" / "fake") in msg and "\n" not in msg
    assert not (tmp_path / "cache" / "fake" / "train-images-idx3-ubyte").exists()


def test_mirrors_are_tried_in_order(tmp_path, monkeypatch):
    import gzip

    files = _fake_files()
    _fake_spec(monkeypatch, files)
    DATASETS["fake"]["mirrors"] = ["http://bad.invalid/", "http://good.invalid/"]
    tried = []

    def fake_download(url, progress):
        tried.append(url)
        if url.startswith("http://bad"):
            raise OSError("unreachable")
        return gzip.compress(files[url.rsplit("/", 1)[1].removesuffix(".gz")])

    monkeypatch.setattr(datasets, "_download", fake_download)
    ensure_files("fake", cache_dir=tmp_path, progress=False)
    assert tried[:2] == ["http://bad.invalid/train-images-idx3-ubyte.gz",
                         "http://good.invalid/train-images-idx3-ubyte.gz"]


def test_unknown_dataset_and_split():
    with pytest.raises(DigitocrError, match="unknown dataset"):
        ensure_files("cifar")


def test_real_mnist_matches_the_notebook_split(mnist):
    assert (len(mnist.train), len(mnist.validation), len(mnist.test)) == (55_000, 5_000, 10_000)
    assert mnist.test.labels[:9].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5]  # the notebook's first nine
