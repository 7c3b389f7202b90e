"""Project pipelines: every package under ``dermascreen.pipelines`` with a ``create_pipeline``."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# The pipelines of the experiment, in the order a full run takes.
EXPERIMENT = ("data_engineering", "pretraining", "phase1", "phase2", "phase3")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    # `kedro run --pipelines phase1` makes find_pipelines load only the requested ones.
    pipelines["__default__"] = sum(
        (pipelines[name] for name in EXPERIMENT if name in pipelines), Pipeline([])
    )
    return pipelines
