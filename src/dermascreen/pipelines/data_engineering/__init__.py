"""Raw DermaMNIST -> validated, compact model inputs, labels, statistics and a data report."""

from dermascreen.pipelines.data_engineering.pipeline import create_pipeline

__all__ = ["create_pipeline"]
