"""Project pipelines: every package under ``dermascreen.pipelines`` with a ``create_pipeline``."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# The order a full run takes; `inference` is a user tool, not part of the experiment.
EXPERIMENT = ("data_engineering", "pretraining", "phase1", "phase2", "phase3")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (pipelines[name] for name in EXPERIMENT if name in pipelines), Pipeline([])
    )
    return pipelines
