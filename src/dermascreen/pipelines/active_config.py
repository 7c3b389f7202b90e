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
_last_read: tuple[object, dict] | None = None  # (loader, its parameters)


def use(config_loader) -> None:
    global _config_loader
    _config_loader = config_loader


def read(config_loader) -> dict:
    """A copy of ``config_loader["parameters"]``, read once while the same loader is asked again (each
    read of a Kedro config loader parses and resolves conf/: about half a second per pipeline and hook)."""
    global _last_read
    if _last_read is None or _last_read[0] is not config_loader:
        _last_read = (config_loader, config_loader["parameters"])
    return copy.deepcopy(_last_read[1])


def parameters() -> dict:
    if _config_loader is not None:
        return read(_config_loader)
    conf_source = Path(__file__).resolve().parents[3] / settings.CONF_SOURCE
    env = os.environ.get("KEDRO_ENV") or settings.CONFIG_LOADER_ARGS["default_run_env"]
    loader = settings.CONFIG_LOADER_CLASS(str(conf_source), env=env, **settings.CONFIG_LOADER_ARGS)
    return loader["parameters"]
