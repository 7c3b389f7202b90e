"""The parameters that generated pipelines (the phase1/phase2 grids) are built from.

Inside a Kedro run they come from the run's config loader (handed over by
``ActiveParametersHook``). Outside one (``find_pipelines`` in a test, kedro-viz, which runs
without hooks) they are read from ``conf/`` for the environment in ``KEDRO_ENV``, else
``local`` over ``base``, as ``kedro run`` would.
"""

from __future__ import annotations

import os
from pathlib import Path

from kedro.framework.project import settings

_config_loader = None


def use(config_loader) -> None:
    global _config_loader
    _config_loader = config_loader


def parameters() -> dict:
    if _config_loader is not None:
        return _config_loader["parameters"]
    conf_source = Path(__file__).resolve().parents[3] / settings.CONF_SOURCE
    env = os.environ.get("KEDRO_ENV") or settings.CONFIG_LOADER_ARGS["default_run_env"]
    loader = settings.CONFIG_LOADER_CLASS(str(conf_source), env=env, **settings.CONFIG_LOADER_ARGS)
    return loader["parameters"]
