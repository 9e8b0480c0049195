"""digitocr summary: the network's layers, output shapes and parameter counts."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..config import PRESETS

    p = sub.add_parser("summary", help="print the layer table of a preset's network")
    p.add_argument("--preset", choices=sorted(PRESETS), default="seed", help="(default: seed)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..config import preset
    from ..summary import layer_table

    print(layer_table(preset(args.preset).model))
    return 0
