"""Validation grid search: pick hyper-parameters on validation NDCG@10, refit for test.

This is the only place hyper-parameters are chosen, so no test number ever leaks into a
choice: every grid point is fitted on ``split.train`` and scored on ``split.valid``; the
winner (ties: the first in grid order) is refitted on ``split.train_valid`` and scored once
on ``split.test``. When the protocol has no separate validation stage (the cold protocol's
``train_valid`` *is* its ``train``), the winner is reused instead of fitted again: same
data, same deterministic fit, half the training time of the learned models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from sklearn.base import clone

from ..data.split import Split
from .evaluate import EvalResult, evaluate

SELECTION_METRIC = "ndcg@10"


@dataclass
class TunedRun:
    params: dict
    grid: list[dict]            # [{"params": ..., "valid_ndcg@10": ...}, ...]
    valid: EvalResult           # the chosen point's validation result
    test: EvalResult
    model: object               # fitted on train_valid
    valid_model: object         # the winner fitted on train (what the validation numbers come from)
    fit_seconds: float          # final refit on train_valid
    score_seconds: float        # scoring + ranking all test users
    tune_seconds: float


@dataclass
class Selection:
    """The grid search's outcome: the winner, fitted on ``split.train``, and its validation."""

    params: dict
    grid: list[dict]            # [{"params": ..., "valid_ndcg@10": ...}, ...]
    valid: EvalResult
    model: object               # the winner fitted on train
    fit_seconds: float          # the winner's fit
    tune_seconds: float


def select(estimator, grid: list[dict], split: Split, *,
           on_step: Callable[[str], None] | None = None) -> Selection:
    """Fit every grid point on ``split.train``, score it on ``split.valid``; the best
    validation NDCG@10 wins (ties: the first in grid order)."""
    grid = grid or [{}]
    t0 = time.perf_counter()
    scored = []
    best = None
    for params in grid:
        t_fit = time.perf_counter()
        model = clone(estimator).set_params(**params).fit(split.train)
        t_fit = time.perf_counter() - t_fit
        result = evaluate(model, split.valid, split.candidates)
        value = result.metrics[SELECTION_METRIC]
        scored.append({"params": params, f"valid_{SELECTION_METRIC}": value})
        if best is None or value > best[0]:
            best = (value, params, result, model, t_fit)
        if on_step:
            on_step(f"{params}")
    _, params, valid_result, valid_model, fit_seconds = best
    return Selection(params, scored, valid_result, valid_model, fit_seconds, time.perf_counter() - t0)


def tune_and_test(estimator, grid: list[dict], split: Split, *, refit: str = "retrain",
                  on_step: Callable[[str], None] | None = None) -> TunedRun:
    """Grid-search ``estimator`` on the split's validation targets, then test the winner.

    ``refit="history"`` (for models with ``update_history``: the learned sequence models,
    which are functions of the history) does not retrain the winner on train+validation:
    it scores test with the winner trained on train, fed the train+validation histories.
    That gives up the validation events as training targets (a handicap, never a leak)
    and halves the training time of the warm protocol."""
    if refit not in ("retrain", "history"):
        raise ValueError(f"refit must be 'retrain' or 'history', got {refit!r}")
    chosen = select(estimator, grid, split, on_step=on_step)
    params, valid_model, fit_seconds = chosen.params, chosen.model, chosen.fit_seconds
    if split.train_valid is split.train:
        final = valid_model  # fit_seconds: the winner's own fit on train
    elif refit == "history" and hasattr(valid_model, "update_history"):
        final = valid_model.update_history(split.train_valid)
    else:
        t1 = time.perf_counter()
        final = clone(estimator).set_params(**params).fit(split.train_valid)
        fit_seconds = time.perf_counter() - t1
    test_result = evaluate(final, split.test, split.candidates)
    if on_step:
        on_step("test")
    return TunedRun(params, chosen.grid, chosen.valid, test_result, final, valid_model, fit_seconds,
                    test_result.score_seconds, chosen.tune_seconds)
