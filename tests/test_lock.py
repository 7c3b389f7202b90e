"""requirements.lock (what `make setup` installs) agrees with requirements.txt and pins everything."""

from __future__ import annotations

import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from project_helpers import PROJECT_ROOT


def _entries(text: str) -> list[str]:
    """Requirement lines, continuations joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.split("#")[0].strip() for line in joined.splitlines() if line.split("#")[0].strip()]


def _locked() -> dict[str, tuple[str, list[str]]]:
    locked = {}
    for entry in _entries((PROJECT_ROOT / "requirements.lock").read_text()):
        requirement, *options = entry.split(" --hash=")
        name, version = requirement.strip().split("==")
        locked[canonicalize_name(name)] = (version, options)
    return locked


def test_every_locked_package_is_pinned_with_hashes():
    locked = _locked()
    assert len(locked) > 100  # the whole tree, not just the direct dependencies
    for name, (version, hashes) in locked.items():
        assert re.fullmatch(r"[\w.+!]+", version), f"{name}: {version!r} is not one version"
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"{name}: no sha256 hash"


def test_the_lock_holds_each_direct_pin_of_requirements_txt():
    """After editing requirements.txt, `make lock` brings the lock in line (README)."""
    locked = _locked()
    for line in _entries((PROJECT_ROOT / "requirements.txt").read_text()):
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is in requirements.txt, not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(locked[name][0]), \
            f"{name}: requirements.txt says {requirement.specifier}, the lock {locked[name][0]}: run `make lock`"
