"""Fine-tuning strategies on the phase1 winner, leaderboard and selection."""

from dermascreen.pipelines.phase2.pipeline import create_pipeline

__all__ = ["create_pipeline"]
