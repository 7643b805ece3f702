"""Encoder fine-tuning on item pairs: pair mining, batches, the training loop (budget,
checkpoints, resume, determinism), the saved folder and ``leanrec encoder finetune``
(the training loop is :mod:`leanrec.encoders.finetune`; the entry points with the
internal validation wired in are :mod:`leanrec.eval.finetune`).

The training runs fine-tune a 1-layer pruned MiniLM on a small generated data set, so
the whole file stays well under a minute on two cores.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pandas as pd
import pytest

from leanrec.data.schema import Dataset, Events, Items
from leanrec.data.synth import make_dataset
from leanrec.cost.finetune_check import compare_onnx_int8
from leanrec.data.history import History
from leanrec.encoders import finetune as ft
from leanrec.encoders.finetune import (
    CHECKPOINT_DIR,
    RECORD_FILENAME,
    epoch_batches,
    finetune_key,
    mine_pairs,
    no_duplicate_batches,
    train_encoder,
)
from leanrec.encoders.finetune import cache as ft_cache
from leanrec.encoders.finetune import train as ft_train
from leanrec.eval.finetune import ensure_finetuned, finetune_encoder
from leanrec.eval.validation import ValidationSet

# 3 epochs of 6 steps of 16 pairs on a 1-layer model: a few seconds a run
TINY = {"layers": 1, "max_epochs": 3, "pairs_per_epoch": 96, "batch_size": 16, "lr": 1e-4, "patience": 3, "seed": 7}


@pytest.fixture(scope="module")
def ds():
    return make_dataset(n_users=100, n_items=60, events_per_user=(5, 10), seed=1)


def _tiny_dataset(events):
    items = Items.from_frame(pd.DataFrame({"item_id": [1, 2, 3, 4], "text": ["a", "b", "c", "d"]}))
    frame = pd.DataFrame(events, columns=["user_id", "item_id", "timestamp"])
    return Dataset(items, Events.from_frame(frame), name="tiny")


def _weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def _same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def _record(folder):
    return json.loads((folder / RECORD_FILENAME).read_text())


# -- pairs and batches ------------------------------------------------------------------

def test_mine_pairs_follow_the_history_order_within_the_window_without_self_pairs():
    # user 1: items 2, 1, 2, 3 by time (3 and 4 tie at t=30: item order breaks the tie)
    ds = _tiny_dataset([(1, 2, 10), (1, 1, 20), (1, 2, 25), (1, 4, 30), (1, 3, 30), (2, 4, 5), (3, 1, 1)])
    pos = {i: p for p, i in enumerate([1, 2, 3, 4])}
    seq = [pos[i] for i in (2, 1, 2, 3, 4)]
    assert History.from_dataset(ds).sequences[0].tolist() == seq
    got = mine_pairs(ds, window=2).tolist()
    want = [[seq[t], seq[t + d]] for t in range(len(seq)) for d in (1, 2)
            if t + d < len(seq) and seq[t] != seq[t + d]]
    assert got == want  # (item 2, item 2) two steps apart is dropped; users with one event give none
    assert mine_pairs(ds, window=1).tolist() == [[seq[t], seq[t + 1]] for t in range(4)]
    assert len(mine_pairs(ds, window=10)) == len([1 for t in range(5) for u in range(t + 1, 5) if seq[t] != seq[u]])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="window"):
            mine_pairs(ds, window=bad)


def test_mine_pairs_on_generated_data_matches_a_brute_force(ds):
    pairs = mine_pairs(ds, window=3)
    want = [(s[t], s[t + d]) for s in History.from_dataset(ds).sequences for t in range(len(s))
            for d in (1, 2, 3) if t + d < len(s) and s[t] != s[t + d]]
    assert pairs.dtype == np.int64 and [tuple(p) for p in pairs.tolist()] == want


def test_batches_never_repeat_an_item_and_are_deterministic(ds):
    pool = mine_pairs(ds, window=3)
    batches = epoch_batches(pool, 1, pairs_per_epoch=400, batch_size=16, seed=0)
    assert sum(len(b) for b in batches) > 300
    for b in batches:
        assert 4 <= len(b) <= 16 and len(np.unique(b)) == 2 * len(b)
    again = epoch_batches(pool, 1, pairs_per_epoch=400, batch_size=16, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(batches, again)) and len(batches) == len(again)
    other = epoch_batches(pool, 2, pairs_per_epoch=400, batch_size=16, seed=0)
    assert not np.array_equal(batches[0], other[0])  # a new sample every epoch
    # the greedy cut itself: clashing pairs wait for a later batch
    idx = no_duplicate_batches(np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5]]), 3)
    assert [b.tolist() for b in idx] == [[0, 2, 4], [1, 3]]
    with pytest.raises(ValueError, match="batch_size"):
        no_duplicate_batches(pool, 1)


def test_validation_set_scores_the_content_recommender(ds):
    from leanrec.data.split import make_split
    from leanrec.encoders import load_encoder
    from leanrec.eval.evaluate import evaluate
    from leanrec.models.content import ContentRecommender

    enc = load_encoder("tfidf").fit(ds.items.texts)
    vectors = enc.encode(ds.items.texts)
    split = make_split(ds, "warm")
    model = ContentRecommender(encoder=enc, half_life=4.0, cache=False).fit(split.train_valid)
    want = evaluate(model, split.test).metrics["ndcg@10"]
    assert ValidationSet(ds, half_life=4.0).ndcg(vectors) == pytest.approx(want, abs=1e-6)


# -- the training loop ----------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(ds, tmp_path_factory):
    """One uninterrupted run: what determinism and resume are compared with."""
    out = tmp_path_factory.mktemp("ref") / "model"
    events = []
    finetune_encoder(ds, out, progress=events.append, **TINY)
    return out, events


@pytest.mark.slow
def test_finetune_records_validation_and_saves_a_loadable_encoder(ds, reference):
    from leanrec.encoders import load_encoder

    out, events = reference
    rec = _record(out)
    assert [h["epoch"] for h in rec["history"]] == [0, 1, 2, 3]
    assert rec["history"][0]["train_loss"] is None and all(h["train_loss"] > 0 for h in rec["history"][1:])
    assert all(0 <= h["valid_ndcg10"] <= 1 for h in rec["history"])
    assert rec["best_valid_ndcg10"] == max(h["valid_ndcg10"] for h in rec["history"])
    assert rec["history"][rec["best_epoch"]]["valid_ndcg10"] == rec["best_valid_ndcg10"]
    assert rec["frozen_valid_ndcg10"] == rec["history"][0]["valid_ndcg10"]
    assert rec["stopped"] == "max_epochs" and rec["seed"] == 7 and rec["layers"] == 1 and rec["precision"] == "fp32"
    assert rec["n_events"] == len(ds.events) and rec["train_s"] > 0 and rec["cpu_s"] > 0
    # the validation's own account, in the record format cached folders already hold
    assert rec["validation"] == ValidationSet(ds, half_life=8.0).describe()
    assert rec["validation"]["protocol"].startswith("warm split of the given data set: pairs from train_valid")
    assert set(rec["versions"]) == {"torch", "transformers", "sentence-transformers"}
    assert not (out / CHECKPOINT_DIR).exists() and not out.with_name("model.tmp").exists()
    kinds = [e["event"] for e in events]
    assert kinds.count("step") == sum(h["steps"] for h in rec["history"]) and kinds.count("epoch") == 4
    # the saved folder is the best epoch's model: its vectors reproduce the recorded NDCG
    vectors = load_encoder(str(out)).encode(ds.items.texts)
    assert ValidationSet(ds, half_life=8.0).ndcg(vectors) == pytest.approx(rec["best_valid_ndcg10"], abs=1e-6)
    with pytest.raises(FileExistsError, match="not empty"):
        finetune_encoder(ds, out, **TINY)
    with pytest.raises(FileExistsError, match="finished"):
        finetune_encoder(ds, out, resume=True, **TINY)


@pytest.mark.slow
def test_same_seed_same_weights_and_numbers(ds, reference, tmp_path):
    out = finetune_encoder(ds, tmp_path / "again", **TINY)
    assert _same_weights(out, reference[0])
    assert [h["valid_ndcg10"] for h in _record(out)["history"]] == \
        [h["valid_ndcg10"] for h in _record(reference[0])["history"]]


class _Stop(Exception):
    pass


@pytest.mark.slow
def test_resume_after_a_crash_equals_the_uninterrupted_run(ds, reference, tmp_path):
    out = tmp_path / "crashed"

    def crash(event):
        if event["event"] == "step" and event["epoch"] == 2 and event["step"] == 3:
            raise _Stop

    with pytest.raises(_Stop):
        finetune_encoder(ds, out, progress=crash, **TINY)
    assert (out / CHECKPOINT_DIR / "state.ckpt").is_file() and not (out / "config.json").exists()
    with pytest.raises(FileExistsError, match="resume"):
        finetune_encoder(ds, out, **TINY)
    with pytest.raises(ValueError, match="lr="):
        finetune_encoder(ds, out, resume=True, **{**TINY, "lr": 3e-4})
    finetune_encoder(ds, out, resume=True, **TINY)  # goes on from the end of epoch 1
    assert _same_weights(out, reference[0])
    rec = _record(out)
    assert rec["resumes"] == 1 and [h["valid_ndcg10"] for h in rec["history"]] == \
        [h["valid_ndcg10"] for h in _record(reference[0])["history"]]


@pytest.mark.slow
def test_time_budget_stops_mid_epoch_and_a_larger_budget_resumes_exactly(ds, reference, tmp_path, monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(ft_train, "_now", lambda: clock["t"])

    def spend_budget(event):  # the budget runs out during epoch 2's fourth step
        if event["event"] == "step" and event["epoch"] == 2 and event["step"] == 4:
            clock["t"] = 100.0

    out = finetune_encoder(ds, tmp_path / "budget", time_budget_s=50.0, progress=spend_budget, **TINY)
    rec = _record(out)
    assert rec["stopped"] == "time_budget" and rec["checkpoint_kept"]
    assert rec["history"][-1] == {**rec["history"][-1], "epoch": 2, "steps": 4, "partial": True}
    assert (out / CHECKPOINT_DIR / "state.ckpt").is_file() and (out / "config.json").is_file()
    clock["t"] = 0.0  # the next run's own clock starts at 0; the checkpoint carries the 100 s spent
    finetune_encoder(ds, out, time_budget_s=1000.0, resume=True, **TINY)
    assert _same_weights(out, reference[0])
    rec = _record(out)
    assert rec["stopped"] == "max_epochs" and not (out / CHECKPOINT_DIR).exists() and rec["train_s"] >= 100
    assert [h["epoch"] for h in rec["history"]] == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_budget_spent_before_training_keeps_the_frozen_model(ds, tmp_path, monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(ft_train, "_now", lambda: clock["t"])

    def spend(event):
        if event["event"] == "epoch" and event["epoch"] == 0:
            clock["t"] = 10.0

    out = finetune_encoder(ds, tmp_path / "frozen", time_budget_s=5.0, progress=spend,
                           **{**TINY, "max_epochs": 1})
    rec = _record(out)
    assert rec["stopped"] == "time_budget" and rec["best_epoch"] == 0 and len(rec["history"]) == 1


def test_bad_arguments_fail_fast_with_clear_messages(ds, tmp_path):
    for kwargs, match in [({"batch_size": 1}, "batch_size"), ({"precision": "fp16"}, "precision"),
                          ({"window": 0}, "window"), ({"max_epochs": 0}, "max_epochs"), ({"lr": -1.0}, "lr"),
                          ({"time_budget_s": 0}, "time_budget_s"), ({"layers": 99}, "layers"),
                          ({"model": "no-such-model"}, "not available")]:
        with pytest.raises(ValueError, match=match):
            finetune_encoder(ds, tmp_path / "x", **{**TINY, **kwargs})
    one_event_each = _tiny_dataset([(1, 1, 1), (2, 2, 1)])
    with pytest.raises(ValueError, match="two or more events"):
        finetune_encoder(one_event_each, tmp_path / "y", **TINY)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        finetune_encoder(ds, tmp_path / "full", **TINY)


def test_cache_key_covers_data_settings_and_seed(ds, tmp_path, monkeypatch):
    base = finetune_key(ds, **TINY)
    assert finetune_key(ds, **TINY, threads=2) == base  # threads do not change what is learnt
    default_lr = inspect.signature(train_encoder).parameters["lr"].default
    assert finetune_key(ds, **{**TINY, "lr": default_lr}) == \
        finetune_key(ds, **{k: v for k, v in TINY.items() if k != "lr"})  # default = omitted
    assert finetune_key(ds, **{**TINY, "seed": 8}) != base
    assert finetune_key(ds, **{**TINY, "window": 2}) != base
    assert finetune_key(ds.with_events(ds.events.frame.iloc[:-1]), **TINY) != base
    with pytest.raises(TypeError, match="out_dir"):
        finetune_key(ds, out_dir="x")

    calls = []

    def fake(dataset, out_dir, **kwargs):
        calls.append(kwargs)
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        (out_dir / RECORD_FILENAME).write_text("{}")
        return out_dir

    monkeypatch.setattr(ft_cache, "train_encoder", fake)
    first = ensure_finetuned(ds, **TINY)
    assert first == ensure_finetuned(ds, **TINY) and len(calls) == 1 and calls[0]["resume"] is True
    assert calls[0]["validation"] is ValidationSet  # the key ignores it; the training gets leanrec's
    assert first.name == f"finetuned-{base[:16]}" and first.parent.name == "encoders"


# -- the command line -------------------------------------------------------------------

def _cli(*args):
    from typer.testing import CliRunner

    from leanrec.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.mark.slow
def test_train_encoder_cli_fine_tunes_and_compares_onnx_int8(tmp_path):
    out = tmp_path / "enc"
    result = _cli("encoder", "finetune", "--out", str(out), "--synthetic", "--layers", "1", "--max-epochs", "1",
                  "--pairs-per-epoch", "64", "--batch-size", "16", "--lr", "1e-4", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "epoch 0: loss - · valid NDCG@10" in result.output and "epoch 1: loss" in result.output
    assert "ONNX int8" in result.output and "ratio" in result.output
    assert _record(out)["seed"] == 3 and (out / "model.safetensors").is_file()
    # the folder asks its int8 exports for the scheme the fine-tune chose, and the export used it
    from leanrec.encoders.saved import read_config

    assert json.loads((out / "leanrec_export.json").read_text()) == {"int8_scheme": ft.ONNX_INT8_SCHEME}
    export = result.output.split("export in ")[-1].strip()
    assert read_config(export)["int8_scheme"] == ft.ONNX_INT8_SCHEME


@pytest.mark.slow
def test_compare_onnx_int8_with_another_scheme(ds, reference):
    res = compare_onnx_int8(reference[0], ds, int8_scheme="s8-ffn-out-fp32")
    assert res["int8_scheme"] == "s8-ffn-out-fp32" and "s8_ffn_out_fp32" in res["onnx_folder"]
    assert res["torch_ndcg10"] == pytest.approx(_record(reference[0])["best_valid_ndcg10"], abs=1e-6)
    assert 0.9 < res["cosine_mean"] <= 1.0 + 1e-6 and 0 <= res["top10_overlap"] <= 1
    lo, hi = res["ratio_ci95"]
    assert lo <= hi and res["validation_users"] == len(ValidationSet(ds).targets)


def test_int8_scheme_arguments_are_checked(ds, tmp_path):
    from leanrec.encoders.onnx_export import export_onnx

    with pytest.raises(ValueError, match="applies to precision"):
        export_onnx("minilm", tmp_path / "a", precision="fp32", int8_scheme="u8")
    with pytest.raises(ValueError, match="int8_scheme must be one of"):
        export_onnx("minilm", tmp_path / "b", precision="int8", int8_scheme="int4")
    with pytest.raises(ValueError, match="onnx_int8_scheme"):
        finetune_encoder(ds, tmp_path / "c", **{**TINY, "onnx_int8_scheme": "int4"})


def test_train_cli_errors_are_clear(tmp_path):
    result = _cli("encoder", "finetune", "--out", str(tmp_path / "e"), "--synthetic", "--precision", "fp16")
    assert result.exit_code == 2 and "fp32, bf16" in result.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = _cli("encoder", "finetune", "--out", str(tmp_path / "full"), "--synthetic", "--layers", "1")
    assert result.exit_code == 2 and "not empty" in result.output
    result = _cli("model", "train")  # no --out (the model folder)
    assert result.exit_code == 2 and "--out" in result.output
    result = _cli("encoder", "--help")
    assert result.exit_code == 0 and "finetune" in result.output
    result = _cli("model", "train", "--help")
    assert result.exit_code == 0 and "--model" in result.output


def test_mnrl_loss_matches_sentence_transformers_and_the_correction_is_relative():
    import torch

    try:
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )
    except ImportError:  # older sentence-transformers
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    from leanrec.encoders.resolve import resolve_model
    from leanrec.encoders.sbert_load import load_sentence_transformer

    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    theirs = MultipleNegativesRankingLoss(load_sentence_transformer(resolve_model("minilm")))
    want = theirs.compute_loss_from_embeddings([a, b], None)
    assert float(ft.mnrl_loss(a, b, symmetric=False)) == pytest.approx(float(want), rel=1e-5)
    logits = 20.0 * a @ b.T
    both = (want + torch.nn.functional.cross_entropy(logits.T, torch.arange(8))) / 2
    assert float(ft.mnrl_loss(a, b)) == pytest.approx(float(both), rel=1e-6)
    # a constant log Q changes nothing; a popular item (large Q) is penalised less as a negative
    const = torch.full((8,), -3.0)
    assert float(ft.mnrl_loss(a, b, log_q_a=const, log_q_b=const)) == pytest.approx(float(both), rel=1e-6)
    q = torch.zeros(8)
    q[3] = -5.0  # item 3 is rare: its logit gets +5 as a candidate, so the other anchors' loss rises
    assert float(ft.mnrl_loss(a, b, log_q_b=q, symmetric=False)) > float(want)
