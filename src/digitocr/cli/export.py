"""digitocr export: write a model as ONNX and check it against PyTorch on the MNIST test set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_data_args, add_model_arg

FORMATS = ("onnx",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX, checked against PyTorch")
    add_model_arg(p, "best")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="(default: onnx)")
    p.add_argument("--out", default=None, help="output file (default: MODEL_NAME.onnx in the current folder)")
    p.add_argument("--split", choices=("test", "validation"), default="test",
                   help="images the export is checked on (default: test)")
    p.add_argument("--images", default=None, help="an IDX images file to check on instead of a split (default: none)")
    p.add_argument("--labels", default=None, help="the IDX labels file that goes with --images (default: none)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the comparison with PyTorch (default: compare)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: text)")
    add_data_args(p)
    p.set_defaults(handler=run)


def default_out(checkpoint: Path) -> Path:
    stem = checkpoint.parent.name if checkpoint.stem == "checkpoint" else checkpoint.stem
    return Path(f"{stem}.onnx")


def run(args: argparse.Namespace) -> int:
    from ..errors import DigitocrError
    from ..export import ONNX_OPSET, check_equivalence, export_onnx, onnx_session
    from ..registry import load_model
    from .evaluate import load_eval_split

    loaded = load_model(args.model)
    out = Path(args.out) if args.out else default_out(loaded.path)
    # the check's data is found first: a bad --images/--dataset must not replace a good export and then fail
    title, split = (None, None) if args.no_check else load_eval_split(args)
    export_onnx(loaded.model, out)
    report = {"model": str(loaded.path), "out": str(out), "format": args.format, "opset": ONNX_OPSET,
              "bytes": out.stat().st_size}
    if not args.json:
        print(f"Wrote {out} ({report['bytes']:,} bytes, ONNX opset {ONNX_OPSET}, dynamic batch axis)")
    if args.no_check:
        if args.json:
            print(json.dumps(report))
        return 0
    eq = check_equivalence(loaded.model, onnx_session(out), split.images)
    report.update(checked_on=title, images=eq.total, max_abs_logit_diff=eq.max_abs_diff,
                  prediction_mismatches=eq.mismatches, identical_predictions=eq.identical,
                  torch_images_per_s=round(eq.torch_images_per_s),
                  onnx_images_per_s=round(eq.onnx_images_per_s))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"Checked on {title} ({eq.total:,} images) against PyTorch fp32:")
        print(f"  max abs logit difference: {eq.max_abs_diff:.3g}")
        print(f"  predictions identical: {'yes' if eq.identical else 'NO'} "
              f"({eq.mismatches} of {eq.total:,} differ)")
        print(f"  speed: torch {eq.torch_images_per_s:,.0f} images/s, "
              f"onnxruntime {eq.onnx_images_per_s:,.0f} images/s")
    if not eq.identical:
        raise DigitocrError(f"{out}: the export predicts another class than PyTorch on {eq.mismatches} "
                            f"of {eq.total:,} images (max abs logit difference {eq.max_abs_diff:.3g})")
    return 0
