"""Arguments several subcommands share."""

from __future__ import annotations

import argparse

from ..constants import DEFAULT_VALIDATION_SIZE


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None,
                   help="mnist or fashion-mnist (default: mnist, or a custom IDX set when only --data-dir is given)")
    p.add_argument("--data-dir", default=None,
                   help="folder with the four IDX files (raw or .gz), tried before any download (default: none)")
    p.add_argument("--validation-size", type=non_negative_int, default=None,
                   help=f"first N training images held out for validation (default: {DEFAULT_VALIDATION_SIZE})")


def add_compute_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=None,
                   help="auto uses bf16 where the CPU/GPU runs it natively (default: auto)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cpu)")


def add_model_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--model", default=default,
                   help=f"bundled model name, run folder or checkpoint file (default: {default})")


def load_data_for(args: argparse.Namespace):
    """The dataset the data arguments name (quietly, if --json asked for clean stdout)."""
    from ..data.datasets import load_dataset, resolve_dataset_name

    name = resolve_dataset_name(args.dataset, args.data_dir)
    vsize = DEFAULT_VALIDATION_SIZE if args.validation_size is None else args.validation_size
    return load_dataset(name, args.data_dir, vsize, progress=not getattr(args, "json", False))
