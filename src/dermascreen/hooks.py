"""Project hooks."""

from kedro.framework.hooks import hook_impl

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
