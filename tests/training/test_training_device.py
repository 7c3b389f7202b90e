"""Device and precision resolution, and what autocast really does to a layer's output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dermascreen.training.device import autocast_context, cpu_has_amx, resolve_device, resolve_precision


def test_resolve_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_unknown_device_is_an_error():
    with pytest.raises(ValueError, match="device: expected one of"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_absent_cuda_is_an_error_not_a_fallback():
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_precision_auto_is_bf16_on_cuda_and_on_cpus_with_amx():
    assert resolve_precision(torch.device("cuda"), "auto") == "bf16"
    assert resolve_precision(torch.device("cpu"), "auto") == ("bf16" if cpu_has_amx() else "fp32")
    assert cpu_has_amx() == ("amx_tile" in Path("/proc/cpuinfo").read_text().split())  # torch's probe, checked
    assert resolve_precision(torch.device("cpu"), "bf16") == "bf16"
    with pytest.raises(ValueError, match="precision: expected one of"):
        resolve_precision(torch.device("cpu"), "fp16")


def test_autocast_context_sets_the_compute_dtype():
    layer, x = torch.nn.Linear(4, 2), torch.randn(3, 4)
    with autocast_context(torch.device("cpu"), "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with autocast_context(torch.device("cpu"), "fp32"):
        assert layer(x).dtype == torch.float32
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        autocast_context(torch.device("cpu"), "auto")
