"""The parameters that generated pipelines (the phase1/phase2 grids) are built from.

Inside a Kedro run they come from the run's config loader (handed over by
``ActiveParametersHook``). Outside one (``find_pipelines`` in a test, kedro-viz, which runs
without hooks) they are read from ``conf/`` for the environment in ``KEDRO_ENV``, else
``local`` over ``base``, as ``kedro run`` would.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from kedro.framework.project import settings

_config_loader = None
_parameters: dict | None = None


def use(config_loader) -> None:
    global _config_loader, _parameters
    _config_loader, _parameters = config_loader, None


def parameters() -> dict:
    """A copy of the parameters; a run's are read from its loader once (each read of a Kedro config
    loader parses and resolves conf/ again: about half a second per pipeline and hook)."""
    global _parameters
    if _config_loader is not None:
        if _parameters is None:
            _parameters = _config_loader["parameters"]
        return copy.deepcopy(_parameters)
    conf_source = Path(__file__).resolve().parents[3] / settings.CONF_SOURCE
    env = os.environ.get("KEDRO_ENV") or settings.CONFIG_LOADER_ARGS["default_run_env"]
    loader = settings.CONFIG_LOADER_CLASS(str(conf_source), env=env, **settings.CONFIG_LOADER_ARGS)
    return loader["parameters"]
