"""ImageNet weights from a local directory: one file per architecture and a manifest (docs/models.md).

The directory (parameter ``weights_dir``, ``data/01_raw/weights`` by default) holds, for each timm
architecture, the exact file timm loads from the Hugging Face hub for its pinned pretrained tag
(``<tag>.safetensors``), and ``manifest.json`` with each file's hub id, sha256 and size. Models are
built from these files only, after their sha256 is checked: training never touches a hub. ``fetch``
(``dermascreen-weights fetch`` on a connected machine) is the one place that downloads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import timm
from torch import nn

from dermascreen.io import atomic_write

logger = logging.getLogger(__name__)

# The pretrained tag of each architecture: timm 1.0.31's default tags, pinned so that a timm
# upgrade cannot change which weights a run starts from.
IMAGENET_TAGS = {
    "resnet50": "resnet50.a1_in1k",
    "vgg16": "vgg16.tv_in1k",
    "efficientnet_b0": "efficientnet_b0.ra_in1k",
}
MANIFEST = "manifest.json"
HUB_FILENAME = "model.safetensors"  # what timm loads from a timm/<tag> hub repo
FETCH_COMMAND = "dermascreen-weights fetch"
HUB_PROBE_TIMEOUT_S = 3.0


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights files are missing or do not match their manifest; the message says how to get them."""


def file_name(arch: str) -> str:
    return f"{IMAGENET_TAGS[arch]}.safetensors"


def needed_archs(model_configs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The architectures whose ImageNet weights these model configs load (``weights: imagenet``)."""
    return sorted({config["arch"] for config in model_configs if str(config.get("weights")) == "imagenet"})


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{arch: {"arch", "timm_tag", "hub_id", "file", "sha256", "size"}}``; empty when there is none."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())["weights"]
    except (ValueError, KeyError, TypeError) as error:
        raise WeightsUnavailableError(f"{path}: not a weights manifest ({type(error).__name__}: {error}); "
                                      f"delete it and run `{FETCH_COMMAND}`") from error
    return {entry["arch"]: entry for entry in entries}


def write_manifest(directory: str | os.PathLike, entries: Mapping[str, Mapping[str, Any]]) -> None:
    path = Path(directory) / MANIFEST
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps({"weights": [dict(entries[arch]) for arch in sorted(entries)]}, indent=2) + "\n")


def problems(directory: str | os.PathLike, archs: Iterable[str]) -> list[str]:
    """What is wrong with the weights of ``archs`` in ``directory``: one line per bad file, [] if all are fine."""
    directory = Path(directory)
    try:
        manifest = read_manifest(directory)
    except WeightsUnavailableError as error:
        return [str(error)]
    found = []
    for arch in archs:
        name, entry = file_name(arch), manifest.get(arch)
        path = directory / name
        if not path.is_file():
            found.append(f"{name} ({arch}): missing")
        elif entry is None or entry.get("file") != name:
            found.append(f"{name} ({arch}): not listed in {MANIFEST}, so it cannot be checked")
        elif path.stat().st_size != entry["size"]:
            found.append(f"{name} ({arch}): {path.stat().st_size} bytes, the manifest says {entry['size']}")
        elif (digest := sha256sum(path)) != entry["sha256"]:
            found.append(f"{name} ({arch}): sha256 {digest}, the manifest says {entry['sha256']}")
    return found


def offline_routes(directory: str | os.PathLike) -> str:
    """How to provide the files on a machine that cannot download them."""
    return (f"Provide them with `{FETCH_COMMAND} --profile <profile>` (or `--all`) on a connected machine, then "
            f"copy that machine's {directory}/ (files and {MANIFEST}) here; or `dvc pull {directory}` from a "
            f"DVC remote that has them; or set weights_dir in conf/base/globals.yml (read by DVC and Kedro) "
            f"to a directory that holds them (docs/models.md, 'ImageNet weights').")


def check(directory: str | os.PathLike, archs: Iterable[str]) -> None:
    """Raise ``WeightsUnavailableError`` naming every missing or bad file of ``archs``."""
    found = problems(directory, archs)
    if found:
        raise WeightsUnavailableError(f"ImageNet weights in {directory}:\n  " + "\n  ".join(found) + "\n"
                                      + offline_routes(directory))


def imagenet_backbone(arch: str, directory: str | os.PathLike) -> nn.Module:
    """timm backbone (no classifier) of ``arch`` with the ImageNet weights of ``directory``, sha256-checked.

    timm loads the file as it would the hub's copy (``pretrained_cfg_overlay``'s ``file``): the
    same checkpoint filter, the classifier dropped for ``num_classes=0``.
    """
    check(directory, [arch])
    path = Path(directory) / file_name(arch)
    return timm.create_model(IMAGENET_TAGS[arch], pretrained=True, num_classes=0,
                             pretrained_cfg_overlay={"file": str(path)})


def record(directory: str | os.PathLike, arch: str, source: str | os.PathLike) -> dict[str, Any]:
    """Copy ``source`` into ``directory`` as ``arch``'s weights file and list it in the manifest."""
    directory = Path(directory)
    target = directory / file_name(arch)
    if Path(source).resolve() != target.resolve():
        with atomic_write(target, suffix=".safetensors") as tmp:
            shutil.copyfile(source, tmp)
    entry = {"arch": arch, "timm_tag": IMAGENET_TAGS[arch], "hub_id": hub_id(arch), "file": target.name,
             "sha256": sha256sum(target), "size": target.stat().st_size}
    write_manifest(directory, {**read_manifest(directory), arch: entry})
    return entry


def hub_id(arch: str) -> str:
    return timm.models.get_pretrained_cfg(IMAGENET_TAGS[arch]).hf_hub_id


def hub_download(arch: str) -> Path:
    """The hub file of ``arch``'s tag, through the local Hugging Face cache (downloaded if absent)."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=hub_id(arch), filename=HUB_FILENAME))


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face hub accepts a TCP connection within ``timeout`` seconds.

    Checked before downloading because huggingface_hub retries an unreachable hub for about 45 s.
    """
    from huggingface_hub import constants as hub

    if hub.is_offline_mode():
        return False
    url = urlparse(hub.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def fetch(directory: str | os.PathLike, archs: Iterable[str],
          download: Callable[[str], Path] = hub_download) -> list[str]:
    """Make ``directory`` hold checked weights of ``archs``; returns what was done, one line per arch.

    Files that already match the manifest are kept. The manifest is written even when nothing is
    needed (profiles without ImageNet models), so the directory is always a complete DVC output.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    archs = sorted(set(archs))
    todo = [arch for arch in archs if problems(directory, [arch])]
    if todo and not hub_reachable():
        found = problems(directory, todo)
        raise WeightsUnavailableError(f"cannot download ImageNet weights: the Hugging Face hub is not reachable "
                                      f"(or HF_HUB_OFFLINE is set). Needed in {directory}:\n  "
                                      + "\n  ".join(found) + "\n" + offline_routes(directory))
    done = [f"{file_name(arch)}: present, sha256 matches {MANIFEST}" for arch in archs if arch not in todo]
    for arch in todo:
        logger.info("downloading %s (%s)", hub_id(arch), HUB_FILENAME)
        entry = record(directory, arch, download(arch))
        done.append(f"{entry['file']}: downloaded from {entry['hub_id']}, sha256 {entry['sha256']}")
    write_manifest(directory, read_manifest(directory))
    return done
