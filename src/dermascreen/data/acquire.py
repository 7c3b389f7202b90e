"""Put DermaMNIST at its raw-data path, and say where it came from.

Sources, in order: a local file named by the caller (``DERMAMNIST_NPZ`` in the project's
configuration), which replaces a different copy at the destination; the file already at the
destination; the official MedMNIST file from Zenodo, md5-checked. A local file is copied to a
temporary name, validated, and renamed only once it passes: a refused file never sticks. The
official file is recognised by its md5 from ``medmnist.INFO``; any other file is a non-official
copy and is reported as such.

``python -m dermascreen.data.acquire RAW_FILE --size N`` is dvc.yaml's ``raw_data`` stage, whose
deps are the acquisition code only: changing the rest of data_engineering never acquires again.
``python -m dermascreen.data.acquire RAW_FILE --drop-replaced`` runs before ``dvc repro``
(``make all``): DVC cannot see ``DERMAMNIST_NPZ``, so when it names a different file than
``RAW_FILE`` the copy is removed and DVC reruns ``raw_data``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from dermascreen.data.errors import DataAcquisitionError, DataError
from dermascreen.data.medmnist_info import dataset_info
from dermascreen.data.validate import read_raw_npz, validate_raw
from dermascreen.io import atomic_write

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
    source: str  # "existing file", "local file <file name>" or "download <url>"

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
    local = _local_file(local_file)
    if local is not None:
        if not destination.exists():
            _install(local, destination, size)
        elif (local_md5 := md5sum(local)) != (copy_md5 := md5sum(destination)):
            logger.info("DERMAMNIST_NPZ=%s (md5 %s) differs from %s (md5 %s): using it; the copy "
                        "is replaced once the new file passes validation",
                        local, local_md5, _display_path(destination), copy_md5)
            _install(local, destination, size)
        source = f"local file {local.name}"  # the name: reports and committed files hold no machine path
    elif destination.exists():
        source = "existing file"
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


def _local_file(local_file: str | None) -> Path | None:
    if not local_file:
        return None
    local = Path(local_file).expanduser()
    if not local.is_file():
        raise DataAcquisitionError(
            f"DERMAMNIST_NPZ points at {local}, which is not a file. "
            "Fix: set it to a DermaMNIST .npz (e.g. dermamnist.npz from MedMNIST) or unset it to download."
        )
    return local


def _install(local: Path, destination: Path, size: int) -> None:
    """Copy to a temporary name beside ``destination``, validate the copy, then rename it: a file
    that fails validation never reaches ``destination``, and a copy already there stays as it was."""
    existed = destination.exists()
    with atomic_write(destination) as tmp:
        shutil.copyfile(local, tmp)
        try:
            validate_raw(read_raw_npz(tmp, name=local), size, str(local))
        except DataError as error:
            kept = "was left as it was" if existed else "was not created"
            raise DataAcquisitionError(
                f"DERMAMNIST_NPZ file refused: {error}. {_display_path(destination)} {kept}. "
                f"Fix: set DERMAMNIST_NPZ to the DermaMNIST {size}x{size} .npz from MedMNIST (or a "
                "faithful copy with the same keys, shapes, uint8 images and split sizes), or unset "
                "it to download the official file."
            ) from None


def _display_path(path: Path) -> str:
    """Project-relative where possible, so provenance reads the same on every machine."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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


def drop_replaced_copy(destination: str | os.PathLike, local_file: str | None) -> bool:
    """Remove ``destination`` when ``local_file`` is set and differs from it; whether it did.

    ``dvc repro`` decides from ``dvc.lock`` and cannot see ``DERMAMNIST_NPZ``: the copy matches
    the lock, so a changed ``DERMAMNIST_NPZ`` would be ignored. Without the copy DVC reruns the
    stage, which validates and installs the new file; a copy DVC produced stays in its cache.
    """
    destination, local = Path(destination), _local_file(local_file)
    if local is None or not destination.exists() or md5sum(local) == md5sum(destination):
        return False
    logger.info("DERMAMNIST_NPZ=%s differs from %s: removing the copy so that `dvc repro` "
                "acquires the new file (a copy DVC produced stays in its cache)", local, destination)
    destination.unlink()
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m dermascreen.data.acquire RAW_FILE (--size N | --drop-replaced)``, with ``DERMAMNIST_NPZ``."""
    parser = argparse.ArgumentParser(prog="python -m dermascreen.data.acquire",
                                     description="Put DermaMNIST at RAW_FILE (dvc.yaml's raw_data stage), or drop "
                                                 "a copy that differs from DERMAMNIST_NPZ (before dvc repro).")
    parser.add_argument("raw_file", help="the raw-data path of dvc.yaml, e.g. data/01_raw/dermamnist_28.npz")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--size", type=int, choices=SIZES, help="acquire the file at this image size")
    mode.add_argument("--drop-replaced", action="store_true", help=drop_replaced_copy.__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="dermascreen: %(message)s")
    local_file = os.environ.get("DERMAMNIST_NPZ")
    try:
        if args.drop_replaced:
            drop_replaced_copy(args.raw_file, local_file)
        else:
            acquire(args.raw_file, args.size, local_file)
    except DataAcquisitionError as error:
        print(f"dermascreen: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
