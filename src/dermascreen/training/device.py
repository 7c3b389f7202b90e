"""Which device trains, and in which precision."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import ContextManager

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "auto")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; naming an absent accelerator is an error, not a fallback."""
    if name not in DEVICES:
        raise ValueError(f"device: expected one of {DEVICES}, got {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' requested but torch sees no CUDA GPU")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device: 'mps' requested but the MPS backend is not available")
    return torch.device(name)


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """``auto`` is bf16 on CUDA and fp32 elsewhere.

    On CPUs with AMX / avx512_bf16, bf16 speeds up some models (ResNet50) and not others
    (EfficientNet-B0), so the CPU only gets it when asked for explicitly.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def hardware(device: torch.device, precision: str) -> dict[str, str]:
    """What a run actually used, for its summary and reports: device type, precision and the
    device's model (the GPU's name on CUDA, the CPU's model name otherwise)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device": device.type, "precision": precision, "device_name": name}


def describe_hardware(used: dict[str, str]) -> str:
    """``cuda (NVIDIA H200), bf16``: one line for logs and reports."""
    return f"{used['device']} ({used['device_name']}), {used['precision']}"


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def autocast_context(device: torch.device, precision: str) -> ContextManager:
    """bf16 autocast on ``device`` for ``precision == "bf16"``; a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"precision: expected 'fp32' or 'bf16' (resolve 'auto' first), got {precision!r}")
