"""Checkpoints: safetensors tensors + JSON metadata in one file, written atomically; loading never unpickles.

A file holds `model.*` tensors (the weights), optionally `optimizer.*` and `rng.*` tensors (to resume
training exactly), and a JSON document under the header key `digitocr` (model config, iterations, ...).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .config import ModelConfig
from .errors import DigitocrError
from .fsutil import atomic_write
from .model import build_model

META_KEY = "digitocr"
FORMAT_VERSION = 1
MODEL, OPTIM, RNG = "model.", "optimizer.", "rng."


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state_dict -> (tensors, JSON-able rest)."""
    tensors, scalars = {}, {}
    for idx, per_param in state["state"].items():
        for k, v in per_param.items():
            if torch.is_tensor(v):
                tensors[f"{OPTIM}{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        idx, k = key[len(OPTIM):].split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None,
                    rng_state: torch.Tensor | None = None) -> None:
    """Write weights (+ optional optimizer and RNG state) and `meta` (must hold 'model_config') atomically."""
    tensors = {f"{MODEL}{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {**meta, "format_version": FORMAT_VERSION}
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    if rng_state is not None:
        tensors[f"{RNG}torch"] = rng_state
    header = {META_KEY: json.dumps(meta)}
    try:
        atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=header))
    except (OSError, SafetensorError) as e:  # disk full, read-only folder: the old checkpoint is untouched
        reason = getattr(e, "strerror", None) or str(e).rsplit(": ", 1)[-1]
        raise DigitocrError(f"{path}: cannot write checkpoint ({reason}); the previous checkpoint is intact") from None


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The digitocr metadata in a checkpoint's header, without reading its tensors; {} for anything that is
    not a readable digitocr checkpoint (callers that need one use read_checkpoint, which says why)."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata) of a checkpoint file; anything that is not one is a DigitocrError."""
    path = Path(path)
    if path.is_dir():
        raise DigitocrError(f"{path}: a folder, not a checkpoint file")
    if not path.is_file():
        raise DigitocrError(f"{path}: checkpoint not found")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        hint = "; an ONNX export is read with --backend onnxruntime" if path.suffix.lower() == ".onnx" else ""
        raise DigitocrError(f"{path}: not a valid safetensors checkpoint ({str(e).splitlines()[0]}){hint}") \
            from None
    if META_KEY not in header:
        raise DigitocrError(f"{path}: safetensors file without digitocr metadata; not a digitocr checkpoint")
    try:
        meta = json.loads(header[META_KEY])
        ModelConfig.from_dict(meta["model_config"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DigitocrError(f"{path}: corrupt digitocr metadata ({e})") from None
    return tensors, meta


def model_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any], name: str) -> nn.Module:
    """Rebuild the network from its config and load exactly its weights: shapes, dtypes and names checked."""
    model = build_model(ModelConfig.from_dict(meta["model_config"]))
    expected = model.state_dict()
    got = {k[len(MODEL):]: v for k, v in tensors.items() if k.startswith(MODEL)}
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        raise DigitocrError(f"{name}: weights do not match the network (missing: {missing[:3]}, "
                            f"unexpected: {extra[:3]})")
    for k, v in expected.items():
        if got[k].shape != v.shape or got[k].dtype != v.dtype:
            raise DigitocrError(f"{name}: tensor {k} is {tuple(got[k].shape)} {got[k].dtype}, "
                                f"expected {tuple(v.shape)} {v.dtype}")
        if got[k].is_floating_point() and not torch.isfinite(got[k]).all():
            raise DigitocrError(f"{name}: tensor {k} holds NaN or infinite values")
    model.load_state_dict(got)
    return model


def optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict | None:
    if "optimizer" not in meta:
        return None
    return _unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith(OPTIM)}, meta["optimizer"])
