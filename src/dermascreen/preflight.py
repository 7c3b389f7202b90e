"""Preflight: what a Kedro run needs, checked in seconds before its first node (docs/training.md).

``check(pipeline, parameters, catalog)`` looks at the nodes that are about to run and reports every
problem at once, not the first: the ImageNet weights of the runs that load them, each device the
parameters ask for against this machine's torch build, NVIDIA driver and GPU, the raw data file,
and free disk against an estimate of the checkpoints the run writes. ``PreflightHook`` (hooks.py)
runs it before every ``kedro run``; ``python -m dermascreen.preflight --env <profile>`` runs it for
a whole profile (``make all`` does, before ``dvc repro``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import torch

from dermascreen.models import build_model
from dermascreen.models.weights import (FETCH_COMMAND, WeightsUnavailableError, hub_reachable, needed_archs,
                                        offline_routes, problems as weights_problems, read_manifest)
from dermascreen.profile import profile_config
from dermascreen.training.device import resolve_device

logger = logging.getLogger(__name__)

# Oldest Linux driver of each CUDA major version (NVIDIA's CUDA minor version compatibility table).
MIN_DRIVER = {11: (450, 80, 2), 12: (525, 60, 13), 13: (580,)}
PROBE_TIMEOUT_S = 3.0
NVIDIA_SMI_TIMEOUT_S = 10.0
FP32_BYTES = 4
GIB = 1024 ** 3


class PreflightError(click.ClickException):
    """The run cannot succeed on this machine; the message lists every problem and its fix.

    A ClickException, so that ``kedro run`` prints the message alone (no traceback) and exits with 1.
    """


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = ["preflight: " + fact for fact in self.facts]
        if self.problems:
            lines.append(f"preflight: {len(self.problems)} problem(s):")
            lines += [f"  {number}. {problem}" for number, problem in enumerate(self.problems, 1)]
        return "\n".join(lines)


def check(pipeline, parameters: Mapping[str, Any], catalog: Mapping[str, Any],
          root: str | os.PathLike = ".", weights_from_hub: bool = False) -> Report:
    """Every problem the nodes of ``pipeline`` would meet on this machine (``catalog``: the catalog config).

    ``weights_from_hub``: missing ImageNet weights are no problem while the model hub can be reached
    (``make all`` checks before ``dermascreen-weights fetch`` downloads them).
    """
    report = Report()
    inputs = {name for node in pipeline.nodes for name in node.inputs}
    used = sorted(name.removeprefix("params:") for name in inputs if name.startswith("params:"))
    _check_devices(report, {path: device for name in used
                            for path, device in _device_keys(lookup(parameters, name), name)})
    _check_weights(report, parameters, [name for name in used if name.startswith("phase1.architectures.")],
                   weights_from_hub)
    if "dermamnist_raw" in inputs:
        _check_data(report, catalog["dermamnist_raw"])
    _check_disk(report, checkpoint_bytes(pipeline, parameters), Path(root))
    return report


def ensure(pipeline, parameters: Mapping[str, Any], catalog: Mapping[str, Any], root: str | os.PathLike = ".") -> None:
    """Log what was found; raise ``PreflightError`` listing every problem, if any."""
    report = check(pipeline, parameters, catalog, root)
    if report.problems:
        raise PreflightError("the preflight check stopped the run before its first node:\n" + report.text())
    logger.info("%s", report.text())


# --- devices, torch build, driver -------------------------------------------------------------------

def _device_keys(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(parameter path, device)`` of every ``device`` key in a parameter value."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "device" and isinstance(item, str):
                yield f"{path}.{key}", item
            else:
                yield from _device_keys(item, f"{path}.{key}")


def _check_devices(report: Report, requested: dict[str, str]) -> None:
    report.facts.append(torch_and_driver())
    by_device: dict[str, list[str]] = {}
    for path, device in sorted(requested.items()):
        by_device.setdefault(device, []).append(path)
    for device, paths in by_device.items():
        asked = f"device: {device} ({', '.join(paths)})"
        if device == "cuda":
            problem = cuda_problem()
            if problem:
                report.problems.append(f"{asked}: {problem}")
            else:
                major, minor = torch.cuda.get_device_capability()
                report.facts.append(f"{asked}: {torch.cuda.get_device_name()} (compute capability {major}.{minor})")
        elif device == "mps" and not torch.backends.mps.is_available():
            report.problems.append(f"{asked}: the MPS backend is not available on this machine; use cpu.")
        elif device == "auto":
            report.facts.append(f"{asked} resolves to {resolve_device('auto').type} on this machine")


def nvidia_gpus() -> list[tuple[str, str]] | None:
    """``[(GPU name, driver version)]`` from nvidia-smi; None when there is no working nvidia-smi."""
    command = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return [tuple(part.strip() for part in line.split(",", 1)) for line in result.stdout.splitlines() if "," in line]


def torch_and_driver() -> str:
    cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    gpus = nvidia_gpus()
    if gpus is None:
        driver = "no NVIDIA driver (nvidia-smi not found or failing)"
    else:
        driver = "; ".join(f"{name}, driver {version}" for name, version in gpus) or "nvidia-smi lists no GPU"
    return f"torch {torch.__version__} ({cuda}); {driver}"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def min_driver(cuda_version: str) -> tuple[int, ...] | None:
    return MIN_DRIVER.get(_version(cuda_version)[0])


def cuda_problem() -> str | None:
    """Why torch cannot train on a CUDA GPU here, with the fix; None when it can."""
    fix_wheel = "see README, 'GPU: driver and torch wheel', for the wheel that fits the driver"
    if not torch.version.cuda:
        return (f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None). Install a CUDA "
                f"build of the same version ({fix_wheel}), or run a CPU profile (quick).")
    needed = ".".join(map(str, min_driver(torch.version.cuda) or ()))
    if not torch.cuda.is_available():
        gpus = nvidia_gpus()
        if gpus is None:
            return (f"torch is built for CUDA {torch.version.cuda} but there is no NVIDIA driver (nvidia-smi not "
                    f"found or failing): this machine has no usable NVIDIA GPU. Install the NVIDIA driver "
                    f"(>= {needed} for CUDA {torch.version.cuda}) or run a CPU profile (quick).")
        old = [(name, version) for name, version in gpus if min_driver(torch.version.cuda)
               and _version(version) < min_driver(torch.version.cuda)]
        if old:
            return (f"NVIDIA driver {old[0][1]} ({old[0][0]}) is older than {needed}, the oldest that torch's "
                    f"CUDA {torch.version.cuda} build runs on. Update the driver, or install the torch wheel "
                    f"for an older CUDA ({fix_wheel}).")
        return (f"nvidia-smi lists {', '.join(name for name, _ in gpus) or 'no GPU'} but torch sees no CUDA device "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); check that variable "
                f"and the driver installation.")
    major, minor = torch.cuda.get_device_capability()
    if not supports_capability(torch.cuda.get_arch_list(), major, minor):
        return (f"{torch.cuda.get_device_name()} (compute capability {major}.{minor}) is not among the GPU "
                f"architectures this torch build was compiled for ({' '.join(torch.cuda.get_arch_list())}); "
                f"install a torch wheel built for it ({fix_wheel}).")
    return None


def supports_capability(arch_list: list[str], major: int, minor: int) -> bool:
    """Whether kernels of ``arch_list`` (``sm_XY`` binaries, ``compute_XY`` PTX) run on a ``major.minor`` GPU:
    a binary runs on its major version at the same or a higher minor, PTX on any later GPU."""
    for arch in arch_list:
        match = re.fullmatch(r"(sm|compute)_(\d+)(\d)", arch)
        if match is None:  # sm_90a and the like: one exact GPU family only
            continue
        kind, arch_major, arch_minor = match.group(1), int(match.group(2)), int(match.group(3))
        if kind == "sm" and arch_major == major and arch_minor <= minor:
            return True
        if kind == "compute" and (arch_major, arch_minor) <= (major, minor):
            return True
    return False


# --- ImageNet weights -------------------------------------------------------------------------------

def _check_weights(report: Report, parameters: Mapping[str, Any], architectures: list[str],
                   from_hub: bool = False) -> None:
    """The weights files of the phase1 runs that load ImageNet weights (phase2 starts from phase1's
    checkpoints and needs none)."""
    archs = needed_archs(lookup(parameters, name)["model"] for name in architectures)
    if not archs:
        return
    directory = parameters["weights_dir"]
    found = weights_problems(directory, archs)
    if found and from_hub and _fetch_can_mend(directory):
        report.facts.append(f"ImageNet weights of {', '.join(archs)}: {len(found)} file(s) to download into "
                            f"{directory} (`{FETCH_COMMAND}`; the model hub can be reached)")
    elif found:
        report.problems.append(f"ImageNet weights in {directory} (parameter weights_dir) for "
                               f"{', '.join(archs)}:\n       " + "\n       ".join(found) + "\n     "
                               + offline_routes(directory))
    else:
        report.facts.append(f"ImageNet weights of {', '.join(archs)} in {directory}: sha256 matches the manifest")


def _fetch_can_mend(directory: str | os.PathLike) -> bool:
    """Whether ``dermascreen-weights fetch`` would provide the files: it downloads missing or mismatched
    ones while the hub answers, and stops at a manifest it cannot read."""
    try:
        read_manifest(directory)
    except WeightsUnavailableError:
        return False
    return hub_reachable()


# --- raw data ---------------------------------------------------------------------------------------

def _check_data(report: Report, entry: Mapping[str, Any]) -> None:
    """The raw file, a local copy (``DERMAMNIST_NPZ``) or a reachable download, as ``data/acquire.py`` uses them."""
    from dermascreen.data.acquire import official_source

    destination, local = Path(entry["filepath"]), entry.get("local_file")
    if local and not Path(local).expanduser().is_file():
        report.problems.append(f"DERMAMNIST_NPZ points at {local}, which is not a file: set it to a DermaMNIST "
                               f".npz or unset it (README, 'The data').")
    elif local or destination.is_file():
        report.facts.append(f"data: {local or destination}")
    else:
        url, _ = official_source(int(entry["size"]))
        if not reachable(url):
            report.problems.append(f"data: {destination} is absent, DERMAMNIST_NPZ is unset and "
                                   f"{urlparse(url).hostname} cannot be reached to download it. "
                                   f"Set DERMAMNIST_NPZ=/path/to/dermamnist.npz (README, 'The data').")
        else:
            report.facts.append(f"data: will be downloaded from {url}")


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``url``'s host accepts a TCP connection within ``timeout`` seconds."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


# --- disk -------------------------------------------------------------------------------------------

def checkpoint_bytes(pipeline, parameters: Mapping[str, Any]) -> int:
    """About how many bytes of checkpoints the nodes of ``pipeline`` write.

    A grid run (phase1, phase2) writes its best weights (fp32, 4 bytes a parameter), copied once more
    into the DVC cache, and keeps a training state of the model, the best epoch's copy and Adam's two
    moments of every trainable parameter; the state file is rewritten through a temporary copy, so the
    largest state counts twice. Each phase also exports its winner and runner-up (DVC-cached). A
    phase2 run counts as the largest phase1 model with everything trainable (the winner is not known
    yet). Pretraining writes one encoder per method and pretraining seed (a ``pretrain`` node) and one
    classifier per fine-tuning seed of every encoder (a ``finetune`` node), DVC-cached.
    """
    phase1 = parameters.get("phase1", {})
    runs: list[tuple[int, int]] = []
    phases = set()
    pretraining = {"pretrain": 0, "finetune": 0}
    for node in pipeline.nodes:
        for name in node.inputs:
            if name.startswith("params:phase1.architectures."):
                runs.append(parameter_counts(lookup(parameters, name.removeprefix("params:"))["model"], parameters))
                phases.add("phase1")
            elif name.startswith("params:phase2.strategies."):
                total = max(parameter_counts(phase1["architectures"][run]["model"], parameters)[0]
                            for run in phase1["runs"])
                runs.append((total, total))
                phases.add("phase2")
        kind = node.name.rsplit(".", 1)[-1]
        if node.name.startswith("pretraining.") and kind in pretraining:
            pretraining[kind] += 1
    states = [FP32_BYTES * (2 * total + 2 * trainable) for total, trainable in runs]
    total = sum(2 * FP32_BYTES * p for p, _ in runs) + sum(states) + max(states, default=0)
    if runs:
        total += len(phases) * 2 * 2 * FP32_BYTES * max(p for p, _ in runs)
    if any(pretraining.values()):
        shared, finetune = parameters["pretraining"]["shared"], parameters["pretraining"]["finetune"]
        encoder = parameter_counts({"arch": "vit", "num_classes": 7, **shared["encoder"]}, parameters)[0]
        total += 2 * FP32_BYTES * encoder * (pretraining["pretrain"] + pretraining["finetune"] * len(finetune["seeds"]))
    return total


def parameter_counts(model: Mapping[str, Any], parameters: Mapping[str, Any]) -> tuple[int, int]:
    """(all, trainable) parameters of a model config, counted without weights (meta device where possible)."""
    config = dict(model)
    if config["arch"] == "vit":  # its architecture comes from the pretraining encoder it starts from
        config = {**parameters["pretraining"]["shared"]["encoder"], **config}
    return _counts(json.dumps({**config, "weights": "none"}, sort_keys=True))


@lru_cache(maxsize=None)
def _counts(config_json: str) -> tuple[int, int]:
    config = json.loads(config_json)
    # The ViT's constructor reads a tensor's values (drop-path rates), which meta tensors lack; it is small.
    with torch.device("cpu" if config["arch"] == "vit" else "meta"):
        model = build_model(config)
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters), sum(p.numel() for p in parameters if p.requires_grad)


def _check_disk(report: Report, needed: int, root: Path) -> None:
    free = shutil.disk_usage(root).free
    line = f"about {needed / GIB:.2f} GiB of checkpoints to write, {free / GIB:.1f} GiB free on {root.resolve()}"
    if free < needed:
        report.problems.append(f"disk: {line}. Free space there, or move the project to a larger disk.")
    else:
        report.facts.append(f"disk: {line}")


def lookup(parameters: Mapping[str, Any], dotted: str) -> Any:
    value: Any = parameters
    for key in dotted.split("."):
        value = value[key]
    return value


# --- command line -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dermascreen.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True, help="profile (Kedro environment): base, quick or tiny")
    parser.add_argument("--pipelines", default="__default__",
                        help="comma-separated pipelines to check (default: the whole experiment)")
    parser.add_argument("--weights-from-hub", action="store_true",
                        help="missing ImageNet weights are fine while the model hub can be reached (make all "
                             "checks before it fetches them)")
    args = parser.parse_args(argv)
    from kedro.framework.project import pipelines
    from kedro.pipeline import Pipeline

    root = Path.cwd()
    with profile_config(args.env, root) as loader:
        pipeline = sum((pipelines[name] for name in args.pipelines.split(",")), Pipeline([]))
        report = check(pipeline, loader["parameters"], loader["catalog"], root, args.weights_from_hub)
    print(report.text())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
