"""`python -m dermascreen.grid`: the grids params.yaml holds for dvc.yaml's run stages, and the check
each run and selection stage makes before its first node (process-level: test_dvc_grid_workers.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml

from dermascreen import grid, hooks
from dermascreen.pipelines.phase1.pipeline import build_grid as phase1_grid
from project_helpers import PROJECT_ROOT, load_config

PARAMETERS = load_config("tiny", "parameters")


def tiny_phase1():
    phase1 = PARAMETERS["phase1"]
    return phase1_grid(phase1["runs"], phase1["class_weights"], phase1["architectures"])


def params_file(tmp_path, runs: dict[str, str]):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"profile": "tiny", "phase1_runs": runs}))
    return path


def test_the_committed_params_yaml_holds_its_profiles_grids(monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    assert (PROJECT_ROOT / "params.yaml").is_file()
    assert grid.main(["--check"]) == 0


def test_fingerprints_stay_strings_in_yaml_and_follow_the_configuration():
    runs = grid.grid_runs(tiny_phase1(), PARAMETERS, "phase1")
    assert set(runs) == {"CNN_v1_W0", "CNN_v1_W3"}
    assert yaml.safe_load(yaml.safe_dump(runs)) == runs and all(v.startswith("fp") for v in runs.values())
    changed = {**PARAMETERS, "phase1": {**PARAMETERS["phase1"], "class_weights": ["W0", "W3"],
                                        "training": {**PARAMETERS["phase1"]["training"], "epochs": 99}}}
    assert grid.grid_runs(tiny_phase1(), changed, "phase1") != runs


def test_a_run_stage_trains_only_the_configuration_params_yaml_records(tmp_path):
    pipelines = {"phase1": tiny_phase1()}
    runs = grid.grid_runs(tiny_phase1(), PARAMETERS, "phase1")
    grid.check_stage("phase1_run@CNN_v1_W3", pipelines, PARAMETERS, params_file(tmp_path, runs))
    grid.check_stage("data_engineering", pipelines, PARAMETERS, tmp_path / "absent.yaml")  # not a grid stage
    stale = params_file(tmp_path, {**runs, "CNN_v1_W3": "fp000000000000"})
    with pytest.raises(grid.GridError, match=r"phase1_run@CNN_v1_W3.*make grid"):
        grid.check_stage("phase1_run@CNN_v1_W3", pipelines, PARAMETERS, stale)
    grid.check_stage("phase1_run@CNN_v1_W0", pipelines, PARAMETERS, stale)  # the other run is unchanged


def test_a_selection_stage_ranks_only_the_grid_params_yaml_records(tmp_path):
    pipelines = {"phase1": tiny_phase1()}
    runs = grid.grid_runs(tiny_phase1(), PARAMETERS, "phase1")
    grid.check_stage("phase1", pipelines, PARAMETERS, params_file(tmp_path, runs))
    stale = params_file(tmp_path, {"CNN_v1_W0": runs["CNN_v1_W0"], "CNN_v1_W5": "fp000000000000"})
    with pytest.raises(grid.GridError) as raised:
        grid.check_stage("phase1", pipelines, PARAMETERS, stale)
    assert str(raised.value).splitlines()[1:] == [
        "  - phase1_runs: CNN_v1_W3 is configured but missing",
        "  - phase1_runs: CNN_v1_W5 is not in the configuration",
        "Write it with `make grid` (python -m dermascreen.grid), then `dvc repro` again; "
        "commit params.yaml with the configuration."]


def test_a_stage_named_with_its_dvc_yaml_path_is_checked_too(tmp_path):
    """DVC started from another directory names the stage ``<path>/dvc.yaml:<stage>``."""
    pipelines = {"phase1": tiny_phase1()}
    stale = params_file(tmp_path, {"CNN_v1_W0": "fp000000000000"})
    for stage in ("../dvc.yaml:phase1", "dvc.yaml:phase1_run@CNN_v1_W0"):
        with pytest.raises(grid.GridError):
            grid.check_stage(stage, pipelines, PARAMETERS, stale)
    for stage in ("phase1@CNN_v1_W0", "phase1_run", "phase1_run@", "phase3", "phase1_runs", "dvc.yaml:raw_data"):
        grid.check_stage(stage, pipelines, PARAMETERS, stale)  # not a grid stage: nothing to check


def test_the_preflight_hook_checks_the_stage_against_the_project_params_yaml(tmp_path, monkeypatch):
    """Started by DVC as a selection stage, `kedro run` stops before its first node when the project's
    params.yaml lacks a configured run; the project's own file counts, not DVC_ROOT's (a queued
    experiment runs in a copy of the workspace DVC_ROOT names)."""
    project, workspace = tmp_path / "experiment_copy", tmp_path / "workspace"
    project.mkdir(), workspace.mkdir()
    runs = grid.grid_runs(tiny_phase1(), PARAMETERS, "phase1")
    params_file(workspace, runs)
    params_file(project, {"CNN_v1_W0": runs["CNN_v1_W0"]})
    monkeypatch.setattr(hooks, "pipelines", {"phase1": tiny_phase1()})
    monkeypatch.setenv("DVC_STAGE", "phase1")
    monkeypatch.setenv("DVC_ROOT", str(workspace))
    hook = hooks.PreflightHook()
    hook.after_context_created(SimpleNamespace(config_loader={"parameters": PARAMETERS}, project_path=project))
    with pytest.raises(grid.GridError, match=r"experiment_copy.*\n  - phase1_runs: CNN_v1_W3 is configured but missing"):
        hook.before_pipeline_run(run_params={}, pipeline=tiny_phase1(), catalog=None)


def test_writing_replaces_the_grids_even_without_the_marker(tmp_path):
    """The text above the marker stays; a grid left there (marker deleted) is replaced, not doubled."""
    path = tmp_path / "params.yaml"
    path.write_text("# the profile\nprofile: tiny\nphase1_runs:\n  old_W0: fp000000000000\nother: 1\n")
    grids = {"phase1_runs": {"CNN_v1_W0": "fp111111111111"}, "phase2_runs": {"LowLR_seed42": "fp222222222222"}}
    grid.write_grids(path, grids)
    grid.write_grids(path, grids)  # idempotent
    text = path.read_text()
    assert yaml.safe_load(text) == {"profile": "tiny", "other": 1, **grids}
    assert text.startswith("# the profile\nprofile: tiny\nother: 1\n") and text.count(grid.MARKER) == 1
