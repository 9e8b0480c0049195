"""digitocr plot: the notebook's figures (test images, errors, confusion, filters, activations) as PNGs."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_compute_args, add_data_args, add_model_arg, non_negative_int

KINDS = ("samples", "errors", "confusion", "filters", "activations")
ALL = "all"
DEFAULT_OUT = Path("figures")


def add_figure_args(p: argparse.ArgumentParser) -> None:
    """The choices inside the filter and activation figures (shared with `digitocr report`)."""
    p.add_argument("--image-index", type=non_negative_int, default=0,
                   help="test image whose conv-layer outputs are drawn (default: 0)")
    p.add_argument("--input-channel", type=non_negative_int, default=0,
                   help="input channel of conv layer 2 whose filters are drawn (default: 0)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw the notebook's figures as PNG files")
    p.add_argument("kind", choices=(*KINDS, ALL),
                   help="samples: first nine test images; errors: first nine misclassified; confusion: "
                        "confusion matrix; filters: conv weights; activations: conv outputs; all: every one")
    add_model_arg(p, "seed")
    add_figure_args(p)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"folder for the PNG files (default: {DEFAULT_OUT})")
    add_data_args(p)
    add_compute_args(p)
    p.set_defaults(handler=run)


def check_figure_args(model, test, image_index: int, input_channel: int) -> None:
    """Out-of-range --image-index / --input-channel are errors before any work is done."""
    from ..plots import check_input_channel, conv_weights, pick_image, shown_network

    check_input_channel(conv_weights(shown_network(model)[0])[1], input_channel)
    pick_image(test, image_index)


def first_predictions(model, test, bf16: bool):
    """Predicted classes of the first nine test images: all the samples figure shows."""
    from ..data.tensors import images_to_tensor
    from ..inference import predict_logits
    from ..plots import NUM_SHOWN

    x = images_to_tensor(test.images[:NUM_SHOWN], next(model.parameters()).device)  # (9, 1, 28, 28)
    return predict_logits(model, x, bf16).argmax(1).cpu().numpy()


def figures_for(kind: str, model, test, result, args: argparse.Namespace, bf16: bool) -> dict:
    """File stem -> Figure for one kind; `result` is the test evaluation (None if not needed)."""
    from .. import plots

    if kind == "samples":
        pred = result.pred if result is not None else first_predictions(model, test, bf16)
        return {"samples": plots.samples_figure(test, pred)}
    if kind == "errors":
        return {"errors": plots.errors_figure(test, result.pred)}
    if kind == "confusion":
        return {"confusion": plots.confusion_figure(result.confusion)}
    if kind == "filters":
        return plots.filter_figures(model, args.input_channel)
    return plots.activation_figures(model, test, args.image_index)


def run(args: argparse.Namespace) -> int:
    from ..inference import evaluate
    from ..metrics import format_confusion
    from ..plots import save_figure
    from ..registry import load_model
    from ..runtime import resolve_device, set_threads, use_bf16
    from .common import data_args_for_model, load_data_for
    from .evaluate import SPLIT_TITLES

    set_threads(args.threads)
    device = resolve_device(args.device or "cpu")
    bf16 = use_bf16(args.precision or "auto", device)
    model = load_model(args.model, device).model
    test = load_data_for(data_args_for_model(args, args.model)).test
    check_figure_args(model, test, args.image_index, args.input_channel)
    kinds = KINDS if args.kind == ALL else (args.kind,)
    # errors and confusion need the whole split's predictions; samples reuses them when they exist
    result = evaluate(model, test, bf16) if {"errors", "confusion"} & set(kinds) else None
    for kind in kinds:
        for name, fig in figures_for(kind, model, test, result, args, bf16).items():
            print(save_figure(fig, args.out / f"{name}.png"))
        if kind == "confusion":
            print(f"Accuracy on {SPLIT_TITLES['test']}: {result.accuracy:.1%} "
                  f"({result.correct} / {result.total})")
            print("Confusion Matrix:")
            print(format_confusion(result.confusion))
    return 0
