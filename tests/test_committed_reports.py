"""The reports committed in git read whole from a fresh clone: every figure they show is committed
beside them, and none names a path of the machine that wrote it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def committed(pattern: str) -> list[str]:
    try:
        listed = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return listed.stdout.split()


def test_every_figure_of_a_committed_report_is_committed_beside_it():
    reports = committed("data/08_reporting/*.md")
    tracked = set(committed("data/08_reporting"))
    links = {(report, link) for report in reports
             for link in IMAGE.findall((ROOT / report).read_text())}
    assert {"data/08_reporting/final_report.md", "data/08_reporting/data_report.md"} <= {r for r, _ in links}
    missing = [f"{report}: {link}" for report, link in sorted(links)
               if str(Path(report).parent / link) not in tracked]
    assert not missing, "figures a fresh clone would not show:\n" + "\n".join(missing)


def test_no_committed_report_names_a_local_absolute_path():
    # not after a word character, a dot, '+' or '/': relative paths and base64 (embedded figures)
    local = re.compile(r"(?<![\w./+])/(home|work|tmp|root|Users|mnt|opt|data|srv|var|media)/")
    for report in committed("data/08_reporting/*"):
        if report.endswith((".md", ".json", ".csv", ".html")):
            assert not local.search((ROOT / report).read_text()), report


def test_the_committed_outputs_are_the_ones_dvc_lock_records():
    """Every output that git holds (dvc.yaml's `cache: false` reports, metrics, figures, curves) has
    the hash dvc.lock records, so a fresh clone's `dvc status` finds them unchanged."""
    from dvc.repo import Repo

    tracked = set(committed("data")) | set(committed("dvclive"))
    with Repo(str(ROOT)) as repo:
        status = repo.status()
    changed = sorted(path for entries in status.values() for entry in entries if isinstance(entry, dict)
                     for path, state in entry.get("changed outs", {}).items()
                     if state == "modified" and any(name == path or name.startswith(f"{path}/") for name in tracked))
    assert not changed, f"committed outputs that dvc.lock does not record: {changed}"
