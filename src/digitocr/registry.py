"""`--model` names: a bundled pretrained model, a run folder, or a checkpoint file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import model_from_tensors, read_checkpoint
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
        if not (path / CHECKPOINT_NAME).exists():
            raise DigitocrError(f"{path}: run folder has no {CHECKPOINT_NAME} (train it first)")
        return path / CHECKPOINT_NAME
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


def load_model(spec: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild a network from a checkpoint alone, in eval mode on `device`."""
    path = resolve_model_path(spec)
    tensors, meta = read_checkpoint(path)
    model = model_from_tensors(tensors, meta, str(path)).to(device).to(memory_format=torch.channels_last)
    return LoadedModel(model.eval(), meta, path)
