"""On-the-fly augmentation, batched on tensors: random affine (shift, rotation, scale) + elastic warp.

One affine_grid + one grid_sample per batch; randomness comes from a generator the caller seeds per
iteration, so augmentation is reproducible and resuming mid-run repeats it exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import AugmentConfig

__all__ = ["AugmentConfig", "augment_batch"]

_ELASTIC_GRID = 4  # coarse noise resolution; upsampling it gives a smooth displacement field
DEFAULT_AUGMENT = AugmentConfig()

def _uniform(b: int, g: torch.Generator, half_width: float) -> torch.Tensor:
    return (torch.rand(b, generator=g) * 2 - 1) * half_width


def augment_batch(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig = DEFAULT_AUGMENT) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 1, H, W), each image warped by its own random transform."""
    b, _, h, w = x.shape
    angle = _uniform(b, g, math.radians(cfg.rotation_deg))
    zoom = 1 + _uniform(b, g, cfg.scale)
    shift = torch.stack([_uniform(b, g, 2 * cfg.shift), _uniform(b, g, 2 * cfg.shift)], 1)  # [-1,1] units
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # theta maps output coordinates to input coordinates: (B, 2, 3)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)  # (B, H, W, 2)
    if cfg.elastic > 0:
        coarse = torch.rand(b, 2, _ELASTIC_GRID, _ELASTIC_GRID, generator=g) * 2 - 1
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)  # (B, 2, H, W)
        grid = grid + cfg.elastic * field.permute(0, 2, 3, 1)
    grid = grid.to(device=x.device, dtype=x.dtype)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.contiguous(memory_format=torch.channels_last)
