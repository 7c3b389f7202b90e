"""``python -m dermascreen.profile``: the profile the main command runs on this machine; and the
configuration of a profile for the commands that check or size it before a run."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


def default_profile() -> str:
    """``base`` (the full, GPU-sized experiment) with a CUDA GPU, else ``quick``."""
    return "base" if torch.cuda.is_available() else "quick"


@contextmanager
def profile_config(env: str, root: Path) -> Iterator:
    """The Kedro config loader of profile ``env`` of the project at ``root``, inside its session
    (loading the context runs the hooks that hand parameters to the grids' pipelines)."""
    from kedro.framework.session import KedroSession  # heavy: not for `python -m dermascreen.profile`
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(root)
    with KedroSession.create(project_path=root, env=env) as session:
        yield session.load_context().config_loader


if __name__ == "__main__":
    print(default_profile())
