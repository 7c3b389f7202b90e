from kedro.pipeline import Pipeline

from dermascreen.pipelines import active_config
from dermascreen.pipelines.phase2.nodes import train_strategy
from dermascreen.pipelines.runs import check_seeds, seeded_grid_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    """Runs ``phase2.<strategy>_seed<k>`` for the active profile's ``phase2.runs`` x ``phase2.seeds``."""
    params = kwargs.get("parameters") or active_config.parameters()
    return build_grid(params["phase2"]["runs"], params["phase2"]["seeds"])


def build_grid(strategies: list[str], seeds: list[int]) -> Pipeline:
    inputs = ["train_set", "val_set", "normalization", "class_weights", "phase1_best", "phase1_best_model"]
    runs = {strategy: (train_strategy, [*inputs, f"params:phase2.strategies.{strategy}", "params:phase2.training",
                                        "params:phase2.state_dir", "params:phase2.dvclive_dir"])
            for strategy in strategies}
    return seeded_grid_pipeline("phase2", runs, check_seeds(seeds, "phase2.seeds"))
