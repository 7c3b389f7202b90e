"""``python -m dermascreen.grid``: the runs of the phase1 and phase2 grids, written into params.yaml
for dvc.yaml's run stages (docs/training.md, "Scaling").

dvc.yaml trains each grid run in a stage of its own, ``phase<n>_run@<run>`` (``foreach`` over
``phase<n>_runs`` in params.yaml), so that workers train runs side by side and DVC skips the runs
already done. DVC cannot build a grid itself (runs x class weights, strategies x seeds, the profile's
overrides), so this command writes it from the profile's Kedro configuration: each run with a
fingerprint of the parameters its nodes read. The fingerprint is the run stage's only params
dependency, so a change to one run's configuration reruns that run alone. Before its first node,
a `kedro run` that DVC started as one of these stages (``DVC_STAGE``) checks params.yaml against the
configuration (``check_stage``, called by the preflight hook): a run stage trains only the
configuration DVC records for it, and a selection stage (``phase<n>``) ranks only the configured grid,
so a change to conf/ that ``make grid`` has not written stops the stage with the fix instead of
passing unseen. ``--check`` makes the same comparison for both grids, from the shell. ``make grid``
writes the grid of params.yaml's profile; ``make all`` writes it too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dermascreen.errors import UserError
from dermascreen.preflight import lookup
from dermascreen.profile import profile_config

PHASES = ("phase1", "phase2")
GRID_KEYS = {f"{phase}_runs" for phase in PHASES}  # params.yaml's keys this command writes
PARAMS_FILE = "params.yaml"
# Everything params.yaml holds from this line on is written by this command.
MARKER = "# Written by `python -m dermascreen.grid` (make grid) from the profile's configuration: edit conf/, not this."
EXPLANATION = """\
# The runs of the phase1 and phase2 grids, one DVC stage each (`phase<n>_run@<run>` in dvc.yaml), with a
# fingerprint of the parameters each run reads; the `phase<n>` stages fail while this differs from conf/."""


def fingerprint(values: Mapping[str, Any]) -> str:
    """``fp`` and 12 hex digits of the sha256 of the values as canonical JSON (the prefix keeps YAML
    from reading digits such as ``123e45678901`` as a number)."""
    return "fp" + hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def grid_runs(pipeline, parameters: Mapping[str, Any], phase: str) -> dict[str, str]:
    """``{run: fingerprint}`` of the runs of a grid pipeline (namespaces ``<phase>.<run>``); the
    fingerprint covers the run's name and the value of every ``params:`` input of its nodes."""
    read: dict[str, dict[str, Any]] = {}
    for node in pipeline.nodes:
        if node.namespace and node.namespace.startswith(f"{phase}."):
            names = [name.removeprefix("params:") for name in node.inputs if name.startswith("params:")]
            read.setdefault(node.namespace.removeprefix(f"{phase}."), {}).update(
                {name: lookup(parameters, name) for name in names})
    return {run: fingerprint({"run": run, "parameters": values}) for run, values in sorted(read.items())}


def configured_grids(env: str, root: Path) -> dict[str, dict[str, str]]:
    """``{"phase1_runs": {run: fingerprint}, "phase2_runs": ...}`` of profile ``env``: the pipelines
    ``kedro run --env <env>`` builds, so the runs are exactly the ones it would train."""
    with profile_config(env, root) as loader:
        from kedro.framework.project import pipelines  # filled by the session profile_config opened

        return grids_of(pipelines, loader["parameters"])


def grids_of(pipelines: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """``{"phase1_runs": {run: fingerprint}, "phase2_runs": ...}`` of the grid pipelines built from
    ``parameters``."""
    return {f"{phase}_runs": grid_runs(pipelines[phase], parameters, phase) for phase in PHASES}


def read_params(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"dermascreen: {path} is missing; it holds the profile dvc.yaml runs (profile: quick)")
    return yaml.safe_load(path.read_text()) or {}


def without_grids(text: str) -> str:
    """``text`` without its top-level grid keys and their blocks: a grid written by hand, or left
    above a deleted ``MARKER``, would otherwise appear twice."""
    kept, skipping = [], False
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            skipping = line.split(":")[0] in GRID_KEYS
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def write_grids(path: Path, grids: dict[str, dict[str, str]]) -> None:
    """params.yaml with its grids replaced: the text before ``MARKER`` is kept, grid keys aside."""
    kept = without_grids(path.read_text().split(MARKER)[0]).rstrip("\n")
    body = yaml.safe_dump(grids, sort_keys=False, default_flow_style=False)
    path.write_text(f"{kept}\n{MARKER}\n{EXPLANATION}\n{body}")


class GridError(UserError):
    """params.yaml's grid is not the configuration's for the DVC stage about to run."""


def check_stage(stage: str, pipelines: Mapping[str, Any], parameters: Mapping[str, Any], params_file: Path) -> None:
    """Raise ``GridError`` when DVC stage ``stage`` (DVC's ``DVC_STAGE``) would act on a grid other
    than the one params.yaml records: a run stage (``phase<n>_run@<run>``) about to train another
    configuration than its fingerprint (DVC would file the new result under the old key), or a
    selection stage (``phase<n>``) whose params.yaml grid lacks, adds or changes runs of the
    configuration (it would rank a grid other than the configured one). ``pipelines``: the
    project's pipelines (``kedro.framework.project.pipelines``); other stages pass. DVC prefixes
    the stage's name with its dvc.yaml's path when started from another directory
    (``../dvc.yaml:phase1``)."""
    stage = stage.rpartition(":")[2]
    name, _, run = stage.partition("@")
    phase = name.removesuffix("_run")
    is_run_stage = bool(run) and name == f"{phase}_run"
    if phase not in PHASES or not (is_run_stage or stage == phase):
        return
    key = f"{phase}_runs"
    configured = grid_runs(pipelines[phase], parameters, phase)
    written = read_params(params_file)
    if is_run_stage:
        recorded = (written.get(key) or {}).get(run)
        if recorded != configured.get(run):
            raise GridError(f"{params_file}: DVC stage {stage} records {key}.{run}: {recorded}, but conf/ now "
                            f"gives {configured.get(run)}; write the grid with `make grid` (python -m dermascreen.grid), "
                            "then `dvc repro` again")
        return
    found = differences(written, {key: configured})
    if found:
        raise GridError(stale_grids(f"{params_file}: DVC stage {stage} would rank another grid than conf/'s", found,
                                    "python -m dermascreen.grid"))


def stale_grids(heading: str, found: list[str], command: str) -> str:
    """The message of a params.yaml whose grids are not the configuration's: ``heading``, what
    ``differences`` found, and the fix (``command`` writes the grids)."""
    return (f"{heading}:\n" + "\n".join(f"  - {line}" for line in found)
            + f"\nWrite it with `make grid` ({command}), then `dvc repro` again; "
              "commit params.yaml with the configuration.")


def differences(written: Mapping[str, Any], expected: dict[str, dict[str, str]]) -> list[str]:
    """What params.yaml's grids lack, have in excess or have with another configuration."""
    found = []
    for key, runs in expected.items():
        have = written.get(key) or {}
        if not isinstance(have, dict):
            have = {}
        for run in sorted(set(runs) - set(have)):
            found.append(f"{key}: {run} is configured but missing")
        for run in sorted(set(have) - set(runs)):
            found.append(f"{key}: {run} is not in the configuration")
        for run in sorted(set(runs) & set(have)):
            if have[run] != runs[run]:
                found.append(f"{key}: {run}'s configuration changed (fingerprint {have[run]}, now {runs[run]})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dermascreen.grid", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", help="profile (Kedro environment); default: params.yaml's `profile`")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail when params.yaml's grids differ from the profile's configuration")
    args = parser.parse_args(argv)
    root = Path.cwd()
    path = root / PARAMS_FILE
    written = read_params(path)
    env = args.env or written.get("profile")
    if not env:
        raise SystemExit(f"dermascreen: {path} has no `profile` and no --env was given")
    grids = configured_grids(env, root)
    if not args.check:
        write_grids(path, grids)
        print(f"dermascreen: {PARAMS_FILE}: " + ", ".join(f"{len(runs)} {key}" for key, runs in grids.items())
              + f" of profile '{env}'")
        return 0
    found = differences(written, grids)
    if found:
        print(stale_grids(f"dermascreen: {PARAMS_FILE}'s grids are not those of conf/ for profile '{env}'", found,
                          f"python -m dermascreen.grid --env {env}"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
