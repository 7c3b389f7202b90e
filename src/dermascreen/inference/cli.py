"""``dermascreen-predict``: malignant probability and decision for your own images.

    dermascreen-predict photos/ extra.jpg -o predictions.csv

Reads the final model (``data/06_models/phase2/best.pt``) and the threshold phase3 calibrated
for it (``data/07_model_output/phase3/threshold.json``), relative to the project root by
default. Exit status: 0 when every file was scored or skipped with a reason, 1 when no image
at all could be scored, 2 when the model or threshold cannot be used.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from dermascreen.inference.model import CheckpointError, model_from_checkpoint, state_dict_fingerprint
from dermascreen.inference.predict import predict_files, write_predictions

DEFAULT_MODEL = Path("data/06_models/phase2/best.pt")
DEFAULT_THRESHOLD_FILE = Path("data/07_model_output/phase3/threshold.json")


class UsageError(Exception):
    """Bad model, threshold or arguments: reported in one line, exit status 2."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dermascreen-predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument("-o", "--output", default="predictions.csv", help="CSV to write (default %(default)s)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="checkpoint (default %(default)s)")
    parser.add_argument("--threshold-file", type=Path, default=DEFAULT_THRESHOLD_FILE,
                        help="phase3 threshold JSON (default %(default)s)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="use this threshold instead of the calibrated one")
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
    """The explicit ``--threshold``, else the calibrated one, checked to belong to this model."""
    if args.threshold is not None:
        if not 0.0 <= args.threshold <= 1.0:
            raise UsageError(f"--threshold must be in [0, 1], got {args.threshold}")
        return args.threshold
    path = args.threshold_file
    if not path.is_file():
        raise UsageError(f"threshold file {path} not found: run phase3 or pass --threshold")
    try:
        calibrated = json.loads(path.read_text())
        threshold = float(calibrated["threshold"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise UsageError(f"{path}: not a phase3 threshold file ({error!r})") from error
    expected = calibrated.get("model_fingerprint")
    if expected and expected != state_dict_fingerprint(checkpoint["state_dict"]):
        raise UsageError(f"{path} was calibrated for another model than {args.model}; "
                         "rerun phase3 or pass --threshold")
    return threshold


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
    predictions = predict_files(model, checkpoint["normalization"], args.inputs, threshold,
                                args.batch_size, args.device, size)
    write_predictions(predictions, args.output)
    scored = int((predictions["status"] == "ok").sum())
    skipped = len(predictions) - scored
    print(f"{scored} image(s) scored, {skipped} skipped, threshold {threshold:.4f}: {args.output}", file=sys.stderr)
    for row in predictions[predictions["status"] != "ok"].itertuples():
        print(f"  skipped {row.file}: {row.status.removeprefix('skipped: ')}", file=sys.stderr)
    return 0 if scored else 1


if __name__ == "__main__":
    sys.exit(main())
