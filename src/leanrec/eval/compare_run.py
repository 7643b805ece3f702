"""Fit one side of an A/B comparison, and hold what a comparison found.

Why this module exists: :mod:`leanrec.eval.compare` reads and checks the two config files
and plans the runs; fitting a side the way the demo's test stage does
(:func:`fit_and_evaluate`) and the result that the CLI and
:mod:`leanrec.eval.compare_report` read (:class:`CompareResult`, with the caveats its
verdict needs) are the other half, kept apart so each stays small.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..data.schema import Dataset
from ..data.split import Split
from .abtest import Comparison
from ..models.presets import SEQUENTIAL_MODELS
from .tuning import TunedRun, tune_and_test

if TYPE_CHECKING:
    from .compare import CompareConfig

__all__ = ["CompareResult", "SideRun", "fit_and_evaluate"]

#: the sequence models: they reach test as ``ExperimentConfig.sequential_refit`` says; the rest are refitted
SEQUENTIAL = SEQUENTIAL_MODELS


@dataclass
class SideRun:
    """One side's fitted-and-tested run."""

    config: CompareConfig
    run: TunedRun
    wall_seconds: float

    def summary(self) -> dict:
        out = {"params": self.run.params, "valid": self.run.valid.metrics, "test": self.run.test.metrics,
               "fit_seconds": round(self.run.fit_seconds, 3), "score_seconds": round(self.run.score_seconds, 3),
               "wall_seconds": round(self.wall_seconds, 3)}
        training = getattr(self.run.model, "training_", None)
        if training is not None:
            out["training"] = {k: v for k, v in training.items() if k != "history"}
        return out


def fit_and_evaluate(cfg: CompareConfig, split: Split, *,
                     on_status: Callable[[str], None] | None = None) -> SideRun:
    """Fit one side like the demo's test stage and evaluate it on the split's test targets."""
    from ..experiment import _finetuned_encoder
    from ..models.presets import ExperimentConfig, model_grid

    t0 = time.perf_counter()
    exp = ExperimentConfig(seed=cfg.seed)
    finetuned = _finetuned_encoder(split, exp, on_status)[0] if cfg.model == "minilm-ft" else None
    estimator, _ = model_grid(cfg.model, exp, {}, finetuned)
    label = f"{cfg.name} (seed {cfg.seed})" if cfg.seeded else cfg.name
    if on_status and hasattr(estimator, "on_epoch"):
        estimator.set_params(on_epoch=lambda r: on_status(
            f"{label}: epoch {r['epoch']} valid ndcg@10 {r['valid_ndcg@10']:.4f}"))
    refit = exp.sequential_refit if cfg.model in SEQUENTIAL else "retrain"
    step = (lambda what: on_status(f"{label}: {'tested' if what == 'test' else 'fitted on train'}")) \
        if on_status else None
    run = tune_and_test(estimator, [dict(cfg.params)], split, refit=refit, on_step=step)
    return SideRun(cfg, run, time.perf_counter() - t0)


@dataclass
class CompareResult:
    """Everything ``leanrec model compare`` reports: every run of both sides, the split, the statistics."""

    runs_a: list[SideRun]
    runs_b: list[SideRun]
    split: Split
    dataset: Dataset
    comparison: Comparison
    wall_seconds: float
    seed_notes: list[str] = field(default_factory=list)

    @property
    def a(self) -> SideRun:
        """Side A's first run (its config carries the side's settings)."""
        return self.runs_a[0]

    @property
    def b(self) -> SideRun:
        return self.runs_b[0]

    @property
    def seeds_a(self) -> list[int]:
        return [r.config.seed for r in self.runs_a]

    @property
    def seeds_b(self) -> list[int]:
        return [r.config.seed for r in self.runs_b]

    def notes(self) -> list[str]:
        """Caveats the reader of the verdict needs (shown by the CLI, kept in the JSON)."""
        notes = list(self.seed_notes)
        level = self.comparison.level
        if level == "instances":
            randomised = sorted({s.config.model for s in (self.a, self.b) if s.config.seeded})
            notes.append(f"{', '.join(randomised)} depends on its seed and a side ran one seed: the test compares "
                         "two trained instances, so a difference is worded \"instances differ\", not \"better\" "
                         "(seed variance alone is often declared a difference: "
                         "benchmarks/results/aa_calibration.md); use --seeds 3 or more to compare configurations.")
        elif level == "seeds":
            fixed = [f"{label} ({r.config.model}) is deterministic: one exact value, no seed variance"
                     for label, r in (("A", self.a), ("B", self.b)) if not r.config.seeded]
            notes.append(f"seeded configuration: the verdict comes from Welch's t over per-seed means "
                         f"({self.comparison.n_seeds_a} seed(s) A, {self.comparison.n_seeds_b} seed(s) B"
                         + "".join(f"; {f}" for f in fixed) + "); the user-paired analysis of the seed-averaged runs "
                         "is instance-level, secondary information.")
        return notes

    def to_dict(self) -> dict:
        from ..experiment import versions

        def side(runs: list[SideRun]) -> dict:
            return {"config": runs[0].config.as_dict(), "seeds": [r.config.seed for r in runs], "n_seeds": len(runs),
                    "seeded": runs[0].config.seeded,
                    "runs": [{"seed": r.config.seed, **r.summary()} for r in runs]}

        return {
            "a": side(self.runs_a),
            "b": side(self.runs_b),
            "dataset": self.dataset.summary(),
            "split": self.split.summary(),
            "comparison": self.comparison.to_dict(),
            "verdict": self.comparison.verdict,
            "notes": self.notes(),
            "seed": self.comparison.seed,
            "versions": versions(),
            "wall_seconds": round(self.wall_seconds, 2),
        }
