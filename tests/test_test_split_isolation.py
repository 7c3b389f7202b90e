"""The test split is read only by phase3 and the pretraining pipeline's final report node."""

from kedro.framework.startup import bootstrap_project

from project_helpers import PROJECT_ROOT


def test_only_phase3_and_the_pretraining_report_read_the_test_split():
    bootstrap_project(PROJECT_ROOT)
    from dermascreen.pipeline_registry import register_pipelines

    pipelines = register_pipelines()
    assert "data_engineering" in pipelines
    producers = [n.name for n in pipelines["__default__"].nodes if "test_set" in n.outputs]
    assert producers == ["split_dataset"]
    for name, pipeline in pipelines.items():
        readers = [n.name for n in pipeline.nodes if "test_set" in n.inputs]
        if name == "pretraining":
            assert len(readers) <= 1 and all(r.endswith("report") for r in readers), readers
        elif name not in ("phase3", "__default__"):
            assert readers == [], f"pipeline {name} reads test_set in {readers}"
    default_readers = {n.name for n in pipelines["__default__"].nodes if "test_set" in n.inputs}
    allowed = {n.name for name in ("phase3", "pretraining") if name in pipelines
               for n in pipelines[name].nodes}
    assert default_readers <= allowed
