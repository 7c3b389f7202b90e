"""Project hooks."""

import logging
import os
import sys
from pathlib import Path

import ignite.distributed as idist
import torch
from kedro.framework.hooks import hook_impl
from kedro.framework.project import pipelines
from kedro.io import MemoryDataset

from dermascreen import grid, preflight
from dermascreen.errors import find_user_error
from dermascreen.pipelines import active_config


class ActiveParametersHook:
    """Hands the run's configuration (environment and ``--params`` applied) to pipeline creation.

    The phase1/phase2 grids are generated from parameters, and ``--env quick`` runs a smaller
    grid than ``base``. Kedro creates pipelines after the context, so its config loader is known
    by then. (Not ``context.params``: reading it creates the pipelines, which would recurse.)
    """

    @hook_impl
    def after_context_created(self, context) -> None:
        active_config.use(context.config_loader)


class UserErrorHook:
    """``kedro run`` ends with the problem and the fix when the user can fix it, not a traceback.

    Kedro re-raises a failed run to the interpreter, whose exception hook (rich's) prints every
    frame. For a ``UserError`` anywhere in the exception's chain only that error's message is
    printed; any other error keeps its traceback.
    """

    @hook_impl
    def after_context_created(self, context) -> None:
        if not getattr(sys.excepthook, "user_errors_shortened", False):
            sys.excepthook = _shorten_user_errors(sys.excepthook)


def _shorten_user_errors(excepthook):
    def hook(kind, error, traceback):
        user_error = find_user_error(error)
        if user_error is None:
            excepthook(kind, error, traceback)
        else:
            print(f"\ndermascreen: {user_error}", file=sys.stderr)

    hook.user_errors_shortened = True
    return hook


class PreflightHook:
    """Checks, before the first node, what the nodes about to run need (``dermascreen.preflight``),
    and stops the run with every problem listed when it cannot succeed. Started by DVC as a grid
    stage (``DVC_STAGE``: a run or a selection), it also checks that the stage's grid is the one
    params.yaml records (``grid.check_stage``)."""

    def __init__(self) -> None:
        self._config_loader = None
        self._project_path = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self._config_loader = context.config_loader
        self._project_path = Path(context.project_path)

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        parameters = active_config.read(self._config_loader)
        stage = os.environ.get("DVC_STAGE")
        if stage:
            # The project's own params.yaml: `dvc exp run --queue`/`--temp` runs the stage in a copy
            # of the workspace, while DVC_ROOT names the workspace itself.
            grid.check_stage(stage, pipelines, parameters, self._project_path / grid.PARAMS_FILE)
        preflight.ensure(pipeline, parameters, self._config_loader["catalog"])


class DistributedHook:
    """``torchrun ... -m dermascreen`` trains each run data-parallel over the processes (docs/training.md,
    "Distributed training").

    Under torchrun (``WORLD_SIZE`` > 1 in the environment) it joins the process group (NCCL when
    CUDA is available, else gloo) before any node runs; every process then runs every node, so
    ``fit`` trains one DDP model per run. Rank 0 alone writes: on the other ranks every dataset a
    node produces is replaced by a memory dataset, so they write nothing (``fit``'s checkpoints are
    written by rank 0 already), and they log warnings and errors only.
    """

    @hook_impl
    def after_context_created(self, context) -> None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and idist.get_world_size() == 1:
            idist.initialize("nccl" if torch.cuda.is_available() else "gloo")
            if idist.get_rank() != 0:
                logging.disable(logging.INFO)  # one log of the run: rank 0's

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        if idist.get_rank() != 0:
            for name in pipeline.all_outputs():
                catalog[name] = MemoryDataset(copy_mode="assign")

    @hook_impl
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog) -> None:
        if idist.get_world_size() > 1:
            idist.barrier()  # no rank leaves while another still needs the group
            idist.finalize()
