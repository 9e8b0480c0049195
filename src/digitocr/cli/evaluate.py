"""digitocr evaluate: accuracy of a model on a split (or any IDX pair), as the notebook prints it."""

from __future__ import annotations

import argparse
import json

from .common import add_compute_args, add_data_args, add_model_arg

SPLIT_TITLES = {"test": "Test-Set", "validation": "Validation-Set", "train": "Training-Set"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy and confusion matrix of a model")
    add_model_arg(p, "seed")
    p.add_argument("--split", choices=("test", "validation"), default="test", help="(default: test)")
    p.add_argument("--images", default=None,
                   help="an IDX images file to evaluate instead of a split (default: none, use --split)")
    p.add_argument("--labels", default=None, help="the IDX labels file that goes with --images (default: none)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: text)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="onnxruntime runs the model's ONNX export, made once and cached (default: torch)")
    add_data_args(p)
    add_compute_args(p)
    p.set_defaults(handler=run)


def load_eval_split(args: argparse.Namespace):
    """(title, Split) chosen by --images/--labels or --split."""
    from ..data.datasets import Split
    from ..data.idx import check_pair, read_idx
    from ..errors import DigitocrError
    from .common import data_args_for_model, load_data_for

    if (args.images is None) != (args.labels is None):
        raise DigitocrError("--images and --labels go together")
    if args.images is not None:
        images, labels = read_idx(args.images), read_idx(args.labels)
        check_pair(images, labels, args.images, args.labels)
        if not len(labels):
            raise DigitocrError(f"{args.images}: holds no images")
        if images.shape[1:] != (28, 28):
            raise DigitocrError(f"{args.images}: images are {images.shape[1]}x{images.shape[2]}, "
                                "expected 28x28")
        return "Images", Split(images.astype("uint8"), labels.astype("int64"))
    split = load_data_for(data_args_for_model(args, args.model)).split(args.split)
    if len(split.labels) == 0:
        raise DigitocrError(f"the {args.split} split is empty (--validation-size {args.validation_size})")
    return SPLIT_TITLES[args.split], split


def run(args: argparse.Namespace) -> int:
    from ..inference import evaluate
    from ..metrics import format_confusion
    from ..registry import load_model
    from ..runtime import resolve_device, set_threads, use_bf16

    set_threads(args.threads)
    device = resolve_device(args.device or "cpu")
    title, split = load_eval_split(args)
    if args.backend == "onnxruntime":  # --model may be a .onnx file, which torch cannot load
        from ..export import OnnxClassifier, evaluate_onnx

        onnx = OnnxClassifier.from_model(args.model, args.threads)
        model_path, iterations = onnx.path, None
        result = evaluate_onnx(onnx, split)
    else:
        loaded = load_model(args.model, device)
        model_path, iterations = str(loaded.path), loaded.iterations
        result = evaluate(loaded.model, split, use_bf16(args.precision or "auto", device))
    if args.json:
        split_name = args.split if args.images is None else args.images
        print(json.dumps({"model": model_path, "split": split_name,
                          "accuracy": result.accuracy, "correct": result.correct, "total": result.total,
                          "iterations": iterations, "images_per_s": round(result.images_per_s),
                          "confusion": result.confusion.tolist()}))
        return 0
    print(f"Accuracy on {title}: {result.accuracy:.1%} ({result.correct} / {result.total})")
    print(f"({result.total} images in {result.seconds:.3f} s: {result.images_per_s:,.0f} images/s)")
    print("Confusion Matrix:")
    print(format_confusion(result.confusion))
    return 0
