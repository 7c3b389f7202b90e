"""``python -m dermascreen.gpu_slot``: runs side by side on one machine each get a GPU of their own
(real processes; the GPUs are CUDA_VISIBLE_DEVICES' entries, so no GPU is needed)."""

from __future__ import annotations

import subprocess
import sys
import time

from project_helpers import command_env

SHOW = "echo $CUDA_VISIBLE_DEVICES; sleep 1.5"
SLOT = [sys.executable, "-m", "dermascreen.gpu_slot"]


def start(tmp_path, visible: str) -> subprocess.Popen:
    env = command_env(CUDA_VISIBLE_DEVICES=visible, TMPDIR=str(tmp_path))  # TMPDIR: this test's locks
    return subprocess.Popen([*SLOT, "sh", "-c", SHOW], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_runs_side_by_side_get_distinct_gpus_and_a_third_waits_for_one(tmp_path):
    began = time.monotonic()
    first, second = start(tmp_path, "3,7"), start(tmp_path, "3,7")
    gpus = [process.stdout.readline().strip() for process in (first, second)]  # both hold their GPU now
    third = start(tmp_path, "3,7")
    assert sorted(gpus) == ["3", "7"]
    gpu, log = third.communicate(timeout=60)
    assert gpu.strip() in {"3", "7"} and "every GPU (3,7) is held by another run; waiting for one" in log
    for process in (first, second):
        process.communicate(timeout=60)
    assert time.monotonic() - began >= 3.0  # the third started once a GPU was free: two turns of 1.5 s


def test_a_mig_device_name_makes_a_valid_lock_file(tmp_path):
    """Older drivers name MIG devices MIG-GPU-<uuid>/<gi>/<ci>."""
    result = subprocess.run([*SLOT, "sh", "-c", "echo $CUDA_VISIBLE_DEVICES"],
                            env=command_env(CUDA_VISIBLE_DEVICES="MIG-GPU-abc/1/0", TMPDIR=str(tmp_path)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "MIG-GPU-abc/1/0", result.stderr
    assert (tmp_path / "dermascreen-gpus" / "MIG-GPU-abc_1_0.lock").is_file()


def test_without_a_gpu_the_command_runs_as_it_is(tmp_path):
    result = subprocess.run([*SLOT, "sh", "-c", "echo ${CUDA_VISIBLE_DEVICES-unset}"],
                            env=command_env(CUDA_VISIBLE_DEVICES="", TMPDIR=str(tmp_path)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == ""
