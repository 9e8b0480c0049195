"""How well and how fast the Reader reads a generated OCR set (make_ocr_set.py), plus UCI optdigits.

    python benchmarks/ocr_accuracy.py --set /tmp/ocr_set2 --model photo --threads 1
    # the development seeds, summed, with a reader constant changed (no code edit) and the misreads kept:
    python benchmarks/ocr_accuracy.py --set /tmp/ocr_set1 /tmp/ocr_set3 --no-optdigits \
        --constant WHOLE_VOTE=1 --json /tmp/dev.json

Prints Markdown tables: per-digit accuracy (Levenshtein alignment against the truth), whole-text exact match
and images/s per category, and the accuracy of scikit-learn's 8x8 optdigits through the same framing path
(Reader.classify) next to a naive resize-and-pad baseline. Fails (exit 1) when a --check target is missed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch

# The targets: (category, measure, minimum).
TARGETS = [("isolated", "exact", 0.993), ("number", "exact", 0.97), ("touching", "exact", 0.90),
           ("photo8", "images_per_s", 50.0)]
OPTDIGITS_UPSAMPLE = 4  # 8x8 -> 32x32 (bicubic) before framing
OPTDIGITS_MAX = 16.0


def aligned_correct(truth: str, pred: str) -> int:
    """Digits of `truth` matched by `pred` in an optimal (Levenshtein) alignment."""
    t, p = truth.replace("\n", ""), pred.replace("\n", "").replace(" ", "")
    # dp[i][j] = (edits, -matches) for t[:i] vs p[:j]
    prev = [(j, 0) for j in range(len(p) + 1)]
    for i in range(1, len(t) + 1):
        cur = [(i, 0)]
        for j in range(1, len(p) + 1):
            same = t[i - 1] == p[j - 1]
            diag = (prev[j - 1][0] + (not same), prev[j - 1][1] - same)
            cur.append(min(diag, (prev[j][0] + 1, prev[j][1]), (cur[j - 1][0] + 1, cur[j - 1][1])))
        prev = cur
    return -prev[-1][1]


def read_set(reader, folder: Path | list[Path], failures: list | None = None, categories: list[str] | None = None,
             repeat: int = 1) -> dict[str, dict[str, float]]:
    """Per category: images, exact-match rate, digit accuracy, images/s (bytes in memory -> text). Several
    folders are read as one set; `failures` gets (folder, file, category, truth, text) per misread image."""
    stats: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for one in [folder] if isinstance(folder, Path) else folder:
        truth = json.loads((one / "truth.json").read_text())["images"]
        truth = [i for i in truth if categories is None or i["category"] in categories] * repeat
        for item in truth:
            data = (one / item["file"]).read_bytes()
            t0, c0 = time.perf_counter(), time.process_time()
            text = reader.read(data, name=item["file"]).text
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            if failures is not None and text != item["text"]:
                failures.append((str(one), item["file"], item["category"], item["text"], text))
            for key in (item["category"], "all"):
                s = stats[key]
                s["images"] += 1
                s["exact"] += text == item["text"]
                s["digits"] += len(item["text"].replace("\n", ""))
                s["correct_digits"] += aligned_correct(item["text"], text)
                s["seconds"] += seconds
                s["cpu_seconds"] += cpu
    return {k: {"images": int(s["images"]), "exact": s["exact"] / s["images"], "misses": int(s["images"] - s["exact"]),
                "digit_accuracy": s["correct_digits"] / s["digits"], "images_per_s": s["images"] / s["seconds"],
                "images_per_cpu_s": s["images"] / max(s["cpu_seconds"], 1e-9)}
            for k, s in stats.items()}


def set_constants(assignments: list[str]) -> dict[str, float]:
    """NAME=VALUE -> that reader constant (in digitocr.ocr, .cuts, .segment, .preprocess or .rules) set to VALUE, for
    measuring a change without editing the code; an unknown name is an error."""
    import digitocr.cuts
    import digitocr.ocr
    import digitocr.preprocess
    import digitocr.rules
    import digitocr.segment

    done = {}
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        owner = next((m for m in (digitocr.ocr, digitocr.cuts, digitocr.segment, digitocr.preprocess,
                                                 digitocr.rules)
                      if name.isupper() and hasattr(m, name)), None)
        if owner is None or not value:
            raise SystemExit(f"--constant {assignment}: no reader constant of that name (NAME=VALUE)")
        setattr(owner, name, type(getattr(owner, name))(float(value)))
        done[name] = getattr(owner, name)
    return done


def optdigits(reader) -> dict[str, float]:
    """Accuracy on the 1,797 UCI 8x8 digits: the reader's framing path vs a naive resize to 20x20 + pad."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = data.images.astype(np.float32) / OPTDIGITS_MAX  # (1797, 8, 8), ink bright
    side = 8 * OPTDIGITS_UPSAMPLE
    framed = np.stack([reader.classify(cv2.resize(im, (side, side), interpolation=cv2.INTER_CUBIC).clip(0, 1))
                       for im in images])
    naive = np.zeros((len(images), 28, 28), np.float32)
    naive[:, 4:24, 4:24] = [cv2.resize(im, (20, 20), interpolation=cv2.INTER_LINEAR) for im in images]
    naive_pred = reader.classifier(naive).argmax(1)
    return {"framed": float((framed.argmax(1) == data.target).mean()),
            "naive": float((naive_pred == data.target).mean()), "n": len(images)}


def markdown(results: dict, opt: dict | None, model: str) -> str:
    order = ["isolated", "number", "touching", "multiline", "long", "inverted", "photo8", "lined", "all"]
    rows = ["| category | images | exact match (misses) | digit accuracy | images/s | images/CPU-s |",
            "|---|---:|---:|---:|---:|---:|"]
    for k in [c for c in order if c in results]:
        r = results[k]
        rows.append(f"| {k} | {r['images']} | {r['exact']:.2%} ({r['misses']}) | {r['digit_accuracy']:.2%} | "
                    f"{r['images_per_s']:.0f} | {r['images_per_cpu_s']:.0f} |")
    text = f"Model: `{model}`\n\n" + "\n".join(rows)
    if opt:
        text += (f"\n\n| optdigits (UCI, 8x8, n={opt['n']}) | accuracy |\n|---|---:|\n"
                 f"| naive: resize to 20x20, pad to 28x28 | {opt['naive']:.2%} |\n"
                 f"| reader's framing (x{OPTDIGITS_UPSAMPLE} bicubic, then Reader.classify) | {opt['framed']:.2%} |")
    return text


def missed_targets(results: dict) -> list[str]:
    missed = []
    for category, measure, minimum in TARGETS:
        value = results.get(category, {}).get(measure)
        if value is not None and value < minimum:
            missed.append(f"{category} {measure} {value:.4g} < {minimum}")
    return missed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", required=True, nargs="+", type=Path,
                   help="folder(s) written by make_ocr_set.py; several are read as one set")
    p.add_argument("--model", default="photo", help="model spec (default: photo, the Reader's default)")
    p.add_argument("--verifier", default="reader",
                   help="network that scores cuts of touching digits: bundled name, run folder, checkpoint, "
                        "or 'none' for the classifier's confidence (default: reader)")
    p.add_argument("--second", default="auto",
                   help="network asked about unsure digits, 'none', or 'auto' as `digitocr read` (default: auto)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1; 0: torch's default)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch", help="(default: torch)")
    p.add_argument("--categories", default=None, help="only these categories, comma-separated (default: all)")
    p.add_argument("--repeat", type=int, default=1, help="read every image this many times, for timing (default: 1)")
    p.add_argument("--no-optdigits", action="store_true", help="skip the optdigits table (default: run it)")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed (default: off)")
    p.add_argument("--failures", action="store_true", help="list the misread images (default: off)")
    p.add_argument("--json", default=None,
                   help="also write the numbers and the misread images to this JSON file (default: none)")
    p.add_argument("--constant", action="append", default=[], metavar="NAME=VALUE",
                   help="set a reader constant (e.g. WHOLE_VOTE=1) before reading; repeatable (default: none)")
    args = p.parse_args()

    from digitocr.ocr import Reader

    constants = set_constants(args.constant)
    if args.threads:
        torch.set_num_threads(args.threads)
    reader = Reader(args.model, backend=args.backend, verifier=None if args.verifier == "none" else args.verifier,
                    second=None if args.second == "none" else args.second)
    reader.read(np.zeros((28, 28), np.uint8))  # warm-up: the first call pays for lazy initialisation
    failures: list = []
    categories = args.categories.split(",") if args.categories else None
    results = read_set(reader, args.set, failures, categories, args.repeat)
    opt = None if args.no_optdigits else optdigits(reader)
    print(markdown(results, opt, f"{args.model}` (verifier `{args.verifier}`, second `{args.second}`, "
                                 f"{args.backend}, {torch.get_num_threads()} threads)"))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "verifier": args.verifier, "second": args.second,
                                               "set": [str(f) for f in args.set], "constants": constants,
                                               "backend": args.backend, "threads": torch.get_num_threads(),
                                               "results": results, "optdigits": opt, "failures": failures},
                                              indent=1))
    if args.failures:
        for f in failures:
            print("misread:", *(repr(x) for x in f))
    missed = missed_targets(results)
    for m in missed:
        print(f"target missed: {m}")
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
