"""pretraining: a ViT pretrained by MAE, U-MAE, SemMAE, AutoMAE and MLO-MAE, compared by fine-tuning."""

from dermascreen.pipelines.pretraining.pipeline import create_pipeline

__all__ = ["create_pipeline"]
