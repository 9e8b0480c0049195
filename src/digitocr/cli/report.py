"""digitocr report: one self-contained HTML page telling a run's story."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_compute_args, add_data_args
from .plot import add_figure_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a run's HTML report (config, curve, accuracy, figures)")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the run folder `digitocr train` wrote")
    p.add_argument("--out", type=Path, default=None, help="HTML file to write (default: RUN_DIR/report.html)")
    p.add_argument("--model", default=None,
                   help="bundled model name, run folder or checkpoint file (default: RUN_DIR)")
    add_figure_args(p)
    add_data_args(p)
    add_compute_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..fsutil import atomic_write_text
    from ..registry import load_model
    from ..report import REPORT_NAME, build_report, read_run
    from ..runtime import resolve_device, set_threads, use_bf16
    from .common import data_args_from_run, load_data_for

    record = read_run(args.run_dir)
    set_threads(args.threads)
    device = resolve_device(args.device or "cpu")
    model_spec = args.model if args.model is not None else args.run_dir
    loaded = load_model(model_spec, device)
    test = load_data_for(data_args_from_run(args, record.config)).test
    page = build_report(record, loaded.model, test, str(model_spec), loaded.iterations,
                        use_bf16(args.precision or "auto", device), args.image_index, args.input_channel)
    out = args.out if args.out is not None else args.run_dir / REPORT_NAME
    atomic_write_text(out, page)
    print(out)
    return 0
