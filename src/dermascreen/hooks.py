"""Project hooks."""

from kedro.framework.hooks import hook_impl

from dermascreen import preflight
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


class PreflightHook:
    """Checks, before the first node, what the nodes about to run need (``dermascreen.preflight``),
    and stops the run with every problem listed when it cannot succeed."""

    def __init__(self) -> None:
        self._config_loader = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self._config_loader = context.config_loader

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        preflight.ensure(pipeline, self._config_loader["parameters"], self._config_loader["catalog"])
