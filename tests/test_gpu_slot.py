"""``python -m dermascreen.gpu_slot``: runs side by side on one machine each get a GPU of their own
(real processes; the GPUs are CUDA_VISIBLE_DEVICES' entries, so no GPU is needed)."""

from __future__ import annotations

import subprocess
import sys
import time

from project_helpers import command_env

SHOW = "echo $CUDA_VISIBLE_DEVICES; sleep 1.5"


def start(tmp_path, visible: str) -> subprocess.Popen:
    env = command_env(CUDA_VISIBLE_DEVICES=visible, TMPDIR=str(tmp_path))  # TMPDIR: this test's locks
    return subprocess.Popen([sys.executable, "-m", "dermascreen.gpu_slot", "sh", "-c", SHOW], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def test_runs_side_by_side_get_distinct_gpus_and_a_third_waits_for_one(tmp_path):
    began = time.monotonic()
    first, second = start(tmp_path, "3,7"), start(tmp_path, "3,7")
    time.sleep(0.5)  # both hold their GPU now
    third = start(tmp_path, "3,7")
    gpus = [process.communicate(timeout=60)[0].strip() for process in (first, second)]
    assert sorted(gpus) == ["3", "7"]
    assert third.communicate(timeout=60)[0].strip() in {"3", "7"}
    assert time.monotonic() - began >= 3.0  # the third started once a GPU was free: two turns of 1.5 s


def test_without_a_gpu_the_command_runs_as_it_is(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dermascreen.gpu_slot", "sh", "-c", "echo ${CUDA_VISIBLE_DEVICES-unset}"],
                            env=command_env(CUDA_VISIBLE_DEVICES="", TMPDIR=str(tmp_path)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == ""
