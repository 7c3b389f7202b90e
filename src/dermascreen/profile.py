"""``python -m dermascreen.profile``: the profile the main command runs on this machine."""

import torch


def default_profile() -> str:
    """``base`` (the full, GPU-sized experiment) with a CUDA GPU, else ``quick``."""
    return "base" if torch.cuda.is_available() else "quick"


if __name__ == "__main__":
    print(default_profile())
