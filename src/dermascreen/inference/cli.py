"""``dermascreen-predict``: calibrated malignant probability and decision for your own images.

    dermascreen-predict photos/ extra.jpg -o predictions.csv

Reads the final model phase3 exports (``data/06_models/phase3/final.pt``, relative to the project
root by default): the phase2 best checkpoint with the calibrator and the operating threshold
phase3 fitted on validation. Prints one line per image (calibrated probability, decision) and
writes the CSV. Exit status: 0 when every file was scored or skipped with a reason, 1 when no
image at all could be scored, 2 when the model or threshold cannot be used.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from dermascreen.inference.model import CheckpointError, model_from_checkpoint
from dermascreen.inference.predict import NO_CALIBRATION, predict_files, write_predictions

DEFAULT_MODEL = Path("data/06_models/phase3/final.pt")


class UsageError(Exception):
    """Bad model, threshold or arguments: reported in one line, exit status 2."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dermascreen-predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument("-o", "--output", default="predictions.csv", help="CSV to write (default %(default)s)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="checkpoint (default %(default)s)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="use this threshold (on the calibrated probability) instead of the model's")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default %(default)s)")
    parser.add_argument("--size", type=int, default=None,
                        help="image side fed to the model (default: the config's image_size, else 28)")
    return parser.parse_args(argv)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"model checkpoint {path} not found: run phase2 (kedro run) or pass --model")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt file
        raise UsageError(f"{path}: not a readable torch checkpoint ({error})") from error


def resolve_threshold(args: argparse.Namespace, checkpoint: dict) -> float:
    """The explicit ``--threshold``, else the operating threshold the exported model holds."""
    if args.threshold is not None:
        if not 0.0 <= args.threshold <= 1.0:
            raise UsageError(f"--threshold must be in [0, 1], got {args.threshold}")
        return args.threshold
    try:
        return float(checkpoint["operating_point"]["threshold"])
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"{args.model} holds no operating threshold ({error!r}): use the model phase3 "
                         f"exports ({DEFAULT_MODEL}) or pass --threshold") from error


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        checkpoint = load_checkpoint(args.model)
        model = model_from_checkpoint(checkpoint, str(args.model))
        threshold = resolve_threshold(args, checkpoint)
    except (UsageError, CheckpointError) as error:
        print(f"dermascreen-predict: {error}", file=sys.stderr)
        return 2
    size = args.size or int(checkpoint["config"].get("image_size", 28))
    calibrator = checkpoint.get("calibration", NO_CALIBRATION)
    predictions = predict_files(model, checkpoint["normalization"], args.inputs, threshold,
                                args.batch_size, args.device, size, calibrator)
    write_predictions(predictions, args.output)
    for row in predictions[predictions["status"] == "ok"].itertuples():
        print(f"{row.file}\tp(malignant) {row.p_malignant:.4f}\t{row.decision}")
    scored = int((predictions["status"] == "ok").sum())
    skipped = len(predictions) - scored
    print(f"{scored} image(s) scored, {skipped} skipped, calibration {calibrator['method']}, "
          f"threshold {threshold:.4f}: {args.output}", file=sys.stderr)
    for row in predictions[predictions["status"] != "ok"].itertuples():
        print(f"  skipped {row.file}: {row.status.removeprefix('skipped: ')}", file=sys.stderr)
    return 0 if scored else 1


if __name__ == "__main__":
    sys.exit(main())
