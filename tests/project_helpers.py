"""Helpers shared by the tests: the real data file, synthetic raw arrays, the project's catalog."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset

from dermascreen import grid, settings
from dermascreen.pipelines import active_config

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_NPZ = PROJECT_ROOT.parent / "shared" / "data" / "dermamnist_28_jpeg75.npz"


def real_npz_path() -> Path | None:
    """The DermaMNIST file these machines have: ``DERMAMNIST_NPZ`` or ../shared/data."""
    candidate = Path(os.environ.get("DERMAMNIST_NPZ") or SHARED_NPZ)
    return candidate if candidate.is_file() else None


def closed_local_endpoint() -> str:
    """An http URL on localhost whose port refuses connections (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def synthetic_raw(sizes: dict[str, int] | None = None, image_size: int = 28, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays shaped like DermaMNIST (random pixels, every class present in every split)."""
    sizes = sizes or {"train": 7007, "val": 1003, "test": 2005}
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in sizes.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
        labels = np.arange(n) % 7
        arrays[f"{split}_labels"] = rng.permutation(labels).astype(np.uint8).reshape(-1, 1)
    return arrays


def benchmark_module(name: str):
    """A script of benchmarks/ (not a package) imported as a module."""
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(env: str, key: str) -> dict[str, Any]:
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, **settings.CONFIG_LOADER_ARGS)
    return loader[key]


def _relocate(entry: dict, root: Path) -> dict:
    entry = dict(entry)
    if "filepath" in entry and not Path(entry["filepath"]).is_absolute():
        entry["filepath"] = str(root / entry["filepath"])
    return entry


def project_catalog(root: Path, env: str = "tiny", local_file: str | None = None,
                    parameters: dict | None = None) -> DataCatalog:
    """The project's catalog for ``env`` with every file moved under ``root``, plus ``params:``."""
    config = load_config(env, "catalog")
    config = {name: _relocate(entry, root) for name, entry in config.items() if not name.startswith("_")}
    if local_file is not None and "dermamnist_raw" in config:
        config["dermamnist_raw"]["local_file"] = local_file
    catalog = DataCatalog.from_config(config)
    params = parameters if parameters is not None else load_config(env, "parameters")
    catalog["parameters"] = MemoryDataset(params)
    for name, value in _flatten(params):
        catalog[f"params:{name}"] = MemoryDataset(value)
    return catalog


def _flatten(params: dict, prefix: str = ""):
    for key, value in params.items():
        name = f"{prefix}{key}"
        yield name, value
        if isinstance(value, dict):
            yield from _flatten(value, f"{name}.")


def command_env(**extra: str) -> dict[str, str]:
    """The environment for ``kedro``/``dvc`` subprocesses: this venv first, nothing leaves the machine."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "KEDRO_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1", **extra}


def write_grid(root: Path) -> None:
    """params.yaml's grids from the configuration in ``root``/conf, as `make grid` writes them: after
    a test edits a grid's configuration, or DVC's run stages refuse the changed runs. Computed in this
    process, which has imported the project already (`python -m dermascreen.grid` pays about 8 s of
    imports and a Kedro session): the grid pipelines built from ``root``'s configuration of
    params.yaml's profile, as ``ActiveParametersHook`` hands it to them in a run. Every run stage
    checks its fingerprint before training (grid.check_stage), so a grid written otherwise than
    `kedro run` builds it fails the test that runs it; tests/test_grid.py and the grid-workers and
    end-to-end tests run the command itself."""
    params_file = root / grid.PARAMS_FILE
    env = yaml.safe_load(params_file.read_text())["profile"]
    loader = OmegaConfigLoader(str(root / "conf"), env=env, **settings.CONFIG_LOADER_ARGS)
    active_config.use(loader)
    try:
        pipelines = {phase: importlib.import_module(f"dermascreen.pipelines.{phase}").create_pipeline()
                     for phase in grid.PHASES}
        grid.write_grids(params_file, grid.grids_of(pipelines, active_config.read(loader)))  # read once
    finally:
        active_config.use(None)  # pipelines built later in this process read conf/ again


def project_checkout(root: Path, profile: str = "tiny") -> Path:
    """A fresh git checkout of the working tree (tracked and untracked-not-ignored files, no data
    and no dvc.lock) in ``root``, with ``params.yaml`` on ``profile`` and its grids (``python -m
    dermascreen.grid``); returns ``root``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        source = PROJECT_ROOT / name
        if source.is_file() and not name.startswith("data/"):  # results of earlier runs stay behind
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    (root / "dvc.lock").unlink(missing_ok=True)
    (root / "params.yaml").write_text(f"profile: {profile}\n")
    write_grid(root)
    for args in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "checkout"]):
        subprocess.run(args, cwd=root, check=True)
    return root
