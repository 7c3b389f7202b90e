"""Score image files with the final model: calibrated malignant probability and decision per file.

Files are decoded and scored in batches, so memory stays bounded however many images a folder
holds. A file that cannot be decoded gets a row with ``status`` ``"skipped: <reason>"`` and an
empty probability; the batch carries on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from dermascreen.evaluation.calibration import apply_calibrator
from dermascreen.io import atomic_write
from dermascreen.inference.preprocess import UNREADABLE, background_colour, iter_image_files, load_image
from dermascreen.training.fit import predict_proba

COLUMNS = ("file", "p_malignant", "p_malignant_uncalibrated", "decision", "threshold", "status")
NO_CALIBRATION = {"method": "none"}
FORMATS = ("csv", "json")


def predict_files(model: torch.nn.Module, normalization: dict, inputs: Iterable[str | Path],
                  threshold: float, batch_size: int = 256, device: str = "cpu", size: int = 28,
                  calibrator: dict = NO_CALIBRATION, progress: bool = False) -> pd.DataFrame:
    """One row per file found in ``inputs`` (files and folders), in the order they were found.

    ``p_malignant`` is the model's probability mapped by ``calibrator`` (phase3's, fitted on
    validation); ``threshold`` applies to it. ``progress``: a bar on stderr, one step per file."""
    files = list(iter_image_files(inputs))  # paths only: the bar needs the total
    background = background_colour(normalization)
    rows: list[dict] = []
    pending: list[tuple[dict, np.ndarray]] = []
    for path in tqdm(files, unit="image", disable=not progress):
        row = {"file": str(path), "p_malignant": np.nan, "p_malignant_uncalibrated": np.nan, "decision": "",
               "threshold": float(threshold), "status": "ok"}
        rows.append(row)
        try:
            pending.append((row, load_image(path, size, background)))
        except UNREADABLE as error:
            row["status"] = f"skipped: unreadable image ({_one_line(error)})"
        if len(pending) == batch_size:
            _score(model, normalization, pending, threshold, batch_size, device, calibrator)
            pending = []
    if pending:
        _score(model, normalization, pending, threshold, batch_size, device, calibrator)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _one_line(error: Exception) -> str:
    # The CSV and the CLI report give one line per file, whatever the decoder's message holds.
    return " ".join(str(error).split()) or type(error).__name__


def _score(model: torch.nn.Module, normalization: dict, pending: list[tuple[dict, np.ndarray]],
           threshold: float, batch_size: int, device: str, calibrator: dict) -> None:
    images = np.stack([image for _, image in pending])  # (B, H, W, 3) uint8
    proba = predict_proba(model, images, normalization, batch_size, device)  # (B, C)
    if proba.shape[1] != 2:
        raise ValueError(f"the model has {proba.shape[1]} outputs; inference needs the binary "
                         "(benign, malignant) model")
    calibrated = apply_calibrator(calibrator, proba[:, 1])
    for (row, _), raw, p in zip(pending, proba[:, 1], calibrated):
        row["p_malignant"], row["p_malignant_uncalibrated"] = float(p), float(raw)
        row["decision"] = "malignant" if p >= threshold else "benign"


def write_predictions(predictions: pd.DataFrame, path: str | Path, file_format: str = "csv") -> None:
    """CSV, or JSON (a list of row objects, null for a skipped file's probabilities), written
    atomically: a crash never leaves half a predictions file."""
    if file_format not in FORMATS:
        raise ValueError(f"predictions format must be one of {FORMATS}, got {file_format!r}")
    with atomic_write(path, suffix=f".{file_format}") as tmp:
        if file_format == "csv":
            predictions.to_csv(tmp, index=False)
        else:  # json.dumps, not DataFrame.to_json, which writes "\/" in every path
            records = predictions.astype(object).where(predictions.notna(), None).to_dict(orient="records")
            tmp.write_text(json.dumps(records, indent=2) + "\n")
