"""docs/models.md's generated tables and docs/keras_layers.md are what docs/models_tables.py writes now."""

from __future__ import annotations

import importlib.util

from project_helpers import PROJECT_ROOT


def test_generated_model_docs_are_current():
    spec = importlib.util.spec_from_file_location("models_tables", PROJECT_ROOT / "docs" / "models_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    for path, content in tables.render().items():
        assert path.read_text() == content, (
            f"{path.relative_to(PROJECT_ROOT)} is stale: run .venv/bin/python docs/models_tables.py")
