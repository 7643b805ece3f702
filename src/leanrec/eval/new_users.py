"""The new-user ramp: how good is each model for a user after 0, 1, 3, 5, 10 events?

The protocol is :func:`leanrec.data.split.new_user_split`: 10% of the users are held out
entirely (seeded); each model is fitted once on the other users' events, and a held-out
user's (n + 1)-th event is ranked given only their first n (those excluded from the
candidates), full ranking, for every n. No model is refitted for a new user:

* models that score a history (popularity, EASE, the content models, the sequence models,
  the fixed hybrid) score the first n events through their live scorer, the same code the
  service runs for a user it has never trained on (a sequence model's user tower is a
  function of the history, as ``SequentialRecommender.update_history`` relies on);
* :class:`~leanrec.models.demographic.DemographicPopular` (``demographic``) scores the
  user's profile in the users table and ignores the history.

At n = 0 a model that reads only the history has nothing to read: its scores are all equal
and the ranking is the item-id order (the floor a profile or popularity must beat).

Tuning: a model with a grid is tuned as the demo tunes it, on the warm split of the
training users (validation NDCG@10), then refitted on all of their events (the sequence
models, with ``sequential_refit="history"``, keep the winner trained on the warm split's
training part); a one-point grid is fitted on all training events directly.

``run_ramp`` returns (and ``write_ramp`` writes as ``ramp.json`` and ``ramp.md``) one row per
model and n: NDCG@10 with its 95% bootstrap interval over users, Recall@10, the number of
users, and both metrics on the strictly-later targets. The latter matter more here than in
the warm protocol: MovieLens users rate many films in the same second when they sign up, so
most early targets share their timestamp with the events before them, and the protocol's
tie-break orders those by item id (on ML-100K, low ids are the popular 1995 titles). The
library never prints; the CLI (``leanrec model ramp``) shows the table.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from ..core.bootstrap import bootstrap_ci
from ..data.schema import Dataset
from ..data.split import (
    NEW_USER_FRACTION,
    RAMP_SIZES,
    RampSplit,
    Split,
    new_user_split,
    temporal_leave_one_out,
)
from ..models.demographic import DemographicPopular
from ..models.live import LiveUser
from ..models.presets import MODEL_NAMES, ExperimentConfig, expand_models, model_grid
from .evaluate import evaluate
from .tuning import select

#: models the ramp runs besides the presets, and the presets it cannot run (the learned
#: hybrid's weights are learned on validation targets of known users; the fine-tuned
#: encoder would be fine-tuned again on the training users, the costliest fit leanrec has)
EXTRA_MODELS = ("demographic",)
UNSUPPORTED = ("learned-hybrid", "minilm-ft")
RAMP_MODELS = tuple(m for m in MODEL_NAMES if m not in UNSUPPORTED) + EXTRA_MODELS
METRICS = ("ndcg@10", "recall@10")


def ramp_models(names) -> tuple[str, ...]:
    """The model names (presets' groups expanded, ``demographic`` kept), checked."""
    names = [n.strip() for n in names if n.strip()]
    extra = [n for n in names if n in EXTRA_MODELS]
    bad = [n for n in names if n in UNSUPPORTED]
    if bad:
        raise ValueError(f"the new-user ramp cannot run {bad}; choose from {', '.join(RAMP_MODELS)}")
    presets = expand_models(n for n in names if n not in EXTRA_MODELS)
    return tuple(m for m in presets if m not in UNSUPPORTED) + tuple(dict.fromkeys(extra))


class NewUserScores:
    """What :func:`leanrec.eval.evaluate.evaluate` needs (``items_``, ``score(user_ids)``)
    for users the model never saw: each user's scores from ``histories[user_id]`` (item
    positions, oldest first) through the model's live scorer, or from the user's profile
    for a model that scores profiles."""

    def __init__(self, model, histories: dict):
        self.model = model
        self.items_ = model.items_
        self.histories = histories

    def score(self, user_ids) -> np.ndarray:
        if getattr(self.model, "scores_from_profile", False):
            return self.model.score(user_ids)
        cat = self.model.catalogue_
        users = [LiveUser.on_catalogue(cat, np.asarray(self.histories[u], np.int64)) for u in user_ids]
        return np.asarray(self.model.scorer_.score(users, cat), np.float32)


def fit_for_ramp(name: str, train: Dataset, cfg: ExperimentConfig, tuned: dict, users=None,
                 on_step: Callable[[str], None] | None = None,
                 tuning: Split | Callable[[], Split] | None = None) -> tuple[object, dict, dict]:
    """(the model fitted on ``train``, its chosen params, what the tuning did) — see the
    module docstring; ``users``: the users table for ``demographic`` (default: ``train.users``);
    ``tuning``: the warm split of ``train`` (or a function returning it) when the caller has
    it already, so that several models tune on one split (default: made here)."""
    t0 = time.perf_counter()
    if name == "demographic":
        return DemographicPopular().fit(train, users=users), {}, {"fit_seconds": round(time.perf_counter() - t0, 3)}
    estimator, grid = model_grid(name, cfg, tuned)
    grid = grid or [{}]
    if len(grid) == 1:
        model = clone(estimator).set_params(**grid[0]).fit(train)
        return model, grid[0], {"fit_seconds": round(time.perf_counter() - t0, 3)}
    if callable(tuning):
        tuning = tuning()
    chosen = select(estimator, grid, tuning if tuning is not None else temporal_leave_one_out(train),
                    on_step=on_step)
    if cfg.sequential_refit == "history" and hasattr(chosen.model, "update_history"):
        model = chosen.model  # trained on the warm split's training part; new users need no history of theirs
    else:
        model = clone(estimator).set_params(**chosen.params).fit(train)
    return model, chosen.params, {"grid": chosen.grid, "tune_seconds": round(chosen.tune_seconds, 3),
                                  "fit_seconds": round(time.perf_counter() - t0, 3)}


def ramp_rows(name: str, model, split: RampSplit, *, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """One row per n: the held-out users' (n + 1)-th events ranked given their first n."""
    rows = []
    for n, targets in split.targets.items():
        histories = dict(zip(targets.frame["user_id"], targets.seen))
        result = evaluate(NewUserScores(model, histories), targets)
        row = {"model": name, "n": n, "n_users": len(targets)}
        for metric in METRICS:
            row[metric] = result.metrics[metric] if len(targets) else None
        ndcg = result.per_user["ndcg@10"]
        row["ndcg@10_ci"] = list(bootstrap_ci(ndcg, n_boot=n_boot, seed=seed)) if len(targets) else None
        later = result.metrics.get("strictly_later", {})
        row["strictly_later"] = {"n_users": later.get("n_users", 0), **{m: later.get(m) for m in METRICS}}
        row["score_seconds"] = round(result.score_seconds, 3)
        rows.append(row)
    return rows


def run_ramp(ds: Dataset, models, cfg: ExperimentConfig | None = None, *, sizes=RAMP_SIZES,
             fraction: float = NEW_USER_FRACTION, users: pd.DataFrame | None = None,
             on_step: Callable[[str], None] | None = None) -> dict:
    """Fit every model on the kept users, rank the held-out users' events at every n;
    returns a plain dict (``rows``: model × n; ``split``; ``models``: params and timings).
    ``users``: the users table ``demographic`` reads, when ``ds`` carries none."""
    cfg = cfg or ExperimentConfig()
    names = ramp_models(models)
    t0 = time.perf_counter()
    split = new_user_split(ds, cfg.seed, fraction, sizes)
    out: dict = {"dataset": ds.summary(), "seed": cfg.seed, "fraction": fraction, "sizes": list(split.targets),
                 "split": split.summary(), "config": asdict(cfg), "models": {}, "rows": []}
    tuned: dict = {}
    # one warm split of the training users for every model's grid: made once (seconds at
    # ML-1M), and its data sets keep what the models derive from them (EASE's inverse, which
    # the hybrid's grid reuses)
    tuning_split = functools.cache(lambda: temporal_leave_one_out(split.train))
    for name in names:
        step = (lambda what, name=name: on_step(f"{name} {what}")) if on_step else None
        model, params, record = fit_for_ramp(name, split.train, cfg, tuned, users, step, tuning_split)
        tuned[name] = params
        out["models"][name] = {"params": params, **record}
        out["rows"].extend(ramp_rows(name, model, split, seed=cfg.seed))
        if step:
            step("ranked")
    out["wall_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def ramp_markdown(result: dict) -> str:
    """The ramp as markdown: one table per metric, models down, n across."""
    sizes = result["sizes"]
    by = {(r["model"], r["n"]): r for r in result["rows"]}
    models = list(dict.fromkeys(r["model"] for r in result["rows"]))
    split = result["split"]
    lines = [f"# New-user ramp — {result['dataset'].get('name', '')}", "",
             (f"{split['held_out_users']} held-out users (fraction {result['fraction']}, seed {result['seed']}), "
              f"models fitted on {split['train_users']} users' {split['train_events']} events; the (n+1)-th event "
              "ranked given the first n (excluded), full ranking. Wall time "
              f"{result['wall_seconds']} s."), ""]

    def fmt(value, spec=".4f") -> str:
        return "–" if value is None else format(value, spec)

    header = "| model | " + " | ".join(f"n={n}" for n in sizes) + " |"
    rule = "|---|" + "---:|" * len(sizes)
    lines += ["## NDCG@10 [95% bootstrap interval over users]", "", header, rule]
    for m in models:
        cells = []
        for n in sizes:
            r = by[(m, n)]
            ci = r["ndcg@10_ci"]
            cells.append(fmt(r["ndcg@10"]) + ("" if ci is None else f" [{ci[0]:.4f}, {ci[1]:.4f}]"))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "## Recall@10", "", header, rule]
    lines += [f"| {m} | " + " | ".join(fmt(by[(m, n)]["recall@10"]) for n in sizes) + " |" for m in models]
    lines += ["", ("## NDCG@10 on the strictly-later targets (after the user's previous event; elsewhere the "
              "order came from the item-id tie-break alone)"), "", header, rule]
    lines += [f"| {m} | " + " | ".join(fmt(by[(m, n)]["strictly_later"]["ndcg@10"]) for n in sizes) + " |"
              for m in models]
    first = models[0] if models else None
    lines += ["", "## Users ranked", "", "| | " + " | ".join(f"n={n}" for n in sizes) + " |", rule,
              "| users | " + " | ".join(str(split["targets"][str(n)]) for n in sizes) + " |"]
    if first:
        lines.append("| strictly later | " + " | ".join(str(by[(first, n)]["strictly_later"]["n_users"])
                                                       for n in sizes) + " |")
    lines.append("")
    return "\n".join(lines)


def write_ramp(result: dict, out: str | Path) -> tuple[Path, Path]:
    """``ramp.json`` and ``ramp.md`` under ``out``; returns their paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "ramp.json", folder / "ramp.md"
    json_path.write_text(json.dumps(result, indent=2, default=_json_default))
    md_path.write_text(ramp_markdown(result))
    return json_path, md_path


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)
