from kedro.pipeline import Pipeline

from dermascreen.pipelines import active_config
from dermascreen.pipelines.phase1.nodes import train_grid_run
from dermascreen.pipelines.runs import bound, encoder_input, grid_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    """Runs ``phase1.<arch>_<W>`` for the active profile's ``phase1.runs`` x ``phase1.class_weights``."""
    params = kwargs.get("parameters") or active_config.parameters()["phase1"]
    return build_grid(params["runs"], params["class_weights"], params["architectures"])


def build_grid(runs: list[str], class_weights: list[str], architectures: dict) -> Pipeline:
    """``runs`` x ``class_weights``; an architecture with ``weights: <pretraining method>`` also
    takes that method's encoder (``pretraining.<method>.encoder``) as input."""
    grid = {}
    for arch in runs:
        for weights in class_weights:
            run = f"{arch}_{weights}"
            train = bound(train_grid_run, run=run, class_weights_name=weights)
            inputs = ["train_set", "val_set", "normalization", "class_weights",
                      f"params:phase1.architectures.{arch}", "params:phase1.training",
                      "params:phase1.state_dir", "params:phase1.dvclive_dir", "params:weights_dir", *encoder_input(architectures[arch]["model"])]
            grid[run] = (train, inputs)
    return grid_pipeline("phase1", grid)
