"""Arguments several subcommands share."""

from __future__ import annotations

import argparse
import math
from typing import get_args

from ..config import Precision
from ..constants import DEFAULT_VALIDATION_SIZE, IMAGE_SIZE
from ..errors import DigitocrError

MAX_PORT = 65_535


def _number_type(kind: type, name: str, what: str, ok, rule: str):
    """An argparse type: `kind` parsed from text (else "expected `what`"), then checked by `ok` (else `rule`)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{rule}, got {value}")
        return value

    parse.__name__ = name  # argparse names the type in its own messages
    return parse


positive_int = _number_type(int, "positive_int", "a whole number", lambda v: v >= 1, "must be at least 1")
non_negative_int = _number_type(int, "non_negative_int", "a whole number", lambda v: v >= 0, "must be 0 or more")
positive_float = _number_type(float, "positive_float", "a number", lambda v: math.isfinite(v) and v > 0,
                              "must be a positive, finite number")
port_number = _number_type(int, "port_number", "a whole number", lambda v: 1 <= v <= MAX_PORT,
                           f"must be a TCP port from 1 to {MAX_PORT}")


def probability(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def add_reader_args(p: argparse.ArgumentParser) -> None:
    """How digits are read, the same for `read` and `serve`: the networks, their backend, the confidence below
    which a digit reads '?', and the largest image decoded."""
    from ..constants import DEFAULT_CLASSIFIER, DEFAULT_MIN_CONFIDENCE, DEFAULT_SECOND, DEFAULT_VERIFIER
    from ..imageio import DEFAULT_MAX_PIXELS

    p.add_argument("--model", default=DEFAULT_CLASSIFIER,
                   help=f"bundled model name, run folder or checkpoint file (default: {DEFAULT_CLASSIFIER}; "
                        "`best` reads MNIST as given a little better)")
    p.add_argument("--verifier", default=DEFAULT_VERIFIER, type=none_or_spec,
                   help="network that knows what is not one digit, to cut touching digits: bundled name, run "
                        f"folder, checkpoint, or 'none' to use the model's confidence (default: {DEFAULT_VERIFIER})")
    p.add_argument("--second", default=DEFAULT_SECOND, type=none_or_spec,
                   help="network asked about digits the model and verifier leave unsure: bundled name, run folder, "
                        f"checkpoint, 'none', or 'auto': `best` when --model is {DEFAULT_CLASSIFIER} "
                        f"(default: {DEFAULT_SECOND})")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch", help="(default: torch)")
    p.add_argument("--precision", choices=get_args(Precision), default="auto",
                   help="the torch networks' arithmetic: auto uses bf16 where it is faster than fp32, on AMX CPUs "
                        "(default: auto)")
    p.add_argument("--min-confidence", type=probability, default=DEFAULT_MIN_CONFIDENCE,
                   help="digits less certain than this read as '?' and are marked low_confidence "
                        f"(default: {DEFAULT_MIN_CONFIDENCE})")
    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger images before decoding them (default: {DEFAULT_MAX_PIXELS:,})")


def none_or_spec(text: str) -> str | None:
    """An argparse type for a helper network: 'none' switches it off (None), anything else is a model spec."""
    return None if text == "none" else text


def add_data_args(p: argparse.ArgumentParser, validation: bool = True) -> None:
    """--dataset and --data-dir, and --validation-size where a command uses the split (fetch does not)."""
    p.add_argument("--dataset", default=None,
                   help="mnist or fashion-mnist (default: mnist, or a custom IDX set when only --data-dir is given; "
                   "for a run folder's network, the data it trained on)")
    p.add_argument("--data-dir", default=None,
                   help="folder with the four IDX files (raw or .gz), tried before any download (default: none)")
    if validation:
        p.add_argument("--validation-size", type=non_negative_int, default=None,
                       help=f"first N training images held out for validation (default: {DEFAULT_VALIDATION_SIZE})")


def add_compute_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=get_args(Precision), default=None,
                   help="auto uses bf16 where it is faster than fp32: AMX CPUs, GPUs with bf16 (default: auto)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cpu)")


def add_model_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--model", default=default,
                   help=f"bundled model name, run folder or checkpoint file (default: {default})")


def data_args_from_run(args: argparse.Namespace, config: dict) -> argparse.Namespace:
    """Without --dataset/--data-dir, a run's network is measured on the data the run trained on (and its
    validation split, which must fit inside its training set)."""
    if args.dataset is None and args.data_dir is None:
        args.dataset, args.data_dir = config.get("dataset"), config.get("data_dir")
        if args.validation_size is None:
            args.validation_size = config.get("validation_size")
    return args


def data_args_for_model(args: argparse.Namespace, spec: str) -> argparse.Namespace:
    """data_args_from_run for a --model that is a run folder, a checkpoint in one, or an ensemble trained by
    `train --ensemble` (its members' folder). A loose checkpoint file names its dataset in its metadata (a
    custom folder it cannot name: that takes --data-dir); bundled names keep the defaults."""
    from pathlib import Path

    from ..checkpoint import read_metadata
    from ..constants import DATASETS
    from ..ensemble import MEMBER_DIR
    from ..train import CONFIG, saved_config

    path = Path(spec)
    if not path.exists():
        return args  # a bundled name
    folder = path if path.is_dir() else path.parent
    for candidate in (folder, folder / MEMBER_DIR.format(0)):
        if (candidate / CONFIG).is_file():
            try:
                saved = saved_config(candidate)
            except DigitocrError:
                return args  # not a training config (damaged, or some other file's): the defaults
            return data_args_from_run(args, saved.to_dict())
    dataset = read_metadata(path).get("dataset") if path.is_file() else None
    if dataset in DATASETS and args.dataset is None and args.data_dir is None:
        args.dataset = dataset
    return args


def load_data_for(args: argparse.Namespace):
    """The dataset the data arguments name (quietly, if --json asked for clean stdout)."""
    from ..data.datasets import load_dataset, resolve_dataset_name

    name = resolve_dataset_name(args.dataset, args.data_dir)
    vsize = DEFAULT_VALIDATION_SIZE if args.validation_size is None else args.validation_size
    data = load_dataset(name, args.data_dir, vsize, progress=not getattr(args, "json", False))
    if data.test.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        h, w = data.test.images.shape[1:]
        raise DigitocrError(f"{data.name}: images are {h}x{w}, the networks need {IMAGE_SIZE}x{IMAGE_SIZE}")
    return data
