from kedro.pipeline import Pipeline

from dermascreen.pipelines import active_config
from dermascreen.pipelines.phase2.nodes import train_strategy
from dermascreen.pipelines.runs import bound, grid_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    """Runs ``phase2.<strategy>`` for the active profile's ``phase2.runs``."""
    params = kwargs.get("parameters") or active_config.parameters()
    return build_grid(params["phase2"]["runs"])


def build_grid(strategies: list[str]) -> Pipeline:
    runs = {}
    for strategy in strategies:
        inputs = ["train_set", "val_set", "normalization", "class_weights", "phase1_best",
                  "phase1_best_model", f"params:phase2.strategies.{strategy}",
                  "params:phase2.training", "params:phase2.state_dir", "params:phase2.dvclive_dir"]
        runs[strategy] = (bound(train_strategy, run=strategy), inputs)
    return grid_pipeline("phase2", runs, alternatives=True)  # phase3 compares the winner with them
