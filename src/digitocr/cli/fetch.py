"""digitocr fetch: download and verify a dataset into the cache."""

from __future__ import annotations

import argparse

from .common import add_data_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch", help="download and verify a dataset into the cache")
    add_data_args(p, validation=False)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.datasets import ensure_files, resolve_dataset_name
    from ..errors import DigitocrError

    name = resolve_dataset_name(args.dataset, args.data_dir)
    if name is None:
        if not Path(args.data_dir).is_dir():
            raise DigitocrError(f"--data-dir {args.data_dir}: not a directory")
        print(f"{args.data_dir}: a custom IDX dataset; nothing to fetch")
        return 0
    print(f"{name}: verified files in {ensure_files(name, args.data_dir, verify=True)}")  # cached ones hashed again
    return 0
