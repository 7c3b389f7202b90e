"""Kedro project settings.

Configuration environments are the experiment profiles: ``base`` (the full, GPU-sized
experiment), ``quick`` (the same code sized for 2 CPU cores) and ``tiny`` (seconds; tests and
the DVC end-to-end test). ``local`` is git-ignored and holds machine-specific overrides.
"""

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

from dermascreen.hooks import ActiveParametersHook, DistributedHook, PreflightHook, UserErrorHook

HOOKS = (ActiveParametersHook(), DistributedHook(), PreflightHook(), UserErrorHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # `${oc.env:DERMAMNIST_NPZ,null}` points the raw-data step at a local copy of the data.
    "custom_resolvers": {"oc.env": oc.env},
    # quick/tiny/local parameter files override single keys of base, not whole sections.
    "merge_strategy": {"parameters": "soft", "globals": "soft"},
}
