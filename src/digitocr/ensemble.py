"""Ensembles: K networks whose class probabilities are averaged, stored together in one checkpoint file.

File format: an ordinary digitocr checkpoint (checkpoint.py) whose weights are the Ensemble module's own
state_dict (`model.members.{i}.{name}`) and whose metadata carries `ensemble: {"members": [...]}`, one entry
per member with its `model_config`, so loading rebuilds every member from the file alone. `model_config`
at the top level is member 0's, so tools that only read that key still see a valid network config.
`pack(..., half=True)` stores the float tensors as float16 (half the size); loading widens them back.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from .checkpoint import META_KEY, MODEL, model_from_tensors, read_checkpoint, save_checkpoint
from .errors import DigitocrError
from .fsutil import atomic_write

ENSEMBLE_KEY = "ensemble"
ENSEMBLE_FILE = "ensemble.safetensors"  # what `train --ensemble K` writes into its run folder
MEMBER_DIR = "member-{}"  # member i's run folder inside an ensemble run folder
MEMBERS_PREFIX = f"{MODEL}members."


class Ensemble(nn.Module):
    """Averages its members' class probabilities.

    forward returns log(mean_k softmax(member_k(x))): a valid logit vector (its softmax is exactly the mean
    probability), so an ensemble goes wherever a single network's logits go (evaluate, classifier, export).
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise DigitocrError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = torch.stack([m(x).float().log_softmax(1) for m in self.members])  # (K, B, 10)
        return torch.logsumexp(log_probs, 0) - math.log(len(self.members))  # (B, 10)

    def __repr__(self) -> str:
        return f"Ensemble({len(self.members)} x {type(self.members[0]).__name__})"


def is_ensemble(meta: dict[str, Any]) -> bool:
    return ENSEMBLE_KEY in meta


def ensemble_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any], name: str) -> Ensemble:
    """Rebuild every member from its config and its slice of the weights (names, shapes, dtypes checked)."""
    members_meta = meta[ENSEMBLE_KEY].get("members") or []
    if not members_meta:
        raise DigitocrError(f"{name}: ensemble file lists no members")
    claimed = set()
    members = []
    for i, member_meta in enumerate(members_meta):
        prefix = f"{MEMBERS_PREFIX}{i}."
        own = {MODEL + k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        claimed.update(prefix + k[len(MODEL):] for k in own)
        members.append(model_from_tensors(own, member_meta, f"{name} (member {i})"))
    stray = sorted(k for k in tensors if k.startswith(MODEL) and k not in claimed)
    if stray:
        raise DigitocrError(f"{name}: ensemble file holds weights of no listed member ({stray[:3]})")
    return Ensemble(members)


def member_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """What an ensemble file keeps about each member: enough to rebuild it and to say where it came from."""
    keep = ("model_config", "iterations", "preset", "seed", "dataset", "stored_as")
    return {k: meta[k] for k in keep if k in meta}


def save_ensemble(path: str | Path, members: Sequence[tuple[nn.Module, dict[str, Any]]],
                  extra: dict[str, Any] | None = None) -> Ensemble:
    """Write members (network, its checkpoint metadata) as one weights-only ensemble file."""
    ensemble = Ensemble([m for m, _ in members])
    metas = [member_meta(meta) for _, meta in members]
    meta = {**metas[0], **(extra or {}), ENSEMBLE_KEY: {"members": metas, "combine": "mean_probability"}}
    save_checkpoint(path, ensemble, meta)
    return ensemble


def to_half(model: nn.Module) -> nn.Module:
    """Round float32 weights to float16 and back: what a file stored in float16 will load as. Halves the
    file; the networks still compute in float32 (or bf16 under autocast) after loading."""
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            if t.dtype == torch.float32:
                t.copy_(t.half().float())
    return model


def widen_half(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float16 tensors of a file stored with --half -> float32, the dtype every network computes in."""
    return {k: v.float() if v.dtype == torch.float16 else v for k, v in tensors.items()}


def pack(paths: Sequence[str | Path], out: str | Path, extra: dict[str, Any] | None = None,
         half: bool = False) -> nn.Module:
    """Checkpoint files -> one weights-only file at `out` (optimizer and RNG state dropped): a plain network
    for one path, an Ensemble for several. Returns the packed network (as it will load, if `half`)."""
    loaded = []
    for p in paths:
        tensors, meta = read_checkpoint(p)
        if is_ensemble(meta):
            raise DigitocrError(f"{p}: already an ensemble; list its members' run folders instead")
        loaded.append((model_from_tensors(tensors, meta, str(p)), meta))
    if half:
        loaded = [(to_half(m), {**meta, "stored_as": "float16"}) for m, meta in loaded]
    if len(loaded) == 1:
        model, meta = loaded[0]
        save_checkpoint(out, model, {**member_meta(meta), **(extra or {})})
    else:
        model = save_ensemble(out, loaded, extra)
    if half:  # rewrite the file with float16 tensors; the metadata stays as written
        tensors, meta = read_checkpoint(out)
        halved = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
        atomic_write(Path(out), lambda tmp: save_file(halved, tmp, metadata={META_KEY: json.dumps(meta)}))
    return model


def member_configs(cfg: Any, k: int) -> list[Any]:
    """The K members' TrainConfigs: the recipe with seeds seed, seed + 1, ..., seed + K - 1."""
    return [dataclasses.replace(cfg, seed=cfg.seed + i) for i in range(k)]


def train_ensemble(cfg: Any, run_dir: str | Path, k: int, overrides: dict[str, Any] | None = None,
                   data: Any = None, progress: bool = True, quiet: bool = False) -> EnsembleResult:
    """Train K members (seeds seed .. seed + K - 1) into RUN/member-i, then pack RUN/ensemble.safetensors.

    Resumable: a member whose run folder has finished its schedule is kept as is, an interrupted one is
    continued to the end of its schedule, a missing one is trained from scratch.
    """
    from .data.datasets import load_dataset
    from .inference import evaluate
    from .train import CHECKPOINT, RESUMABLE_OVERRIDES, check_same_recipe, fit, resume_config, run_progress

    say = (lambda msg: None) if quiet else print
    run_dir = Path(run_dir)
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir, cfg.validation_size, progress=progress)
    keep = RESUMABLE_OVERRIDES - {"iterations", "epochs"}  # a member's length is its own schedule's
    resumable = {name: v for name, v in (overrides or {}).items() if name in keep}
    seconds, paths = [], []
    for i, member_cfg in enumerate(member_configs(cfg, k)):
        member_dir = run_dir / MEMBER_DIR.format(i)
        paths.append(member_dir / CHECKPOINT)
        state = run_progress(member_dir)
        if state is not None:  # members of one ensemble share one recipe: another is refused, not mixed in
            check_same_recipe(member_dir, member_cfg)
        if state is not None and state[0] >= state[1]:
            say(f"Ensemble member {i + 1}/{k}: {member_dir} is trained ({state[0]} iterations); kept")
            continue
        if state is not None:
            member_cfg = resume_config(member_dir, {**resumable, "iterations": state[1] - state[0]})
        say(f"Ensemble member {i + 1}/{k}: seed {member_cfg.seed}, run folder {member_dir}")
        result = fit(member_cfg, member_dir, data, progress=progress, quiet=quiet)
        seconds.append(result.seconds)
        if result.interrupted:
            return EnsembleResult(None, run_dir, sum(seconds), True, [])
    model = pack(paths, run_dir / ENSEMBLE_FILE, {"preset": cfg.preset})
    val = []
    if len(data.validation):
        val = [evaluate(m, data.validation).accuracy for m in (*model.members, model)] \
            if isinstance(model, Ensemble) else [evaluate(model, data.validation).accuracy]
    return EnsembleResult(model, run_dir, sum(seconds), False, val)


@dataclasses.dataclass
class EnsembleResult:
    model: nn.Module | None
    run_dir: Path
    seconds: float  # training loop time of the members trained in this invocation
    interrupted: bool
    validation: list[float]  # each member's validation accuracy, then the ensemble's
