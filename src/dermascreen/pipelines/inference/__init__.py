"""inference: score users' image files with the final model at the calibrated threshold."""

from dermascreen.pipelines.inference.pipeline import create_pipeline

__all__ = ["create_pipeline"]
