"""Evaluation: metrics, the full-ranking harness and validation tuning."""

from .evaluate import EvalResult, evaluate
from ..core.metrics import coverage, mrr_at_k, ndcg_at_k, per_user_metrics, recall_at_k, target_ranks
from .tuning import TunedRun, tune_and_test

__all__ = ["EvalResult", "evaluate", "coverage", "mrr_at_k", "ndcg_at_k", "per_user_metrics", "recall_at_k",
           "target_ranks", "TunedRun", "tune_and_test"]
