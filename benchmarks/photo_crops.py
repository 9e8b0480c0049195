"""Reader-made crops of MNIST training digits, generated in parallel chunks and cached on disk.

`train_reader_model.make_crop_set` renders lines of handwritten digits as photos and frames their parts
exactly as the Reader does; that costs ~20 ms a line on one core. Training scripts that need many lines
ask `crop_set` here: the lines are cut into a fixed number of chunks (each its own seed, so the data do
not depend on how many workers made them), made by `workers` processes, and kept in the digitocr data
cache keyed by everything that shapes them, so a second training run on the same crops starts at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from train_reader_model import CropSet, Knobs, Labelling, make_crop_set

log = logging.getLogger("photo_crops")

CHUNKS = 8  # a set's lines are made in this many chunks, whatever the number of workers
CHUNK_STREAM = 7_777  # chunk c of a set with seed s uses seed s * CHUNK_STREAM + c
CACHE_SUBDIR = "reader-crops"
FORMAT = 2  # bump when the generator changes in a way its knobs do not show (2: thick digits' cores)

_IMAGES: tuple[np.ndarray, np.ndarray] | None = None  # (images, labels) for forked workers


def chunk_sizes(lines: int, chunks: int = CHUNKS) -> list[int]:
    """`lines` spread over `chunks` as evenly as possible (earlier chunks take the remainder)."""
    base, extra = divmod(lines, chunks)
    return [base + (c < extra) for c in range(chunks)]


def _make_chunk(args: tuple[int, int]) -> CropSet:
    lines, seed = args
    import cv2

    cv2.setNumThreads(1)  # one process per core: cv2's own threads would only fight over the cores
    assert _IMAGES is not None
    return make_crop_set(_IMAGES[0], _IMAGES[1], lines, seed)


def cache_key(split: str, lines: int, seed: int) -> str:
    """A name that changes with anything that shapes the crops."""
    recipe = {"format": FORMAT, "split": split, "lines": lines, "seed": seed, "chunks": CHUNKS,
              "knobs": asdict(Knobs()), "labelling": asdict(Labelling())}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return f"{split}-l{lines}-s{seed}-{digest}"


def cached(name: str, make: Callable[[], CropSet], cache_dir: Path | None) -> CropSet:
    """`make()`, or what it made before under `name` in `cache_dir` (None: no cache)."""
    path = None if cache_dir is None else Path(cache_dir) / f"{name}.npz"
    if path is not None and path.exists():
        with np.load(path) as f:
            log.info("crops: %s (cached)", path)
            return CropSet(f["context"], f["clean"], f["labels"])
    out = make()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, context=out.context, clean=out.clean, labels=out.labels)
        tmp.replace(path)
    return out


def crop_set(images: np.ndarray, labels: np.ndarray, lines: int, seed: int, split: str = "train",
             workers: int = 2, cache_dir: Path | None = None) -> CropSet:
    """The crops of `lines` random lines of `images` (made in CHUNKS chunks by `workers` processes),
    read from `cache_dir` if made before, else made and stored there. Deterministic in (lines, seed)."""
    return cached(cache_key(split, lines, seed), lambda: _make(images, labels, lines, seed, split, workers),
                  cache_dir)


def _make(images: np.ndarray, labels: np.ndarray, lines: int, seed: int, split: str, workers: int) -> CropSet:
    global _IMAGES
    t0 = time.perf_counter()
    jobs = [(n, seed * CHUNK_STREAM + c) for c, n in enumerate(chunk_sizes(lines)) if n]
    _IMAGES = (images, labels)
    try:
        if workers > 1:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                parts = pool.map(_make_chunk, jobs, chunksize=1)
        else:
            parts = [_make_chunk(job) for job in jobs]
    finally:
        _IMAGES = None
    out = CropSet.join(parts)
    log.info("crops: %d from %d %s lines in %.0f s (%d workers)", len(out), lines, split,
             time.perf_counter() - t0, workers)
    return out
