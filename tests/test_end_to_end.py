"""End to end on generated data: files on disk -> readers -> experiment -> results.json + CSVs."""

import json

import pandas as pd
import pytest

from leanrec.core.tracking import make_tracker

from leanrec.data import EventColumns, ItemColumns, load_dataset
from leanrec.data.synth import make_dataset
from leanrec.experiment import plan_steps, run_experiment
from leanrec.models.presets import ExperimentConfig


@pytest.mark.slow
def test_experiment_on_generated_files(tmp_path):
    ds = make_dataset(n_users=120, n_items=80, seed=5)
    items = ds.items.frame.assign(genres=ds.items.frame["genres"].map("|".join)).drop(columns=["text"])
    items.rename(columns={"item_id": "sku", "title": "name"}).to_csv(tmp_path / "items.csv", index=False)
    ds.events.frame.rename(columns={"user_id": "customer"}).to_json(tmp_path / "events.jsonl", orient="records",
                                                                    lines=True)
    loaded, report = load_dataset(
        tmp_path / "items.csv", tmp_path / "events.jsonl",
        ItemColumns(item_id="sku", text_fields=(("title", "name"),), categorical_fields=("genres",),
                    numeric_fields=("price",)),
        EventColumns(user_id="customer", value="value", kind="kind"),
    )
    assert report.ok and len(loaded.events) == len(ds.events)

    cfg = ExperimentConfig(models=("popular", "ease", "tfidf", "minilm", "hybrid"), half_lives=(2, None),
                           ease_lambdas=(10.0, 100.0), hybrid_half_lives=(2,), hybrid_weights=(0.3, 0.7))
    steps = []
    results = run_experiment(loaded, tmp_path / "out", cfg, on_step=steps.append)
    assert len(steps) == plan_steps(cfg)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["seed"] == 42 and saved["versions"]["torch"].startswith("2.13.0")
    for name in cfg.models:
        for protocol in cfg.protocols:
            run = saved["models"][name][protocol]
            assert {"ndcg@10", "recall@20", "mrr@10", "auc", "coverage@10"} <= set(run["test"])
            assert run["fit_seconds"] >= 0 and run["score_seconds"] >= 0 and run["grid"]
            # the process's RSS peak while this model ran: at least this interpreter, never below its start
            assert run["memory"]["peak_rss_mb"] > 50 and 0 <= run["memory"]["rise_mb"] <= run["memory"]["peak_rss_mb"]
            recs = pd.read_csv(tmp_path / "out" / "recs" / f"{name}_{protocol}.csv")
            assert list(recs.columns) == ["user_id", "rank", "item_id", "score"]
            assert recs.groupby("user_id")["rank"].max().max() <= 20
            assert set(recs["item_id"]) <= set(loaded.items.ids)
    warm = {m: saved["models"][m]["warm"]["test"]["ndcg@10"] for m in cfg.models}
    cold = {m: saved["models"][m]["cold"]["test"]["ndcg@10"] for m in cfg.models}
    # generated data has topic structure: personal models beat popularity, text wins on cold items
    assert warm["ease"] > warm["popular"] and warm["hybrid"] > warm["popular"]
    assert max(cold["tfidf"], cold["minilm"]) > cold["popular"] + 0.05
    # a second run encodes nothing: the embedding cache holds every text
    again = run_experiment(loaded, tmp_path / "out2", ExperimentConfig(models=("minilm",), protocols=("cold",),
                                                                      half_lives=(2, None)))
    assert again["embedding_cache"]["misses"] == 0 and again["embedding_cache"]["hits"] > 0
    # and gives the same numbers (deterministic given the seed)
    assert again["models"]["minilm"]["cold"]["test"] == results["models"]["minilm"]["cold"]["test"]


@pytest.mark.slow
def test_learned_models_end_to_end(tmp_path):
    """``--models all`` on generated data: the fine-tune, the sequence models and the
    learned hybrid run on both protocols, write the same files, and repeat exactly."""
    ds = make_dataset(n_users=100, n_items=60, seed=11)
    tiny = dict(finetune={"max_epochs": 1, "pairs_per_epoch": 64, "batch_size": 16, "layers": 1,
                          "time_budget_s": 120.0},
                sequential={"max_epochs": 3, "dim": 16, "max_len": 10, "batch_size": 32, "lr": 5e-3,
                            "time_budget_s": 60.0, "threads": 1},
                half_lives=(2,), ease_lambdas=(10.0,), hybrid_half_lives=(2,), hybrid_weights=(0.5,))
    cfg = ExperimentConfig(models=("all",), **tiny)
    steps, status = [], []
    with make_tracker(f"tensorboard:{tmp_path / 'tb'}") as tracker:
        results = run_experiment(ds, tmp_path / "out", cfg, on_step=steps.append, on_status=status.append,
                                 tracker=tracker)
    assert len(steps) == plan_steps(cfg)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curve = EventAccumulator(str(tmp_path / "tb" / "sasrec-id_warm")).Reload()
    history = results["models"]["sasrec-id"]["warm"]["training"]["history"]  # one grid point: one fit
    assert [e.step for e in curve.Scalars("train/valid_ndcg@10")] == [r["epoch"] for r in history[1:]]
    assert [round(e.value, 5) for e in curve.Scalars("train/valid_ndcg@10")] == \
        [round(r["valid_ndcg@10"], 5) for r in history[1:]]
    assert curve.Scalars("test/ndcg@10")[0].value == pytest.approx(results["models"]["sasrec-id"]["warm"]["test"]["ndcg@10"])
    assert any("fine-tuning" in s for s in status) and any("sasrec/warm epoch" in s for s in status)
    models = results["models"]
    assert list(models) == ["popular", "ease", "tfidf", "minilm", "hybrid", "minilm-ft", "projection",
                            "attention", "sasrec-id", "sasrec", "learned-hybrid"]
    for name in models:
        for protocol in ("warm", "cold"):
            recs = pd.read_csv(tmp_path / "out" / "recs" / f"{name}_{protocol}.csv")
            assert list(recs.columns) == ["user_id", "rank", "item_id", "score"] and len(recs)
    for name in ("projection", "attention", "sasrec-id", "sasrec"):
        training = models[name]["warm"]["training"]
        assert training["train_cpu_seconds"] > 0 and training["history"][0]["epoch"] == 0
    assert models["minilm-ft"]["warm"]["training"]["history"]
    weights = models["learned-hybrid"]["cold"]["params"]["new_item_weights"]
    assert weights["ease"] == weights["popular"] == weights["sasrec-id"] == 0.0  # no text, no cold-item signal
    assert set(weights) == {"popular", "ease", "tfidf", "minilm", "minilm-ft", "projection", "attention", "sasrec-id",
                            "sasrec"}
    assert models["sasrec"]["warm"]["vs_reference"]["reference"] == "sasrec-id"
    # same seed, same numbers (the fine-tuned encoders now come from the cache)
    again = run_experiment(ds, tmp_path / "again", cfg)
    for name in models:
        for protocol in ("warm", "cold"):
            assert again["models"][name][protocol]["test"] == models[name][protocol]["test"], (name, protocol)
