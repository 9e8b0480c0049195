"""fit(): the training loop, its schedule, checkpoints and exact resume. No argument parsing here."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import distributed
from .augment import augment_batch
from .checkpoint import model_from_tensors, optimizer_state, read_checkpoint, save_checkpoint
from .config import TrainConfig
from .constants import IMAGE_SIZE, PRINT_EVERY
from .data.datasets import Dataset, load_dataset
from .data.tensors import BatchOrder, images_to_tensor
from .errors import DigitocrError
from .fsutil import atomic_write_text, remove_stale_temp_files
from .inference import evaluate
from .model import build_model
from .runtime import autocast, environment, set_threads, use_bf16

log = logging.getLogger(__name__)

CONFIG, METRICS, CHECKPOINT, ENVIRONMENT = "config.json", "metrics.jsonl", "checkpoint.safetensors", "environment.json"
# Settings a resumed run may change; everything else is the recipe and stays as the run began.
RESUMABLE_OVERRIDES = {"iterations", "epochs", "precision", "threads", "checkpoint_every", "eval_every", "device"}
_AUG_STREAM = 7_919  # separates the augmentation RNG stream from the batch-order stream
ONECYCLE_START_DIV = 25.0  # onecycle starts at peak / 25, as torch's OneCycleLR does


def lr_at(step: int, cfg: TrainConfig, horizon: int) -> float:
    """Learning rate at optimizer step `step` (0-based) of a schedule lasting `horizon` steps."""
    if cfg.schedule == "constant":
        return cfg.lr
    warmup = max(1, int(cfg.warmup_frac * horizon))
    if step < warmup:  # linear ramp from peak/25 up to the peak
        start = cfg.lr / ONECYCLE_START_DIV
        return start + (cfg.lr - start) * step / warmup
    progress = min(1.0, (step - warmup) / max(1, horizon - warmup))  # cosine anneal to the final lr
    final = cfg.lr * cfg.final_lr_frac
    return final + (cfg.lr - final) * 0.5 * (1 + math.cos(math.pi * progress))


FUSED_DEVICES = ("cpu", "cuda")  # where torch has a fused Adam/AdamW kernel


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(model.parameters())
    # fused: one kernel updates every parameter, instead of a dozen small ops per tensor (~20% of a
    # seed-net step at batch 256 on a CPU)
    fused = all(p.device.type in FUSED_DEVICES for p in params)
    kind = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


def _match_param_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give restored moment tensors their parameter's memory layout (channels_last for conv weights).

    Checkpoints store tensors contiguous; the fused kernels walk a parameter and its moments as flat
    buffers, so a layout mismatch would pair the wrong elements and break exact resume."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for k, v in state.items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def iterations_for(cfg: TrainConfig, n_train: int) -> int:
    if cfg.epochs is None:
        return cfg.iterations
    return math.ceil(cfg.epochs * n_train / cfg.batch_size)


class EpochBatches:
    """BatchOrder's batches as slices of each epoch's shuffled copy of the data: one gather per epoch
    instead of one per step. A batch that straddles two epochs is gathered by index, as BatchOrder says."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, order: BatchOrder):
        self.x, self.y, self.order = x, y, order
        self._epoch, self._xs, self._ys = -1, x, y

    def __call__(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.order.batch_size
        epoch, offset = divmod(iteration * b, self.order.n)
        if offset + b > self.order.n:
            idx = self.order.indices(iteration)
            return self.x[idx], self.y[idx]
        if epoch != self._epoch:
            perm = self.order.permutation(epoch)
            self._xs = self.x[perm].contiguous(memory_format=torch.channels_last)  # (N, 1, 28, 28)
            self._ys, self._epoch = self.y[perm], epoch
        return self._xs[offset:offset + b], self._ys[offset:offset + b]


@dataclass
class FitResult:
    model: nn.Module
    iterations: int  # total optimizer steps the model has had, across all resumes
    seconds: float  # wall time of this invocation's training loop, less its validation runs and hook calls
    interrupted: bool
    run_dir: Path | None
    target: int = 0  # the iteration count this invocation was to reach (`--until target` finishes it)


class _StopFlag:
    """Turns Ctrl-C into a flag checked between steps, so a checkpoint never holds a half-applied update."""

    def __init__(self) -> None:
        self.stop = False
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C is not ours to catch
            self._old = None
        return self

    def _handle(self, *_: Any) -> None:
        self.stop = True

    def __exit__(self, *_: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _append_metrics(run_dir: Path | None, record: dict) -> None:
    if run_dir is not None:
        with open(run_dir / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")


def _invocation_record(cfg: TrainConfig, start: int, n_steps: int, bf16: bool, device: torch.device,
                       world_size: int) -> dict:
    """How one invocation ran: config.json holds the recipe as first trained, and these settings may change
    on each resume (RESUMABLE_OVERRIDES), so each invocation's are kept in metrics.jsonl."""
    return {"iteration": start, "invocation": {
        "iterations": n_steps, "precision": cfg.precision, "bf16": bf16, "device": str(device),
        "threads": torch.get_num_threads(), "world_size": world_size, "eval_every": cfg.eval_every,
        "checkpoint_every": cfg.checkpoint_every, "torch": torch.__version__}}


def _check_finite(model: nn.Module, iterations: int, last_saved: int) -> None:
    """A diverged run must not overwrite a good checkpoint with weights no command could load."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        kept = f"the checkpoint at iteration {last_saved} is kept" if last_saved else "nothing was saved"
        raise DigitocrError(f"training diverged: the weights hold NaN or infinite values by iteration "
                            f"{iterations} (a lower --lr may help); {kept}")


def _trim_metrics(run_dir: Path, iterations: int) -> None:
    """Drop metric lines newer than the checkpoint (left by a run killed after its last save), and lines
    torn by such a kill."""
    path = run_dir / METRICS
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        keep = [ln for ln in lines if _metric_iteration(ln) <= iterations]
        if len(keep) != len(lines):
            atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def _metric_iteration(line: str) -> float:
    """The iteration of a metrics line; infinity (never kept) for a torn or foreign one."""
    try:
        record = json.loads(line)
        return float(record.get("iteration", 0)) if isinstance(record, dict) else math.inf
    except (json.JSONDecodeError, TypeError, ValueError):
        return math.inf


def run_progress(run_dir: str | Path) -> tuple[int, int] | None:
    """(iterations done, iterations its schedule lasts) of a run folder, or None before its first checkpoint."""
    ckpt = Path(run_dir) / CHECKPOINT
    if not ckpt.exists():
        return None
    done = int(read_checkpoint(ckpt)[1]["iterations"])
    horizon = saved_config(Path(run_dir)).schedule_iterations
    return done, done if horizon is None else int(horizon)


def saved_config(run_dir: Path) -> TrainConfig:
    """The config a run folder was trained with; a missing or damaged config.json is a one-line error."""
    path = run_dir / CONFIG
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise DigitocrError(f"run {run_dir} has a checkpoint but no {CONFIG}; start a new --run") from None
    except (OSError, ValueError, TypeError, AttributeError, KeyError, DigitocrError) as e:
        raise DigitocrError(f"{path}: not a readable training config ({e})") from None


def _same_setting(name: str, old: Any, new: Any) -> bool:
    """Whether two values of a config field mean the same: data folders by the folder they name (runs before
    session 7 stored a relative --data-dir as typed; later ones store it absolute)."""
    if name == "data_dir" and old is not None and new is not None:
        return Path(old).resolve() == Path(new).resolve()
    return old == new


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The run's saved config with the allowed overrides applied; changing the recipe is an error."""
    saved = saved_config(run_dir)
    changes = {}
    for k, v in overrides.items():
        if v is None or _same_setting(k, getattr(saved, k), v):
            continue
        if k not in RESUMABLE_OVERRIDES:
            raise DigitocrError(f"run {run_dir} was trained with {k}={getattr(saved, k)!r}; "
                                f"start a new --run to use {k}={v!r}")
        changes[k] = v
    if overrides.get("iterations") is not None and overrides.get("epochs") is None:
        # an explicit --iterations wins over the preset's epochs, even when it equals the saved count
        changes.update(iterations=overrides["iterations"], epochs=None)
    return dataclasses.replace(saved, **changes)


def check_same_recipe(run_dir: Path, cfg: TrainConfig) -> None:
    """A run folder continued with `cfg` must have been trained with the same recipe (all but the settings
    that RESUMABLE_OVERRIDES may change); anything else is a one-line error naming the difference."""
    saved = saved_config(run_dir)
    for f in dataclasses.fields(cfg):
        old, new = getattr(saved, f.name), getattr(cfg, f.name)
        # schedule_iterations is not a choice: the first invocation sets it from the recipe's length
        if f.name not in RESUMABLE_OVERRIDES | {"schedule_iterations"} and not _same_setting(f.name, old, new):
            raise DigitocrError(f"run {run_dir} was trained with {f.name}={old!r}; start a new --run to use "
                                f"{f.name}={new!r}")


def fit(cfg: TrainConfig, run_dir: str | Path | None = None, data: Dataset | None = None,
        progress: bool = True, quiet: bool = False,
        hook: Callable[[int, nn.Module, float], bool] | None = None) -> FitResult:
    """Train (or continue training) per `cfg`; with `run_dir`, checkpoint there and resume from it.

    `hook(iterations_done, model, train_seconds)` runs after every step, off the clock (benchmarks evaluate
    in it); if it returns True, training ends there as if the run had been that long.
    """
    cfg.check()
    run_dir = Path(run_dir) if run_dir is not None else None
    ctx = distributed.setup(cfg.device, cfg.batch_size)  # one process, or this rank of a torchrun job
    device = ctx.device
    set_threads(cfg.threads)
    bf16 = use_bf16(cfg.precision, device)
    quiet, progress = quiet or not ctx.is_main, progress and ctx.is_main
    say = (lambda msg: None) if quiet else tqdm.write
    writer = run_dir if ctx.is_main else None  # only rank 0 writes the run folder

    # ---- data: the whole training split as one tensor on the device
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir, cfg.validation_size, progress=progress)
    if data.train.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DigitocrError(f"training images are {data.train.images.shape[1:]}, the networks need 28x28")
    train_x = images_to_tensor(data.train.images, device)  # (N, 1, 28, 28)
    if bf16 and not cfg.augment:  # kept in the compute dtype: autocast would convert every batch anyway
        train_x = train_x.to(torch.bfloat16)
    train_y = torch.from_numpy(data.train.labels).to(device)  # (N,)
    if cfg.batch_size > len(train_y):
        raise DigitocrError(f"--batch-size {cfg.batch_size} is larger than the training split "
                            f"({len(train_y)} images)")
    n_steps = iterations_for(cfg, len(train_y))

    # ---- model and optimizer: fresh, or restored from the run's checkpoint
    ckpt = run_dir / CHECKPOINT if run_dir else None
    if writer is not None:
        for name in (CHECKPOINT, CONFIG, ENVIRONMENT, METRICS):  # left by a kill mid-write
            remove_stale_temp_files(writer / name)
    if ckpt is not None and ckpt.exists():
        tensors, meta = read_checkpoint(ckpt)
        model = model_from_tensors(tensors, meta, str(ckpt)).to(device)
        start = int(meta["iterations"])
        if writer is not None:
            _trim_metrics(writer, start)
        if "rng.torch" in tensors:
            torch.set_rng_state(tensors["rng.torch"])
        opt_state = optimizer_state(tensors, meta)
    else:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model).to(device)
        start, opt_state = 0, None
        if cfg.schedule_iterations is None:
            cfg = dataclasses.replace(cfg, schedule_iterations=n_steps)
        if writer is not None:
            writer.mkdir(parents=True, exist_ok=True)
            (writer / METRICS).unlink(missing_ok=True)  # lines of an attempt killed before its first checkpoint
            atomic_write_text(writer / CONFIG, json.dumps(cfg.to_dict(), indent=2) + "\n")
    if writer is not None:
        env = environment() | {"world_size": ctx.world_size}
        atomic_write_text(writer / ENVIRONMENT, json.dumps(env, indent=2) + "\n")
    model = model.to(memory_format=torch.channels_last)
    net = distributed.wrap(model, ctx)  # DDP averages gradients across ranks; `model` stays the plain module
    optimizer = make_optimizer(model, cfg)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
        _match_param_layouts(optimizer)
    horizon = cfg.schedule_iterations if cfg.schedule_iterations is not None else n_steps

    last_saved = start  # the iteration of the checkpoint on disk (0: none yet)

    def save(iterations: int) -> None:
        nonlocal last_saved
        _check_finite(model, iterations, last_saved)  # every rank: the replicas are equal
        if writer is None:
            return
        meta = {"model_config": dataclasses.asdict(cfg.model), "iterations": iterations,
                "preset": cfg.preset, "seed": cfg.seed, "dataset": data.name}
        save_checkpoint(writer / CHECKPOINT, model, meta, optimizer, torch.get_rng_state())
        last_saved = iterations

    # ---- the loop
    batches = EpochBatches(train_x, train_y, BatchOrder(len(train_y), cfg.batch_size, cfg.seed))
    end = start + n_steps
    target = end  # what this invocation set out to reach (a hook may end it sooner)
    if n_steps:
        _append_metrics(writer, _invocation_record(cfg, start, n_steps, bf16, device, ctx.world_size))
    model.train()
    t0 = time.perf_counter()
    paused = 0.0  # seconds spent in validation runs and hook calls: not training time
    it = start
    with _StopFlag() as flag, tqdm(total=n_steps, disable=not progress, unit="it", leave=False,
                                   dynamic_ncols=True) as bar:
        for it in range(start, end):
            x, y = (ctx.shard(t) for t in batches(it))  # this rank's slice of the global batch
            # (B / world, 1, 28, 28), (B / world,)
            if cfg.augment:
                aug_seed = (cfg.seed * _AUG_STREAM + it) * ctx.world_size + ctx.rank
                x = augment_batch(x, torch.Generator().manual_seed(aug_seed), cfg.augmentation)
            lr = lr_at(it, cfg, horizon)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(device, bf16):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            if it % PRINT_EVERY == 0:  # the notebook's progress line: accuracy on this batch after the step
                model.eval()
                with torch.no_grad(), autocast(device, bf16):
                    acc = (model(x).argmax(1) == y).float().mean().item()
                model.train()
                say(f"Optimization Iteration: {it + 1:>6}, Training Accuracy: {acc:>6.1%}")
                _append_metrics(writer, {"iteration": it + 1, "train_accuracy": acc, "loss": loss.item(),
                                          "lr": lr, "elapsed_s": round(time.perf_counter() - t0, 3)})
            done = it + 1
            if cfg.eval_every and done % cfg.eval_every == 0 and ctx.is_main and len(data.validation):
                val = evaluate(model, data.validation, bf16)
                paused += val.seconds + val.warmup_seconds
                _append_metrics(writer, {"iteration": done, "split": "validation", "accuracy": val.accuracy})
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < end:
                save(done)
            bar.update(1)
            if hook is not None:
                t_hook = time.perf_counter()
                stop_here = hook(done, model, t_hook - t0 - paused)
                paused += time.perf_counter() - t_hook
                if stop_here:
                    end = done
                    break
            if distributed.any_rank(flag.stop, ctx):  # every rank stops at the same step
                flag.stop = True
                break
        else:
            it = end  # loop completed: `it` now counts steps done
    seconds = time.perf_counter() - t0 - paused
    iterations = it + 1 if flag.stop else end
    distributed.check_replicas_agree(model, ctx)
    save(iterations)
    say(f"Time usage: {timedelta(seconds=round(seconds))}")
    if len(data.validation) and not flag.stop and ctx.is_main and iterations > start:  # a no-op run adds nothing
        val = evaluate(model, data.validation, bf16)
        _append_metrics(writer, {"iteration": iterations, "split": "validation", "accuracy": val.accuracy,
                                  "train_seconds": round(seconds, 3)})
    del net  # the DDP wrapper must die before the process group does (see distributed.teardown)
    distributed.teardown(ctx)
    return FitResult(model, iterations, seconds, flag.stop, run_dir, target)
