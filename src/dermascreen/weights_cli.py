"""``dermascreen-weights``: fetch or verify the ImageNet weights files a profile needs (docs/models.md).

    dermascreen-weights fetch --profile base    # on a connected machine: download what is missing
    dermascreen-weights verify --profile base   # anywhere: every file there, sha256 as in the manifest

``--all`` covers every architecture instead of the profile's phase1 runs; ``--dir`` overrides the
profile's ``weights_dir``. Run from the project root (the profile's ``conf/`` is read from there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermascreen.models.weights import (IMAGENET_TAGS, WeightsUnavailableError, fetch, needed_archs,
                                        offline_routes, problems)


def profile_parameters(profile: str) -> dict:
    """The profile's parameters as ``kedro run --env <profile>`` sees them."""
    from dermascreen import settings

    conf = Path.cwd() / "conf"
    if not (conf / profile).is_dir():
        raise SystemExit(f"dermascreen-weights: no profile {profile!r} in {conf} (run from the project root)")
    return settings.CONFIG_LOADER_CLASS(str(conf), env=profile, **settings.CONFIG_LOADER_ARGS)["parameters"]


def profile_archs(parameters: dict) -> list[str]:
    """The architectures whose ImageNet weights the profile's phase1 runs load (phase2 starts from
    phase1's checkpoints, pretraining from scratch: they need none)."""
    phase1 = parameters["phase1"]
    return needed_archs(phase1["architectures"][run]["model"] for run in phase1["runs"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dermascreen-weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("fetch", "verify"))
    parser.add_argument("--profile", default="base", help="profile whose runs need the weights (default: base)")
    parser.add_argument("--all", action="store_true", help=f"every architecture ({', '.join(IMAGENET_TAGS)})")
    parser.add_argument("--dir", help="weights directory (default: the profile's weights_dir)")
    args = parser.parse_args(argv)
    parameters = profile_parameters(args.profile)
    directory = args.dir or parameters["weights_dir"]
    archs = sorted(IMAGENET_TAGS) if args.all else profile_archs(parameters)
    scope = "every architecture" if args.all else f"profile {args.profile}"
    if args.command == "fetch":
        try:
            done = fetch(directory, archs)
        except WeightsUnavailableError as error:
            print(f"dermascreen-weights: {error}", file=sys.stderr)
            return 1
        print(f"{directory} ({scope}: {', '.join(archs) or 'no ImageNet weights needed'}):")
        print("\n".join(f"  {line}" for line in done) or "  nothing to fetch; manifest written")
        return 0
    found = problems(directory, archs)
    if found:
        listing = "\n  ".join(found)
        print(f"dermascreen-weights: {directory} ({scope}):\n  {listing}\n{offline_routes(directory)}", file=sys.stderr)
        return 1
    print(f"{directory} ({scope}): {', '.join(archs) or 'no ImageNet weights needed'}; every sha256 matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
