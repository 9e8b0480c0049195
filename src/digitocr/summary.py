"""The layer table: every op's output shape and each layer's parameter count, traced with torch.fx."""

from __future__ import annotations

import torch
from torch.fx import symbolic_trace
from torch.fx.passes.shape_prop import ShapeProp

from .config import ModelConfig
from .constants import IMAGE_SIZE, NUM_CHANNELS
from .model import build_model, count_parameters


def layer_rows(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, output shape without batch, parameters) for every traced op, in execution order."""
    model = build_model(cfg).eval()
    gm = symbolic_trace(model)
    ShapeProp(gm).propagate(torch.zeros(1, NUM_CHANNELS, IMAGE_SIZE, IMAGE_SIZE))
    modules = dict(gm.named_modules())
    rows = []
    for node in gm.graph.nodes:
        if node.op not in ("placeholder", "call_module", "call_function", "call_method"):
            continue
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            continue
        if node.op == "call_module":
            name, params = node.target, sum(p.numel() for p in modules[node.target].parameters(recurse=False))
        elif node.op == "placeholder":
            name, params = "input", 0
        else:
            name, params = getattr(node.target, "__name__", str(node.target)), 0
        rows.append((name, tuple(meta.shape[1:]), params))
    return rows


def layer_table(cfg: ModelConfig) -> str:
    rows = layer_rows(cfg)
    lines = [f"{'Layer':<22}{'Output shape':<20}{'Params':>10}", "-" * 52]
    lines += [f"{n:<22}{'(' + ', '.join(map(str, s)) + ')':<20}{p:>10,}" for n, s, p in rows]
    lines += ["-" * 52, f"{'Total parameters':<42}{count_parameters(build_model(cfg)):>10,}"]
    return "\n".join(lines)
