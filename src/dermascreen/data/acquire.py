"""Put DermaMNIST at its raw-data path, and say where it came from.

Sources, in order: the file already at the destination; a local file named by the caller
(``DERMAMNIST_NPZ`` in the project's configuration); the official MedMNIST file from Zenodo,
md5-checked. The official file is recognised by its md5 from ``medmnist.INFO``; any other file
is a non-official copy and is reported as such (its arrays are validated downstream).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from dermascreen.data.errors import DataAcquisitionError
from dermascreen.io import atomic_write
from dermascreen.data.medmnist_info import dataset_info

logger = logging.getLogger(__name__)

SIZES = (28, 64, 128, 224)
DOWNLOAD_TIMEOUT_S = 10


@dataclass(frozen=True)
class Provenance:
    """Where the raw file came from; travels into every report."""

    path: str
    size: int
    md5: str
    official: bool
    official_md5: str
    source: str  # "existing file", "local file <path>" or "download <url>"

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        kind = "official MedMNIST file" if self.official else "NON-OFFICIAL copy"
        return f"{Path(self.path).name} ({kind}, md5 {self.md5}, {self.size}x{self.size}, from {self.source})"


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def official_source(size: int) -> tuple[str, str]:
    """(url, md5) of the official ``dermamnist[_size].npz`` from ``medmnist.INFO``."""
    if size not in SIZES:
        raise ValueError(f"image size must be one of {SIZES}, got {size}")
    info = dataset_info()
    suffix = "" if size == 28 else f"_{size}"
    return info[f"url{suffix}"], info[f"MD5{suffix}"]


def acquire(destination: str | os.PathLike, size: int, local_file: str | None = None) -> Provenance:
    """Make sure DermaMNIST at ``size`` is at ``destination`` and return its provenance."""
    destination = Path(destination)
    url, official_md5 = official_source(size)
    if destination.exists():
        source = "existing file"
    elif local_file:
        local = Path(local_file).expanduser()
        if not local.is_file():
            raise DataAcquisitionError(
                f"DERMAMNIST_NPZ points at {local}, which is not a file. "
                "Set it to a DermaMNIST .npz (e.g. dermamnist.npz from MedMNIST) or unset it to download."
            )
        _atomic_copy(local, destination)
        source = f"local file {local}"
    else:
        _download(url, official_md5, destination)
        source = f"download {url}"
    md5 = md5sum(destination)
    provenance = Provenance(
        path=_display_path(destination), size=size, md5=md5, official=md5 == official_md5,
        official_md5=official_md5, source=source,
    )
    if provenance.official:
        logger.info("DermaMNIST: %s", provenance.describe())
    else:
        logger.warning(
            "DermaMNIST: %s; the official file has md5 %s. Figures from it are close to, not "
            "equal to, figures on the official file.", provenance.describe(), official_md5,
        )
    return provenance


def _display_path(path: Path) -> str:
    """Project-relative where possible, so provenance reads the same on every machine."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _atomic_copy(source: Path, destination: Path) -> None:
    with atomic_write(destination) as tmp:
        shutil.copyfile(source, tmp)


def _download(url: str, expected_md5: str, destination: Path) -> None:
    """One attempt with a short timeout: offline machines fail in seconds, not minutes."""
    try:
        logger.info("Downloading %s", url)
        with atomic_write(destination) as tmp:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
            md5 = md5sum(tmp)
            if md5 != expected_md5:
                raise DataAcquisitionError(
                    f"downloaded {url} has md5 {md5}, expected {expected_md5}; not using it"
                )
    except (urllib.error.URLError, socket.timeout, ConnectionError) as error:
        raise DataAcquisitionError(
            f"DermaMNIST is not at {destination} and could not be downloaded from {url} "
            f"({getattr(error, 'reason', error)}). Without internet, provide the file yourself: "
            "set DERMAMNIST_NPZ=/path/to/dermamnist.npz (the MedMNIST file, or a faithful copy "
            f"with the same keys), or copy it to {destination}."
        ) from None
