"""One 7-class fine-tuning run of the pretraining comparison, to choose its budget on validation.

Needs ``kedro run --pipelines data_engineering --env quick`` first (data/05_model_input/). Trains
the ViT from scratch or from a pretrained encoder (``--model vit [--encoder PATH]``), or the CNN
reference (``--model cnn [--widths ...]``), with the profile's ``pretraining.finetune`` recipe
(conf/<env>, soft-merged over base) through the same ``finetune_runs`` as the pipeline, with
``--epochs``, ``--class-weight-power`` (and ``--precision``, ``--training``) replacing the profile's, then prints
each epoch's validation accuracy, balanced accuracy and training seconds, and the epoch the
recipe's ``monitor`` keeps. Never reads test.

    PYTHONPATH=src .venv/bin/python benchmarks/multiclass_run.py --model vit --epochs 10 \
        --class-weight-power 0.25 [--env quick] [--seed 0] [--threads 2] [--precision bf16]
        [--encoder PATH | --widths 32 64 128] [--training '{"lr": 0.002}']
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from kedro.config import OmegaConfigLoader

from dermascreen import settings
from dermascreen.datasets.torch_dataset import TorchDataset
from dermascreen.pretraining.finetune import (balanced_class_weights, finetune_runs, supervised_classifier,
                                              vit_classifier)

ROOT = Path(__file__).resolve().parents[1]
MODEL_INPUT = ROOT / "data" / "05_model_input"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("vit", "cnn"), required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--class-weight-power", type=float, required=True)
    parser.add_argument("--env", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="replacing the profile's")
    parser.add_argument("--widths", type=int, nargs="+", help="--model cnn: stage widths replacing the profile's")
    parser.add_argument("--training", type=json.loads, default={},
                        help="JSON of training keys, each replacing the recipe's whole key (an augment dict gives "
                        "every augmentation setting); epochs and patience come from --epochs")
    parser.add_argument("--encoder", type=Path, help="--model vit: a pretrained encoder checkpoint "
                        "(data/06_models/pretraining/<method>/encoder.pt) instead of no pretraining")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = OmegaConfigLoader(str(ROOT / "conf"), env=args.env,
                               **settings.CONFIG_LOADER_ARGS)["parameters"]["pretraining"]
    shared, finetune = params["shared"], params["finetune"]
    if args.model == "vit":
        encoder = TorchDataset(str(args.encoder)).load() if args.encoder else None  # the pipeline's loader
        build, training = vit_classifier(encoder, shared["encoder"], finetune["head"]), finetune["training"]
    else:
        model = finetune["cnn"]["model"]
        build = supervised_classifier({**model, "widths": args.widths} if args.widths else model)
        training = finetune["cnn"]["training"]
    training = {**training, **args.training, "epochs": args.epochs, "patience": args.epochs, "progress": False,
                **({"precision": args.precision} if args.precision else {})}
    train, val = (dict(np.load(MODEL_INPUT / f"{split}.npz")) for split in ("train", "val"))
    normalization = json.loads((MODEL_INPUT / "normalization.json").read_text())
    start = time.time()
    [run] = finetune_runs(build, train, val, normalization, training, [args.seed], args.model,
                          class_weights=balanced_class_weights(train["labels"], args.class_weight_power))
    for row in run["history"]:
        print(f"epoch {row['epoch']:2d} val_accuracy {row['val_accuracy']:.4f} "
              f"val_balanced_accuracy {row['val_balanced_accuracy']:.4f} train {row['train_time_s']:.0f}s")
    [kept] = [row for row in run["history"] if row["epoch"] == run["best_epoch"]]
    print(f"kept epoch {run['best_epoch']} (monitor {training['monitor']}): val_accuracy {kept['val_accuracy']:.4f} "
          f"val_balanced_accuracy {kept['val_balanced_accuracy']:.4f} | {(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
