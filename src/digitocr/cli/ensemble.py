"""digitocr ensemble: pack trained models into one weights-only file, an ensemble when several."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_data_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ensemble", help="pack run folders into one model file that averages their "
                       "probabilities (one run: its weights alone), optionally with a model card")
    p.add_argument("members", nargs="+", help="run folders or checkpoint files, one per member")
    p.add_argument("--out", required=True, help="the .safetensors file to write (usable as --model)")
    p.add_argument("--card", action="store_true", help="also write the model card OUT.json: test accuracy "
                   "(fp32), seeds, data checksums, date (default: off)")
    p.add_argument("--half", action="store_true", help="store the weights as float16: half the file size; "
                   "they compute in float32 (or bf16) after loading, and the card measures them so (default: off)")
    p.add_argument("--command", dest="card_command", default=None,  # args.command names the subcommand
                   help="the training command to record in the card (default: rebuilt from the runs)")
    p.add_argument("--note", default=None, help="a sentence for the card, e.g. how the run was chosen "
                   "(default: none)")
    add_data_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..ensemble import pack
    from ..errors import DigitocrError
    from ..fsutil import atomic_write_text
    from ..model import count_parameters
    from ..registry import build_card, resolve_model_path
    from .common import load_data_for

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise DigitocrError(f"--out {out}: the file name must end in .safetensors")
    paths = [resolve_model_path(m) for m in args.members]
    model = pack(paths, out, half=args.half)
    kind = f"an ensemble of {len(paths)}" if len(paths) > 1 else "one network"
    size = f"{out.stat().st_size / 2**20:.1f} MB{' (float16)' if args.half else ''}"
    print(f"Wrote {out}: {kind}, {count_parameters(model):,} parameters, {size}")
    if args.card:
        card = build_card(out, load_data_for(args), args.card_command)
        if args.note:
            card["note"] = args.note
        atomic_write_text(out.with_suffix(".json"), json.dumps(card, indent=2) + "\n")
        print(f"Wrote {out.with_suffix('.json')}: test accuracy {card['test_accuracy']:.2%} "
              f"({card['test_correct']} / {card['test_total']}, fp32)")
    return 0
