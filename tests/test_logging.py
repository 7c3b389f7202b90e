"""conf/logging.yml: Kedro uses it by default from the project root; records reach the console and
the rotating file logs/dermascreen.log."""

from __future__ import annotations

import logging.handlers
import subprocess
import sys
from pathlib import Path

import yaml

from project_helpers import PROJECT_ROOT, command_env

SCRIPT = """
import logging
import kedro.framework.project  # configures logging, as every kedro command does first
logging.getLogger("dermascreen.check").info("a record from the project")
print([type(h).__name__ for h in logging.getLogger().handlers])
"""


def test_kedro_logs_to_the_console_and_a_rotating_file_by_default(tmp_path):
    (tmp_path / "conf").symlink_to(PROJECT_ROOT / "conf", target_is_directory=True)
    (tmp_path / "logs").mkdir()
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=command_env(), text=True,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "['RichHandler', 'RotatingFileHandler']"
    assert "a record from the project" in result.stdout + result.stderr  # the console, as before
    log = (tmp_path / "logs" / "dermascreen.log").read_text()
    assert "Using 'conf/logging.yml' as logging configuration" in log
    assert "INFO     dermascreen.check: a record from the project" in log


def test_the_log_file_rotates_and_its_folder_is_in_git():
    config = yaml.safe_load((PROJECT_ROOT / "conf" / "logging.yml").read_text())
    handler = config["handlers"]["file"]
    assert handler["class"] == f"{logging.handlers.RotatingFileHandler.__module__}.RotatingFileHandler"
    assert handler["maxBytes"] > 0 and handler["backupCount"] > 0
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "logs/.gitkeep"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True)
    ignored = subprocess.run(["git", "check-ignore", "-q", "logs/dermascreen.log"], cwd=PROJECT_ROOT)
    assert tracked.returncode == 0 and ignored.returncode == 0
