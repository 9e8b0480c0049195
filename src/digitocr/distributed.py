"""Data-parallel training on PyTorch's own engine (torchrun + DistributedDataParallel).

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; each rank trains on its shard of
every global batch (gloo on CPUs, NCCL on GPUs), DDP averages gradients, rank 0 writes checkpoints.
"""

from __future__ import annotations

import gc
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import DigitocrError
from .runtime import resolve_device


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch: (B,) -> (B / world_size,)."""
        if not self.distributed:
            return indices
        per_rank = len(indices) // self.world_size
        return indices[self.rank * per_rank:(self.rank + 1) * per_rank]


def launched_as_main() -> bool:
    """Whether this process is rank 0 of its torchrun job (or not under torchrun): the one that speaks."""
    return os.environ.get("RANK", "0") == "0"


def setup(device_name: str, batch_size: int) -> Context:
    """A Context for this process; joins the process group when launched by torchrun with >1 ranks."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context(0, 1, resolve_device(device_name))
    if batch_size % world_size:
        raise DigitocrError(f"--batch-size {batch_size} must divide evenly across {world_size} ranks")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), device)


def wrap(model: nn.Module, ctx: Context) -> nn.Module:
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for _, v in sorted(unwrap(model).state_dict().items()):
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_replicas_agree(model: nn.Module, ctx: Context) -> None:
    """DDP keeps replicas identical; verify it (cheaply) so a silent divergence can never be saved."""
    if not ctx.distributed:
        return
    digests: list[str | None] = [None] * ctx.world_size
    dist.all_gather_object(digests, weights_digest(model))
    if len(set(digests)) != 1:
        raise DigitocrError(f"replicas diverged: weight digests differ across {ctx.world_size} ranks")


def any_rank(flag: bool, ctx: Context) -> bool:
    """True on every rank if `flag` is true on any (e.g. one rank saw Ctrl-C)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([int(flag)], device=ctx.device)  # NCCL reduces device tensors only
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def teardown(ctx: Context) -> None:
    """Leave the process group. Call it after the DDP wrapper is gone (`del net`): DDP's C++ reducer holds
    the group, and if it is only freed during interpreter shutdown, gloo's threads abort the process
    ("terminate called without an active exception", SIGABRT) after training has finished."""
    if ctx.distributed and dist.is_initialized():
        gc.collect()  # DDP's module/hook reference cycles: free the reducer now, not at exit
        dist.barrier()  # no rank tears down while another still talks
        dist.destroy_process_group()
