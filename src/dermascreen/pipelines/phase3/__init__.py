"""phase3: threshold calibration on validation, the one test evaluation, the final report."""

from dermascreen.pipelines.phase3.pipeline import create_pipeline

__all__ = ["create_pipeline"]
