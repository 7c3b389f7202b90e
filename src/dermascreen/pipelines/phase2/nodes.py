"""phase2 nodes; the grid machinery shared with phase1 is in ``dermascreen.pipelines.runs``."""

from __future__ import annotations

from dermascreen.pipelines.runs import train_run


def strategy_spec(phase1_best: dict, strategy: dict, run: str) -> dict:
    """The winner's model, lr, batch size, class weights and own training keys, with the strategy's overrides."""
    return {
        "run": run,
        "model": {**phase1_best["model"], **strategy.get("model", {})},
        "lr": strategy.get("lr", phase1_best["training"]["lr"]),
        "batch_size": strategy.get("batch_size", phase1_best["training"]["batch_size"]),
        "class_weights": phase1_best["class_weights_name"],
        "training": {**phase1_best.get("training_overrides", {}), **strategy.get("training", {})},
    }


def train_strategy(train_set: dict, val_set: dict, normalization: dict, class_weights: dict,
                   phase1_best: dict, phase1_best_model: dict, strategy: dict, training: dict,
                   state_dir: str, dvclive_dir: str, *, run: str, seed: int):
    """Fine-tune the phase1 winner's weights with one strategy and one training seed, which replaces
    the grid's ``training.seed`` (shuffling, augmentation, dropout; the weights start as the winner's)."""
    spec = strategy_spec(phase1_best, strategy, run)
    return train_run(train_set, val_set, normalization, class_weights, spec, {**training, "seed": seed},
                     state_dir, init=phase1_best_model, dvclive_dir=dvclive_dir)
