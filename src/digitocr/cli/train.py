"""digitocr train: the notebook's optimize(), cumulative per run folder."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .common import add_compute_args, add_data_args, non_negative_int, positive_float, positive_int

DEFAULT_RUNS = Path("runs")
DEFAULT_PRESET = "seed"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..config import PRESETS

    p = sub.add_parser("train", help="train a network; continues the run folder's training if it exists")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help=f"training recipe (default: {DEFAULT_PRESET}, or the run folder's when it continues one)")
    p.add_argument("--run", "--run-dir", dest="run", default=None,
                   help="run folder; under torchrun spell it --run-dir (default: runs/PRESET-seedN)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--iterations", type=non_negative_int, default=None,
                        help="optimizer steps to add in this invocation (default: the preset's; a continued run "
                        "goes on to the end of its schedule, or adds the length it was first given)")
    p.add_argument("--until", type=non_negative_int, default=None,
                   help="train until the run has this many iterations in all; idempotent (default: off)")
    length.add_argument("--epochs", type=positive_float, default=None, help="passes over the training set, "
                        "instead of --iterations (default: the preset's)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="(default: the preset's)")
    p.add_argument("--lr", type=positive_float, default=None, help="(peak) learning rate (default: the preset's)")
    p.add_argument("--seed", type=non_negative_int, default=None, help="random seed (default: 0)")
    p.add_argument("--checkpoint-every", type=non_negative_int, default=None,
                   help="iterations between checkpoints; 0 = only at the end (default: 1000)")
    p.add_argument("--eval-every", type=non_negative_int, default=None,
                   help="iterations between validation evaluations; 0 = at the end (default: 0)")
    p.add_argument("--ensemble", type=positive_int, default=None, metavar="K",
                   help="train K members (seeds SEED .. SEED+K-1) into RUN/member-i and pack "
                   "RUN/ensemble.safetensors, which averages their probabilities (default: one model)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    add_data_args(p)
    add_compute_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..config import preset
    from ..data.datasets import resolve_dataset_name
    from ..distributed import launched_as_main
    from ..errors import DigitocrError
    from ..train import CHECKPOINT, fit, resume_config, run_progress
    from . import EXIT_INTERRUPTED

    say = print if launched_as_main() else (lambda *_: None)  # under torchrun, rank 0 alone prints

    overrides = dict(iterations=args.iterations, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     seed=args.seed, checkpoint_every=args.checkpoint_every, eval_every=args.eval_every,
                     precision=args.precision, threads=args.threads, device=args.device,
                     validation_size=args.validation_size,
                     # stored absolute: the run continues, and reports, from any working directory
                     data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None)
    explicit_preset, args.preset = args.preset, args.preset or DEFAULT_PRESET
    if args.ensemble is not None:
        return run_ensemble(args, overrides, explicit_preset)
    run_dir = Path(args.run) if args.run else DEFAULT_RUNS / f"{args.preset}-seed{args.seed or 0}"
    if args.until is not None and (args.iterations is not None or args.epochs is not None):
        raise DigitocrError("--until sets how long to train; drop --iterations/--epochs")
    progress = run_progress(run_dir)  # (done, schedule's end), or None for a new run
    if args.until is not None:
        overrides["iterations"] = max(0, args.until - (progress[0] if progress else 0))
        args.iterations = overrides["iterations"]
    if progress is not None:
        # a different recipe or dataset named on the command line is refused, not silently ignored
        recipe = dict(preset=explicit_preset,
                      dataset=resolve_dataset_name(args.dataset, args.data_dir) if args.dataset else None)
        cfg = resume_config(run_dir, {**overrides, **recipe})
        if cfg.schedule != "constant" and args.iterations is None and args.epochs is None:
            # a scheduled run continues to the end of its schedule, not one more schedule's length past it
            done, end = progress
            if done >= end:
                say(f"{run_dir} has finished its {cfg.schedule} schedule ({done} iterations); "
                    f"--iterations N trains it further at its final learning rate")
                return 0
            cfg = dataclasses.replace(cfg, iterations=end - done, epochs=None)
        say(f"Continuing {run_dir} (preset {cfg.preset})")
    else:
        cfg = preset(args.preset, **overrides,
                     dataset=resolve_dataset_name(args.dataset, args.data_dir) or "custom")
        if args.iterations is not None and args.epochs is None:
            cfg.epochs = None  # an explicit --iterations wins over the preset's epochs
    result = fit(cfg, run_dir, progress=not args.no_progress)
    ckpt = run_dir / CHECKPOINT
    if result.interrupted:
        say(f"Interrupted after iteration {result.iterations} of {result.target}; checkpoint saved to {ckpt}. "
            f"To finish: {finish_command(args, run_dir, result.target)}")
        return EXIT_INTERRUPTED
    say(f"Saved {ckpt} ({result.iterations} iterations)")
    return 0


def finish_command(args: argparse.Namespace, run_dir: Path, target: int) -> str:
    """The command that finishes an interrupted one. Not "the same command": its --iterations N would add N
    more to the steps already done. The settings a resume may change (device, threads...) are repeated, since
    config.json keeps the first invocation's."""
    import os
    import shlex

    torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1  # there --run is spelled --run-dir
    words = ["digitocr", "train", "--run-dir" if torchrun else "--run", str(run_dir), "--until", str(target)]
    for flag in ("device", "threads", "precision", "checkpoint_every", "eval_every"):
        if getattr(args, flag, None) is not None:
            words += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return shlex.join(words)


def members_defaults(args: argparse.Namespace, overrides: dict, explicit_preset: str | None,
                     first_member: Path) -> str | None:
    """Continuing an ensemble: what the command leaves unsaid (preset, seed, validation size, data) is its
    first member's, set in `args`/`overrides`; returns the members' dataset when the command names none.
    A new ensemble: nothing changes, None."""
    from ..train import CONFIG, saved_config

    if not (first_member / CONFIG).is_file():
        return None
    saved = saved_config(first_member)
    args.preset = explicit_preset or saved.preset
    for name in ("seed", "validation_size", "data_dir"):
        if overrides[name] is None:
            overrides[name] = getattr(saved, name)
    return saved.dataset if args.dataset is None and args.data_dir is None else None


def run_ensemble(args: argparse.Namespace, overrides: dict, explicit_preset: str | None) -> int:
    from ..config import preset
    from ..data.datasets import resolve_dataset_name
    from ..ensemble import ENSEMBLE_FILE, MEMBER_DIR, train_ensemble
    from . import EXIT_INTERRUPTED

    if args.until is not None:
        from ..errors import DigitocrError

        raise DigitocrError("--until does not apply to --ensemble: each member trains its preset's schedule")
    k = args.ensemble
    run_dir = Path(args.run) if args.run else DEFAULT_RUNS / f"{args.preset}-ensemble{k}-seed{args.seed or 0}"
    dataset = members_defaults(args, overrides, explicit_preset, run_dir / MEMBER_DIR.format(0)) \
        or resolve_dataset_name(args.dataset, args.data_dir) or "custom"
    cfg = preset(args.preset, **overrides, dataset=dataset)
    if args.iterations is not None and args.epochs is None:
        cfg.epochs = None
    result = train_ensemble(cfg, run_dir, k, overrides, progress=not args.no_progress)
    if result.interrupted:
        print(f"Interrupted; the members' checkpoints are saved in {run_dir}. Run the same command to continue.")
        return EXIT_INTERRUPTED
    if len(result.validation) > 1:
        members = ", ".join(f"{a:.2%}" for a in result.validation[:-1])
        print(f"Validation accuracy: members {members}; ensemble {result.validation[-1]:.2%}")
    elif result.validation:  # K = 1: the one member is the model
        print(f"Validation accuracy: {result.validation[0]:.2%}")
    count = f"{k} members" if k > 1 else "1 member"
    print(f"Saved {run_dir / ENSEMBLE_FILE} ({count}; {result.seconds:.0f} s of training in this run)")
    return 0
