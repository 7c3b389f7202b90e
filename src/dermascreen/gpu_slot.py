"""``python -m dermascreen.gpu_slot COMMAND...``: run COMMAND on one GPU of this machine that no
other COMMAND started this way holds (docs/training.md, "Scaling").

dvc.yaml's grid run stages start through it, so that workers side by side on one machine (``dvc
queue start -j N``, or ``dvc repro`` in N clones sharing a cache) each train on a GPU of their own:
DVC's queue gives its workers no index and no environment of their own (each inherits ``dvc queue
start``'s). The GPUs are ``CUDA_VISIBLE_DEVICES``' entries when it is set (a worker pinned by hand
keeps its GPU), else those ``nvidia-smi`` lists; COMMAND gets the first one whose lock file
(``<temp dir>/dermascreen-gpus/<gpu>.lock``, ``flock``) it can take, as its only
``CUDA_VISIBLE_DEVICES``, and waits while every GPU is held. The lock lasts as long as COMMAND (it
holds the file open; the kernel releases it when COMMAND ends, killed or not). Without a GPU
COMMAND runs as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAIT_S = 2.0


def gpus(environ: dict[str, str]) -> list[str]:
    """``CUDA_VISIBLE_DEVICES``' entries (indices or UUIDs) when set, else nvidia-smi's GPU indices."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [entry.strip() for entry in visible.split(",") if entry.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        # A hung driver: the command runs unpinned, and its preflight check says what torch sees.
        print("dermascreen: nvidia-smi did not answer within 30 s; no GPU pinned", file=sys.stderr, flush=True)
        return []
    return listed.stdout.split() if listed.returncode == 0 else []


def lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "dermascreen-gpus"


def lock_file(directory: Path, gpu: str) -> Path:
    # MIG devices of older drivers are named MIG-GPU-<uuid>/<gi>/<ci>: no '/' in a file name.
    return directory / f"{gpu.replace('/', '_')}.lock"


def acquire(candidates: list[str], directory: Path) -> tuple[int, str]:
    """An open descriptor holding the lock of the first free GPU, and that GPU; waits for one."""
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):  # another user's workers share the GPUs: sticky, like /tmp
            directory.chmod(0o1777)
    waiting = False
    while True:
        for gpu in candidates:
            fd = os.open(lock_file(directory, gpu), os.O_RDONLY | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd, gpu
            except BlockingIOError:
                os.close(fd)
        if not waiting:
            print(f"dermascreen: every GPU ({','.join(candidates)}) is held by another run; waiting for one",
                  file=sys.stderr, flush=True)
            waiting = True
        time.sleep(WAIT_S)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    candidates = gpus(dict(os.environ))
    if candidates:
        fd, gpu = acquire(candidates, lock_dir())
        os.set_inheritable(fd, True)  # COMMAND holds the lock until it ends
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        print(f"dermascreen: GPU {gpu} of {','.join(candidates)} for: {' '.join(argv)}", file=sys.stderr, flush=True)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
