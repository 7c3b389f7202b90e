"""Which device trains, and in which precision."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import ContextManager, Iterator

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
    """``auto`` is bf16 on CUDA and on CPUs with AMX tiles, fp32 elsewhere.

    On the CPU, bf16 autocast pays only where the hardware multiplies bf16: with AMX, CNN_v1's train
    step ran 2.9x faster than in fp32; on an AVX2-only CPU (no bf16 instructions) it ran 5x slower
    (docs/training.md). ``bf16`` or ``fp32`` forces one.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_has_amx()) else "fp32"
    return precision


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later), through torch's own probe."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private; absent in other torch builds
    return bool(probe()) if probe is not None else False


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


@contextlib.contextmanager
def kernel_settings(device: torch.device) -> Iterator[None]:
    """The backend flags a fit runs under, restored afterwards.

    CPU: deterministic kernels (warning where none exists), which cost nothing there. CUDA:
    ``cudnn.benchmark`` (fixed input shapes: the fastest convolution algorithm is found once) and
    TF32 matmuls and convolutions (the fp32 parts of a bf16-autocast step), not deterministic
    kernels, which slow training and need CUBLAS_WORKSPACE_CONFIG.
    """
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = previous[2:]
