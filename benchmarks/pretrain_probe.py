"""Pretrain one method for a number of epochs at a profile's sizes, then probe its encoder on validation.

Needs ``kedro run --pipelines data_engineering --env quick`` first (data/05_model_input/). Builds the
method as the pipeline does (``pretraining.methods.build_pretrainer`` on the profile's
``pretraining`` parameters, pretraining seed 42 unless ``--seed``), trains it with
``engine.run_pretraining`` for ``--epochs`` (no state kept: every call trains from the start) and
prints each epoch's losses, then the k-NN and linear probes of the encoder on validation, beside
those of the untrained encoder the method started from (epoch 0, the report's first probe row).
For the methods that learn their masks (MLO-MAE, AutoMAE) it also prints where the masks of the
trained method fall on 512 training images: the share of images that mask each patch position
(random masking gives the mask ratio everywhere). SemMAE and AutoMAE need ``--source`` (an MAE
encoder checkpoint, e.g. data/06_models/pretraining/mae/encoder.pt). Never reads test.

    PYTHONPATH=src .venv/bin/python benchmarks/pretrain_probe.py --method mlo_mae --epochs 6 \
        [--env quick] [--seed 42] [--threads 2] [--options '{"mask_lr": 1e-4}'] [--source PATH]
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
from dermascreen.datasets.npz_dataset import NpzDataset
from dermascreen.datasets.torch_dataset import TorchDataset
from dermascreen.models.vit import encoder_from_checkpoint
from dermascreen.pipelines.pretraining.nodes import initial_autoencoder, probe_initial_encoder
from dermascreen.pretraining.engine import run_pretraining
from dermascreen.pretraining.mae import mask_from_scores
from dermascreen.pretraining.methods import GUIDED, METHODS, build_pretrainer
from dermascreen.pretraining.mlo_mae import MLOMAEPretrainer
from dermascreen.pretraining.probe import probe_scores
from dermascreen.training.data import normalization_tensors, to_model_input
from dermascreen.training.device import resolve_device, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
MODEL_INPUT = ROOT / "data" / "05_model_input"
LEARNED_MASKS = ("mlo_mae", "automae")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--env", default="quick")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--options", type=json.loads, default={},
                        help="JSON of method options, each replacing the profile's key")
    parser.add_argument("--source", type=Path, help="SemMAE / AutoMAE: the MAE encoder checkpoint guiding the masks")
    args = parser.parse_args()
    if args.method in GUIDED and args.source is None:
        parser.error(f"--method {args.method} needs --source (an MAE encoder checkpoint)")
    torch.set_num_threads(args.threads)
    params = OmegaConfigLoader(str(ROOT / "conf"), env=args.env,
                               **settings.CONFIG_LOADER_ARGS)["parameters"]["pretraining"]
    shared = params["shared"]
    device = resolve_device(shared["device"])
    pretrain = {**shared["pretrain"], "seed": args.seed,
                "precision": resolve_precision(device, shared["pretrain"]["precision"])}
    options = {**params[args.method]["options"], **args.options}
    train, val = (NpzDataset(str(MODEL_INPUT / f"{split}.npz")).load() for split in ("train", "val"))
    normalization = json.loads((MODEL_INPUT / "normalization.json").read_text())

    untrained = probe_initial_encoder(train, val, normalization, shared, seed=args.seed)
    # the pipeline's order (nodes._pretrain): seed, autoencoder, source encoder, pretrainer
    mae = initial_autoencoder(shared, args.seed, pretrain["mask_ratio"], pretrain["norm_pix_loss"], device)
    source = None if args.source is None else encoder_from_checkpoint(
        TorchDataset(str(args.source)).load(), str(args.source)).to(device)
    trainer = build_pretrainer(args.method, mae, pretrain, options, train, normalization, source)
    if args.method in LEARNED_MASKS:
        print_masks("epoch 0", trainer, mae, train["images"][:512], normalization)
    start = time.time()
    history, _ = run_pretraining(trainer, train, normalization, epochs=args.epochs, batch_size=pretrain["batch_size"],
                                 warmup_epochs=pretrain["warmup_epochs"], seed=args.seed,
                                 max_batches=pretrain["max_batches"])
    minutes = (time.time() - start) / 60
    for row in history:
        print(f"epoch {int(row['epoch']):2d} " + " ".join(f"{key} {value:.4f}" for key, value in row.items()
                                                       if key not in ("epoch", "seconds", "images_per_s")))
    trained = probe_scores(mae.encoder, train, val, normalization, args.seed)
    print(f"{args.method}, {args.epochs} epochs ({minutes:.1f} min of pretraining), probes on validation:")
    for name, scores in (("epoch 0 (untrained)", untrained), (f"epoch {args.epochs}", trained)):
        print(f"  {name:20s} " + " ".join(f"{key} {100 * value:.2f}" for key, value in scores.items()))
    if args.method in LEARNED_MASKS:
        print_masks(f"epoch {args.epochs}", trainer, mae, train["images"][:512], normalization)


def print_masks(when: str, trainer, mae, images: np.ndarray, normalization: dict) -> None:
    """The share of ``images`` whose mask covers each patch position, as the patch grid; for MLO-MAE also
    the mean masking probability over the masked patches (level 1's loss weights). Leaves the trainer's
    generator and mode as they were, so the run trains as the pipeline's."""
    device = trainer.device
    mean, std = normalization_tensors(normalization, device)
    generator_state = trainer.generator.get_state()
    trainer.train(False)
    with torch.no_grad():
        batch = to_model_input(torch.from_numpy(images).to(device), mean, std, channels_last=False)
        scores = trainer.mask_scores(batch, 1.0)
        mask = mask_from_scores(scores, mae.n_masked)[2]  # (B, N), 1 = masked, the MAE's own tie-breaking
        weights = trainer.probabilities(batch) if isinstance(trainer, MLOMAEPretrainer) else None
    trainer.train(True)
    trainer.generator.set_state(generator_state)
    share = mask.mean(0).cpu().numpy()
    grid = int(len(share) ** 0.5)
    print(f"{when}: share of {len(images)} training images masking each patch position ({grid}x{grid}; random "
          f"masking: {mae.n_masked / len(share):.2f} everywhere); positions masked in > 95%: {(share > 0.95).sum()}, "
          f"in < 5%: {(share < 0.05).sum()}")
    print(np.array2string(share.reshape(grid, grid), precision=2, floatmode="fixed"))
    if weights is not None:
        print(f"{when}: mean masking probability over the masked patches (level 1's weights): "
              f"{float((weights * mask).sum() / mask.sum()):.3f}")


if __name__ == "__main__":
    main()
