"""`--model` names: a bundled pretrained model, a run folder (single or ensemble), or a checkpoint file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import model_from_tensors, read_checkpoint
from .ensemble import ENSEMBLE_FILE, ensemble_from_tensors, is_ensemble, widen_half
from .errors import DigitocrError

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
CHECKPOINT_NAME = "checkpoint.safetensors"


def bundled_models() -> dict[str, Path]:
    """Bundled model name -> weights file (each has a JSON model card beside it)."""
    return {p.stem: p for p in sorted(PRETRAINED_DIR.glob("*.safetensors"))}


def model_card(name: str) -> dict[str, Any]:
    path = PRETRAINED_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def resolve_model_path(spec: str | Path) -> Path:
    bundled = bundled_models()
    if isinstance(spec, str) and spec in bundled and not Path(spec).exists():
        return bundled[spec]
    path = Path(spec)
    if path.is_dir():
        for name in (CHECKPOINT_NAME, ENSEMBLE_FILE):  # a run folder, or an ensemble's (train --ensemble K)
            if (path / name).exists():
                return path / name
        raise DigitocrError(f"{path}: run folder has no {CHECKPOINT_NAME} (train it first)")
    if path.is_file():
        return path
    names = ", ".join(bundled) or "none bundled"
    raise DigitocrError(f"--model {spec}: no such run folder, checkpoint file or bundled model ({names})")


@dataclass
class LoadedModel:
    model: nn.Module
    meta: dict[str, Any]
    path: Path

    @property
    def iterations(self) -> int:
        return int(self.meta.get("iterations", 0))

    @property
    def members(self) -> int:
        """How many networks vote: 1, or an ensemble's size."""
        return len(self.meta["ensemble"]["members"]) if is_ensemble(self.meta) else 1


def load_model(spec: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild a network (or an ensemble of them) from a checkpoint alone, in eval mode on `device`."""
    path = resolve_model_path(spec)
    tensors, meta = read_checkpoint(path)
    tensors = widen_half(tensors)  # files packed with --half store float16
    build = ensemble_from_tensors if is_ensemble(meta) else model_from_tensors
    model = build(tensors, meta, str(path)).to(device).to(memory_format=torch.channels_last)
    return LoadedModel(model.eval(), meta, path)


def _training_command(meta: dict[str, Any]) -> str:
    members = meta["ensemble"]["members"] if is_ensemble(meta) else [meta]
    cmd = f"digitocr train --preset {meta.get('preset', 'seed')} --seed {members[0].get('seed', 0)}"
    return cmd + (f" --ensemble {len(members)}" if len(members) > 1 else "")


def build_card(path: str | Path, data: Any, command: str | None = None) -> dict[str, Any]:
    """A bundled model's card: where it came from and its test accuracy, evaluated once, in fp32."""
    from datetime import date

    from .constants import DATASETS
    from .inference import evaluate
    from .model import count_parameters
    from .runtime import cpu_name

    loaded = load_model(path)
    members = loaded.meta["ensemble"]["members"] if is_ensemble(loaded.meta) else [loaded.meta]
    test = evaluate(loaded.model, data.test, bf16=False)
    val = evaluate(loaded.model, data.validation, bf16=False) if len(data.validation) else None
    return {
        "name": Path(path).stem,
        "arch": members[0]["model_config"]["arch"],
        "members": len(members),
        "parameters": count_parameters(loaded.model),
        "training_command": command or _training_command(loaded.meta),
        "preset": loaded.meta.get("preset"),
        "seeds": [m.get("seed") for m in members],
        "iterations": [m.get("iterations") for m in members],
        "dataset": data.name,
        "data_sha256": DATASETS.get(data.name, {}).get("sha256"),
        "test_accuracy": test.accuracy,
        "test_correct": test.correct,
        "test_total": test.total,
        "validation_accuracy": val.accuracy if val else None,
        "evaluation": "fp32, whole split",
        "date": date.today().isoformat(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
    }
