"""Evaluation: retrieval metrics (pure functions) and protocol scoring of a model."""

from reid_core.evaluation.metrics import (
    metric_names,
    retrieval_metrics,
    retrieval_metrics_from_features,
    summarize,
)

__all__ = ["metric_names", "retrieval_metrics", "retrieval_metrics_from_features", "summarize"]
