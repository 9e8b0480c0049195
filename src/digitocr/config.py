"""One typed config per run: the model's shape and the training recipe, with named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from .constants import DEFAULT_VALIDATION_SIZE
from .errors import DigitocrError

Arch = Literal["seed", "best", "simple"]
Precision = Literal["auto", "bf16", "fp32"]
Schedule = Literal["constant", "onecycle"]
Init = Literal["notebook", "default"]
Optimizer = Literal["adam", "adamw"]
MAX_SEED = 2**32 - 1  # new runs' seeds: mixed into 64-bit generator seeds (times ~10^6), these stay far from
# overflow (which begins near 9e12); older run folders with larger seeds still load


@dataclass(frozen=True)
class ModelConfig:
    """What a checkpoint needs to rebuild its network."""

    arch: Arch = "seed"
    # seed network (the notebook's): conv 5x5x16 -> pool -> conv 5x5x36 -> pool -> fc 128 -> fc 10
    filter_size1: int = 5
    num_filters1: int = 16
    filter_size2: int = 5
    num_filters2: int = 36
    fc_size: int = 128
    # "notebook": truncated-normal weights and constant biases, as tf.truncated_normal / tf.constant;
    # "default": PyTorch's own (Kaiming-uniform), which trains faster in few epochs
    init: Init = "notebook"
    init_std: float = 0.05  # truncated-normal weights, as tf.truncated_normal(stddev=0.05)
    init_bias: float = 0.05  # constant biases, as tf.constant(0.05)
    # best network: widths of its three conv stages, and dropout
    widths: tuple[int, int, int] = (32, 64, 128)
    dropout: float = 0.4
    # simple network (An et al. 2020): unpadded k x k convs, no pooling; one entry of `channels` per conv
    kernel: int = 5
    channels: tuple[int, ...] = (32, 64, 96, 128, 160)
    num_classes: int = 10  # 10 digits; the OCR reader's network adds an 11th, "not one digit"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("widths", "channels"):  # JSON gives lists
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


@dataclass(frozen=True)
class AugmentConfig:
    """On-the-fly augmentation strengths (augment.py): each image gets its own random affine + elastic warp."""

    rotation_deg: float = 10.0
    scale: float = 0.10  # zoom in [1 - scale, 1 + scale]
    shift: float = 0.10  # translation as a fraction of the image side
    elastic: float = 0.03  # peak displacement of the elastic field, in normalised [-1, 1] units


def _same_kind(value: Any, default: Any) -> bool:
    """Whether a value read from JSON fits a field whose default is `default` (None and factories: any)."""
    if value is None or default is None or isinstance(default, type(MISSING)):
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


@dataclass
class TrainConfig:
    """A full training recipe; `config.json` in a run folder is this, resolved."""

    preset: str = "seed"
    model: ModelConfig = field(default_factory=ModelConfig)
    iterations: int = 10_000  # optimizer steps for this invocation (cumulative across resumes)
    epochs: float | None = None  # if set, overrides iterations: epochs * ceil(train / batch)
    batch_size: int = 64
    optimizer: Optimizer = "adam"
    lr: float = 1e-4
    schedule: Schedule = "constant"
    warmup_frac: float = 0.25  # onecycle: fraction of steps spent warming up
    final_lr_frac: float = 1e-3  # onecycle: last lr as a fraction of the peak
    schedule_iterations: int | None = None  # horizon of the schedule; set from the first run
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: bool = False  # random affine + elastic, batched on tensors
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    precision: Precision = "auto"
    seed: int = 0
    dataset: str | None = "mnist"
    data_dir: str | None = None
    validation_size: int = DEFAULT_VALIDATION_SIZE
    checkpoint_every: int = 1_000  # iterations between checkpoints (also at the end and on Ctrl-C)
    eval_every: int = 0  # iterations between validation evaluations (0: only at the end)
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        if not isinstance(d, dict):
            raise DigitocrError(f"a training config is a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise DigitocrError(f"unknown config keys: {', '.join(sorted(unknown))}")
        for f in fields(cls):
            if f.name in d and not _same_kind(d[f.name], f.default):
                raise DigitocrError(f"config {f.name}={d[f.name]!r}: expected {type(f.default).__name__}")
        kw = dict(d)
        kw["model"] = ModelConfig.from_dict(kw.get("model", {}))
        kw["augmentation"] = AugmentConfig(**kw.get("augmentation", {}))
        cfg = cls(**kw)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Values a training run cannot use (a hand-edited config.json, say) are one-line errors."""
        choices = {"optimizer": get_args(Optimizer), "schedule": get_args(Schedule), "precision": get_args(Precision)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise DigitocrError(f"config {name}={getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        ranges = {"batch_size": self.batch_size >= 1, "lr": self.lr > 0, "iterations": self.iterations >= 0,
                  "epochs": self.epochs is None or self.epochs > 0, "weight_decay": self.weight_decay >= 0,
                  "label_smoothing": 0 <= self.label_smoothing < 1, "validation_size": self.validation_size >= 0,
                  "warmup_frac": 0 <= self.warmup_frac <= 1, "final_lr_frac": 0 < self.final_lr_frac <= 1,
                  "checkpoint_every": self.checkpoint_every >= 0, "eval_every": self.eval_every >= 0,
                  "seed": self.seed >= 0}
        for name, ok in ranges.items():
            if not ok:
                raise DigitocrError(f"config {name}={getattr(self, name)!r} is out of range")


# The notebook's recipe; `fast` and `best` are digitocr's own (see BENCHMARKS.md for how they were chosen).
PRESETS: dict[str, dict[str, Any]] = {
    "seed": {},
    "fast": dict(  # the seed network to 99% in 1.5 epochs; chosen on validation: benchmarks/results/fast_best.md
        epochs=1.5, batch_size=128, lr=1e-2, schedule="onecycle", label_smoothing=0.1,
    ),
    "best": dict(
        model=ModelConfig(arch="best"), epochs=20.0, batch_size=128, optimizer="adamw", lr=3e-3,
        schedule="onecycle", weight_decay=5e-4, label_smoothing=0.1, augment=True,
    ),
}
# An et al. 2020's three "simple" networks (3x3, 5x5, 7x7 kernels, no pooling; channels as there, halved),
# trained with `best`'s recipe: members of diverse ensembles (BENCHMARKS.md, Ensembles).
SIMPLE_CHANNELS = {3: (16, 24, 32, 40, 48, 56, 64, 72, 80, 88), 5: (16, 32, 48, 64, 80), 7: (24, 48, 72, 96)}
PRESETS.update({f"simple{k}": PRESETS["best"] | {"model": ModelConfig(arch="simple", kernel=k, channels=c)}
                for k, c in SIMPLE_CHANNELS.items()})


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A preset's TrainConfig with `overrides` (None values are ignored) applied on top."""
    if name not in PRESETS:
        raise DigitocrError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    cfg = TrainConfig(preset=name, **PRESETS[name])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    cfg.check()
    if cfg.seed > MAX_SEED:
        raise DigitocrError(f"--seed {cfg.seed}: choose a seed from 0 to {MAX_SEED}")
    return cfg
