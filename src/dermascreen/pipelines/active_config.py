"""The parameters that generated pipelines (the phase1/phase2 grids) are built from.

Inside a Kedro run these are the run's parameters (set by ``ActiveParametersHook``). Outside one
(``find_pipelines`` in a test, kedro-viz without hooks) they are read from ``conf/`` for the
environment in ``KEDRO_ENV``, else ``local`` over ``base`` (as ``kedro run``).
"""

from __future__ import annotations

import os
from pathlib import Path

from kedro.framework.project import settings

_parameters: dict | None = None


def set_parameters(parameters: dict | None) -> None:
    global _parameters
    _parameters = parameters


def parameters() -> dict:
    if _parameters is not None:
        return _parameters
    conf_source = Path(__file__).resolve().parents[3] / settings.CONF_SOURCE
    env = os.environ.get("KEDRO_ENV") or settings.CONFIG_LOADER_ARGS["default_run_env"]
    loader = settings.CONFIG_LOADER_CLASS(str(conf_source), env=env, **settings.CONFIG_LOADER_ARGS)
    return loader["parameters"]
