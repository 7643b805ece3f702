"""Layer pruning + distillation: the student gets closer to the teacher, and every backend takes it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leanrec.encoders import ModelNotAvailableError, load_encoder
from leanrec.encoders.layer_distill import distill_layers
from leanrec.encoders.resolve import resolve_model

TEXTS = [f"{adj} {noun} for {use}, model {i}" for i, (adj, noun, use) in enumerate(
    (a, n, u) for a in ("red", "quiet", "compact", "wireless", "steel") for n in ("kettle", "headphones", "drill",
                                                                                 "yoga mat")
    for u in ("home", "travel", "office"))]


def test_unbuilt_distilled_alias_fails_fast_with_the_command_to_build_it():
    with pytest.raises(ModelNotAvailableError, match="leanrec encoder distill --layers 2"):
        resolve_model("minilm-L2-distilled")


@pytest.mark.slow
def test_distilled_student_improves_on_the_pruned_model_and_exports(tmp_path):
    out = distill_layers("minilm", tmp_path / "student", texts=TEXTS, layers=1, max_epochs=3, batch_size=8,
                         lr=2e-4, time_budget_s=60)
    record = json.loads((out / "leanrec_distill.json").read_text())
    history = record["history"]
    assert history[0]["epoch"] == 0 and record["best_holdout_cosine"] >= history[0]["holdout_cosine"]
    assert record["best_holdout_cosine"] > history[0]["holdout_cosine"] + 0.01  # training helped
    assert record["layers"] == 1 and json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
    # a plain sentence-transformers folder: torch and ONNX backends take it by path
    torch_enc = load_encoder(str(out))
    onnx_enc = load_encoder(str(out), backend="onnx", precision="fp32", threads=1)
    a, b = torch_enc.encode(TEXTS[:5]), onnx_enc.encode(TEXTS[:5])
    assert np.min((a * b).sum(1)) >= 0.999
    with pytest.raises(FileExistsError):
        distill_layers("minilm", out, texts=TEXTS, layers=1)
