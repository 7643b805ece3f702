"""The named model configurations and their validation grids: what ``leanrec demo``,
``leanrec model train`` and the offline A/B tests mean by "popular", "ease", "minilm",
"sasrec", "learned-hybrid" and the rest.

* the core ones — ``popular``, ``ease``, ``tfidf``, ``minilm`` (frozen sentence vectors,
  decayed-mean users) and ``hybrid`` (EASE + MiniLM, one weight tuned on validation);
* the learned ones, trained on the protocol's training events with a time budget:
  ``minilm-ft`` (the content model on a MiniLM fine-tuned contrastively on this
  protocol's training histories, :mod:`leanrec.encoders.finetune`), ``projection``,
  ``attention`` and ``sasrec`` (:class:`~leanrec.models.sequential.SequentialRecommender`
  on frozen MiniLM vectors: a learned projection with mean pooling, attention pooling, a
  causal transformer), ``sasrec-id`` (the same transformer on item ID embeddings alone,
  trained with the full softmax: the published ID-only SASRec, the model the text-aware
  ones must beat) and ``learned-hybrid`` (every other model a run fitted, fused with
  weights learned on the validation targets).

One home for the names, so every help text and error message lists the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.split import PROTOCOLS, SEED
from .content import ContentRecommender
from .ease import EASE
from .hybrid import Hybrid
from .popular import MostPopular

CORE_MODELS = ("popular", "ease", "tfidf", "minilm", "hybrid")
LEARNED_MODELS = ("minilm-ft", "projection", "attention", "sasrec-id", "sasrec", "learned-hybrid")
#: the learned sequence models: a function of the history, so new events need no refit
SEQUENTIAL_MODELS = ("projection", "attention", "sasrec-id", "sasrec")
#: the models whose seed changes the trained model
RANDOMISED_MODELS = ("minilm-ft", *SEQUENTIAL_MODELS, "learned-hybrid")
MODEL_NAMES = CORE_MODELS + LEARNED_MODELS
MODEL_GROUPS = {"all": MODEL_NAMES, "core": CORE_MODELS, "learned": LEARNED_MODELS}
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
    sasrec_id: dict = field(default_factory=lambda: dict(SASREC_ID_DEFAULTS))
    #: how the sequence models get to test: "history" = trained on train, scored with the
    #: train+validation histories (no second training); "retrain" = refitted like the rest.
    sequential_refit: str = "history"
    #: every other model's test metrics are compared with this one's (paired bootstrap
    #: ratio and difference, all users and strictly-later targets) when it is among the
    #: models run; no comparison otherwise
    reference: str = "sasrec-id"


#: ``leanrec.eval.finetune.ensure_finetuned`` arguments of the demo's fine-tune.
FINETUNE_DEFAULTS = {"time_budget_s": 1140.0, "max_epochs": 6, "pairs_per_epoch": 2048, "batch_size": 64,
                     "lr": 5e-4, "patience": 2, "threads": 1}
#: SequentialRecommender arguments shared by projection, attention and sasrec.
SEQUENTIAL_DEFAULTS = {"time_budget_s": 300.0, "max_epochs": 200, "patience": 5, "threads": 1}
#: the ID-only SASRec (Kang & McAuley 2018) trained with the full softmax cross-entropy
#: (Klenitskiy & Vasilev, RecSys 2023): 2 blocks, 1 head, d = 64, Adam at 1e-3
SASREC_ID_DEFAULTS = {"lr": 1e-3, "dropout": 0.2}


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
    if name == "sasrec-id":
        from .sequential import SequentialRecommender

        est = SequentialRecommender(use_text=False, item_ids=True, pooling="sasrec", seed=cfg.seed,
                                    **{**cfg.sequential, **cfg.sasrec_id})
        return est, [{}]
    if name in ("projection", "attention", "sasrec"):
        from .sequential import SequentialRecommender

        pooling = {"projection": "mean", "attention": "attention", "sasrec": "sasrec"}[name]
        est = SequentialRecommender(encoder=cfg.sentence_model, pooling=pooling, seed=cfg.seed, **cfg.sequential)
        return est, list(cfg.sasrec_grid) if name == "sasrec" else [{}]
    if name == "learned-hybrid":
        return servable_learned_hybrid(cfg, tuned), [{}]
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")


def servable_learned_hybrid(cfg: ExperimentConfig, tuned: dict):
    """The learned hybrid a service can run (``leanrec model train --model learned-hybrid``):
    EASE + the MiniLM content model + SASRec, each with its tuned parameters where
    ``tuned`` has them (the demo's ``results.json``), the fusion weights learned in ``fit``
    on an internal validation. (The demo's own learned hybrid fuses every model it ran,
    TF-IDF included, whose corpus-fitted vocabulary a live catalogue cannot keep.)"""
    from .learned_hybrid import LearnedHybrid
    from .sequential import SequentialRecommender

    def params(name: str) -> dict:
        chosen = tuned.get(name) or {}
        return chosen if all(isinstance(v, (int, float, str, bool, type(None))) for v in chosen.values()) else {}

    ease = EASE(**params("ease"))
    content = ContentRecommender(encoder=cfg.sentence_model, **params("minilm"))
    sasrec = SequentialRecommender(encoder=cfg.sentence_model, pooling="sasrec", seed=cfg.seed, **cfg.sequential)
    sasrec.set_params(**params("sasrec"))
    return LearnedHybrid([("ease", ease), ("minilm", content), ("sasrec", sasrec)], seed=cfg.seed)
