"""Where and how tensors compute: device, bf16 support, autocast, threads, and the environment record."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from functools import cache
from pathlib import Path

import numpy as np
import torch

from .errors import DigitocrError

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # CPUs that run bf16 natively (--precision bf16 is allowed) ...
FAST_BF16_CPU_FLAGS = ("amx_bf16",)  # ... and those where oneDNN's bf16 kernels beat fp32, which `auto` picks: on
# a Xeon with AVX512-BF16 but no AMX, bf16 took 1.14-1.39x fp32's time to train and 1.6x to infer
# (benchmarks/precision_speed.py)


@cache
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@cache
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


SUPPORTED_DEVICES = ("cpu", "cuda")  # the kinds digitocr trains and reads on (cuda:N names one GPU)


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DigitocrError(f"--device {name}: CUDA is not available on this machine")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DigitocrError(f"--device {name!r}: not a device name (try cpu or cuda)") from None
    if device.type not in SUPPORTED_DEVICES:  # mps, meta, xpu...: torch parses them; digitocr does not run there
        raise DigitocrError(f"--device {name}: digitocr runs on {' or '.join(SUPPORTED_DEVICES)}")
    return device


def use_bf16(precision: str, device: torch.device) -> bool:
    """'auto' picks bf16 where it is faster than fp32 (AMX CPUs, any recent GPU); 'bf16' needs native support."""
    if precision == "fp32":
        return False
    if device.type == "cuda":
        native = fast = torch.cuda.is_bf16_supported()
    else:
        native = any(f in cpu_flags() for f in BF16_CPU_FLAGS)
        fast = any(f in cpu_flags() for f in FAST_BF16_CPU_FLAGS)
    if precision == "bf16" and not native:
        raise DigitocrError(f"--precision bf16: no native bf16 on this {device.type} (AMX or AVX512-BF16 CPUs, recent "
                            "GPUs); use auto or fp32")
    return precision == "bf16" or fast


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise DigitocrError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def environment() -> dict:
    """What a run folder records about the machine and software."""
    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "bf16_cpu": any(f in cpu_flags() for f in BF16_CPU_FLAGS),
        "amx_cpu": any(f in cpu_flags() for f in FAST_BF16_CPU_FLAGS),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return env
