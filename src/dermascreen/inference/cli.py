"""``dermascreen-predict``: calibrated malignant probability and decision for your own images.

    dermascreen-predict photos/ extra.jpg -o predictions.csv

Reads the final model phase3 exports (``data/06_models/phase3/final.pt`` under the project root,
wherever the command runs from): the phase2 best checkpoint with the calibrator and the
operating threshold phase3 fitted on validation. Without ``--output`` it prints one line per
image (calibrated probability, decision); with it, it writes one row per image to a CSV or JSON
file. Exit status: 0 when every file was scored or skipped with a reason, 1 when no image at all
could be scored, 2 when the arguments, the model or the threshold cannot be used. Every error is
one line on stderr naming the problem and its fix.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from pathlib import Path

import pandas as pd
import torch

from dermascreen.inference.model import CheckpointError, model_from_checkpoint
from dermascreen.inference.preprocess import IMAGE_SUFFIXES
from dermascreen.inference.predict import FORMATS, NO_CALIBRATION, predict_files, write_predictions
from dermascreen.training.data import normalization_tensors
from dermascreen.training.device import DEVICES
from dermascreen.training.fit import show_progress

DEFAULT_MODEL = Path("data/06_models/phase3/final.pt")  # under the project root
BUILD_MODEL = "build it with 'dvc repro phase3' (docs/phase3.md) or pass --model FILE"
OUR_MODEL = f"pass --model with the final.pt that phase3 exports ({DEFAULT_MODEL})"


class UsageError(Exception):
    """Bad arguments, model or threshold: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, as every other error, instead of argparse's usage block
        raise UsageError(f"{message} (see dermascreen-predict --help)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="dermascreen-predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="write one row per image to this .csv or .json file (default: a table on stdout)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="format of --output (default: from its suffix, .csv or .json)")
    parser.add_argument("--model", type=Path, default=None,
                        help=f"model file (default: {DEFAULT_MODEL} under the project root)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="use this threshold (on the calibrated probability) instead of the model's")
    parser.add_argument("--batch-size", type=positive_int, default=256,
                        help="images decoded and scored at once (default %(default)s)")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="(default %(default)s)")
    parser.add_argument("--size", type=positive_int, default=None,
                        help="image side the model takes; only the model's own image_size is accepted "
                             "(default: that side, from the model)")
    parser.add_argument("--progress", choices=("auto", "true", "false"), default="auto",
                        help="progress bar on stderr; auto: when stderr is a terminal (default)")
    return parser.parse_args(argv)


def project_root(package_file: Path = Path(__file__)) -> Path:
    """The folder whose pyproject.toml names this project: above the package (a source checkout or
    an editable install), else above the working directory (an installed package run in a checkout)."""
    for start in (package_file.resolve().parent, Path.cwd()):
        for folder in (start, *start.parents):
            if _is_project(folder / "pyproject.toml"):
                return folder
    raise UsageError(f"no dermascreen project (pyproject.toml) above {package_file.parent} or the working "
                     "directory, so no default model: pass --model FILE")


def _is_project(pyproject: Path) -> bool:
    try:
        return tomllib.loads(pyproject.read_text()).get("project", {}).get("name") == "dermascreen"
    except (OSError, tomllib.TOMLDecodeError):
        return False


def output_format(args: argparse.Namespace) -> str | None:
    """``--format``, else the suffix of ``--output``; None for the table on stdout."""
    if args.output is None:
        if args.format is not None:
            raise UsageError("--format applies to --output FILE; add --output or leave out --format")
        return None
    suffix = args.output.suffix.lower().lstrip(".")
    if args.format is None and suffix not in FORMATS:
        raise UsageError(f"--output {args.output}: cannot tell the format from its suffix; name it .csv or .json, "
                         "or pass --format csv|json")
    return args.format or suffix


def check_device(name: str) -> None:
    """Fail before any work: torch would otherwise raise deep inside the first batch."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA GPU on this machine; use --device cpu (or auto)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: the MPS backend is not available here; use --device cpu (or auto)")


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"model file {path} not found: {BUILD_MODEL}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types (KeyError, EOFError, UnpicklingError...), mostly cryptic
        raise UsageError(f"{path} is not a model file torch can load safely ({type(error).__name__}): "
                         f"{OUR_MODEL}") from error


def load_model(path: Path) -> tuple[dict, torch.nn.Module]:
    """The checkpoint and its binary model; a file that is not one of ours is a UsageError."""
    checkpoint = load_checkpoint(path)
    try:
        model = model_from_checkpoint(checkpoint, str(path))
    except CheckpointError as error:  # its message names the file
        raise UsageError(f"{error}: {OUR_MODEL}") from error
    try:
        normalization_tensors(checkpoint["normalization"], torch.device("cpu"))
    except ValueError as error:
        raise UsageError(f"{path}: {error}: {OUR_MODEL}") from error
    classes = checkpoint["config"].get("num_classes", 2)
    if classes != 2:
        raise UsageError(f"{path}: a {classes}-class model; inference needs the binary (benign, malignant) "
                         f"model: {OUR_MODEL}")
    return checkpoint, model


def resolve_size(args: argparse.Namespace, checkpoint: dict) -> int:
    """The side the model was trained on (its config's ``image_size``; the architectures' default is 28):
    any other side would feed it images unlike its training data, or not fit its layers at all."""
    trained = int(checkpoint["config"].get("image_size", 28))
    if args.size is not None and args.size != trained:
        raise UsageError(f"--size {args.size}: this model takes {trained}x{trained} images (the image_size "
                         f"it was trained on); use --size {trained} or leave --size out")
    return trained


def resolve_threshold(args: argparse.Namespace, checkpoint: dict, model_path: Path) -> float:
    """The explicit ``--threshold``, else the operating threshold the exported model holds."""
    if args.threshold is not None:
        if not 0.0 <= args.threshold <= 1.0:
            raise UsageError(f"--threshold must be in [0, 1], got {args.threshold}")
        return args.threshold
    try:
        return float(checkpoint["operating_point"]["threshold"])
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"{model_path} holds no operating threshold ({error!r}): use the model phase3 "
                         f"exports ({DEFAULT_MODEL}) or pass --threshold") from error


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        args = parse_args(argv)
        file_format = output_format(args)
        check_device(args.device)
        model_path = args.model or project_root() / DEFAULT_MODEL
        checkpoint, model = load_model(model_path)
        size = resolve_size(args, checkpoint)
        threshold = resolve_threshold(args, checkpoint, model_path)
    except UsageError as error:
        print(f"dermascreen-predict: {error}", file=sys.stderr)
        return 2
    calibrator = checkpoint.get("calibration", NO_CALIBRATION)
    predictions = predict_files(model, checkpoint["normalization"], args.inputs, threshold, args.batch_size,
                                args.device, size, calibrator, show_progress(_flag(args.progress)))
    if file_format is None:
        print_table(predictions)
    else:
        try:
            write_predictions(predictions, args.output, file_format)
        except OSError as error:
            print(f"dermascreen-predict: cannot write --output {args.output} ({error.strerror or error}): "
                  "choose a writable path", file=sys.stderr)
            return 2
    return report(predictions, calibrator, threshold, args.output)


def _flag(progress: str) -> bool | str:
    return progress if progress == "auto" else progress == "true"


def print_table(predictions: pd.DataFrame) -> None:
    for row in predictions[predictions["status"] == "ok"].itertuples():
        print(f"{row.file}\tp(malignant) {row.p_malignant:.4f}\t{row.decision}")


def report(predictions: pd.DataFrame, calibrator: dict, threshold: float, output: Path | None) -> int:
    """Summary and skipped files on stderr; the exit status."""
    scored = int((predictions["status"] == "ok").sum())
    skipped = len(predictions) - scored
    print(f"{scored} image(s) scored, {skipped} skipped, calibration {calibrator['method']}, "
          f"threshold {threshold:.4f}" + (f": {output}" if output is not None else ""), file=sys.stderr)
    for row in predictions[predictions["status"] != "ok"].itertuples():
        print(f"  skipped {row.file}: {row.status.removeprefix('skipped: ')}", file=sys.stderr)
    if predictions.empty:
        print(f"dermascreen-predict: no image files in the inputs (folders are searched for "
              f"{' '.join(sorted(IMAGE_SUFFIXES))}): name image files or folders that hold them", file=sys.stderr)
    elif not scored:
        print("dermascreen-predict: no image could be scored (reasons above): pass readable image files",
              file=sys.stderr)
    return 0 if scored else 1


if __name__ == "__main__":
    sys.exit(main())
