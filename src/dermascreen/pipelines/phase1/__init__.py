"""The binary classifier grid: architectures x class weights, leaderboard and selection."""

from dermascreen.pipelines.phase1.pipeline import create_pipeline

__all__ = ["create_pipeline"]
