"""phase1 nodes; the grid machinery shared with phase2 is in ``dermascreen.pipelines.runs``."""

from __future__ import annotations

from dermascreen.pipelines.runs import train_run


def train_grid_run(train_set: dict, val_set: dict, normalization: dict, class_weights: dict,
                   architecture: dict, training: dict, state_dir: str, dvclive_dir: str, weights_dir: str,
                   encoder: dict | None = None, *, run: str, class_weights_name: str):
    """One architecture x class-weight run of the grid (``encoder``, ``weights_dir``: see ``train_run``);
    the architecture's optional ``training`` keys override the grid's for its runs."""
    spec = {"run": run, "model": architecture["model"], "lr": architecture["lr"],
            "batch_size": architecture["batch_size"], "class_weights": class_weights_name,
            "training": architecture.get("training", {})}
    return train_run(train_set, val_set, normalization, class_weights, spec, training, state_dir,
                     encoder=encoder, weights_dir=weights_dir, dvclive_dir=dvclive_dir)
