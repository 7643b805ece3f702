"""What a fine-tuned encoder costs: to serve as ONNX int8, and to train at bf16.

Two measurements of :mod:`leanrec.encoders.finetune`'s output and training loop, each
judged like every other cost cut here (quality kept, with an interval, against time):

* :func:`compare_onnx_int8` — the serving path's int8 export of a fine-tuned folder
  against its torch fp32 vectors, on the fine-tune's own internal validation
  (:class:`~leanrec.eval.validation.ValidationSet`);
* :func:`time_training_steps` — the training step at fp32 against bf16 autocast, on the
  same batches, dropout draws and starting weights. Measured on a 2-core AMD EPYC without
  AVX512-BF16/AMX (``benchmarks/finetune_encoder.py``): bf16 is 17x slower per step at
  the same loss.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from leanrec.core.bootstrap import ratio_interval
from leanrec.data.split import make_split
from leanrec.encoders import load_encoder
from leanrec.encoders.finetune.folder import RECORD_FILENAME
from leanrec.encoders.finetune.loss import batch_loss, check_training_precision
from leanrec.encoders.finetune.model import load_trainable
from leanrec.encoders.finetune.pairs import epoch_batches, mine_pairs, sampling_log_q
from leanrec.encoders.finetune.train import check_int
from leanrec.encoders.onnx_quantize import int8_scheme_hint
from leanrec.encoders.saved import read_config
from leanrec.eval.validation import ValidationSet

__all__ = ["compare_onnx_int8", "time_training_steps"]


def _ratio_ci(numerator: np.ndarray, denominator: np.ndarray, users: np.ndarray) -> list[float]:
    """95% interval of ``numerator.sum() / denominator.sum()`` from a bootstrap over users (a
    user's targets are resampled together: they are not independent); 1000 resamples, the
    count the benchmark's published intervals were drawn with."""
    return list(ratio_interval(numerator, denominator, groups=users, n_boot=1000))


def compare_onnx_int8(folder: str | os.PathLike[str], dataset, *, half_life: float | None | str = "record",
                      threads: int | None = 1, int8_scheme: str | None = None, last_n: int = 10) -> dict[str, Any]:
    """Internal-validation NDCG@10 of ``folder`` on torch fp32 and as an ONNX int8 export.

    Exports (or reuses the cached export of) ``folder`` with ``load_encoder(folder,
    backend="onnx", precision="int8")`` — the serving path, which takes the folder's int8
    scheme hint — or, with ``int8_scheme``, with that scheme of
    :data:`~leanrec.encoders.onnx_quantize.INT8_SCHEMES` (cached alongside). Encodes every
    item text both ways and scores both on :class:`ValidationSet` (``half_life="record"``:
    the one in the folder's ``leanrec_finetune.json``, else 8). Returns both NDCG@10 values,
    their ratio (int8 / torch) with a 95% paired-bootstrap interval over users (at NDCG@10
    ~0.02-0.05 on ~900 users, one user's target crossing the top-10 edge moves the ratio by
    1-3%), how many users' NDCG@10 changed, the mean overlap of the two top-10 lists, the
    per-item cosine between the two vectors (min, mean), seconds, and the export's folder;
    and the same ratio over each user's last ``last_n`` events (``ratio_last10`` by
    default: ~10x the targets, a tighter interval; see :class:`ValidationSet`).
    """
    folder = Path(folder).expanduser()
    if half_life == "record":
        try:
            half_life = json.loads((folder / RECORD_FILENAME).read_text())["half_life"]
        except (OSError, ValueError, KeyError):
            half_life = 8.0
    texts = list(dataset.items.texts)
    validation = ValidationSet(dataset, half_life)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    torch_vecs = load_encoder(str(folder), threads=threads).encode(texts)
    t1 = time.perf_counter()
    onnx = load_encoder(str(folder), backend="onnx", precision="int8", threads=threads, int8_scheme=int8_scheme)
    onnx_path = str(getattr(onnx, "path", ""))
    t2 = time.perf_counter()
    int8_vecs = onnx.encode(texts)
    t3 = time.perf_counter()
    res_torch, res_int8 = validation.evaluate(torch_vecs), validation.evaluate(int8_vecs)
    per_torch, per_int8 = res_torch.per_user["ndcg@10"], res_int8.per_user["ndcg@10"]
    torch_ndcg, int8_ndcg = float(per_torch.mean()), float(per_int8.mean())
    overlap = np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(res_torch.top_items, res_int8.top_items)])
    cos = np.sum(torch_vecs.astype(np.float64) * int8_vecs.astype(np.float64), axis=1)
    wide = ValidationSet(dataset, half_life, last_n=last_n)  # type: ignore[arg-type]
    wide_torch = wide.evaluate(torch_vecs).per_user["ndcg@10"]
    wide_int8 = wide.evaluate(int8_vecs).per_user["ndcg@10"]
    try:
        scheme = read_config(onnx_path).get("int8_scheme", "s8")
    except (OSError, ValueError):
        scheme = int8_scheme or int8_scheme_hint(folder) or "s8"
    return {
        "torch_ndcg10": torch_ndcg, "onnx_int8_ndcg10": int8_ndcg,
        "ratio": int8_ndcg / torch_ndcg if torch_ndcg > 0 else float("nan"),
        "ratio_ci95": _ratio_ci(per_int8, per_torch, validation.target_users),
        "users_ndcg_changed": int(np.sum(~np.isclose(per_torch, per_int8))),
        f"torch_ndcg10_last{last_n}": float(wide_torch.mean()),
        f"onnx_int8_ndcg10_last{last_n}": float(wide_int8.mean()),
        f"ratio_last{last_n}": float(wide_int8.sum() / wide_torch.sum()) if wide_torch.sum() > 0 else float("nan"),
        f"ratio_last{last_n}_ci95": _ratio_ci(wide_int8, wide_torch, wide.target_users),
        f"targets_last{last_n}": len(wide.targets),
        "top10_overlap": float(overlap),
        "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
        "torch_encode_s": t1 - t0, "onnx_load_s": t2 - t1, "onnx_encode_s": t3 - t2,
        "onnx_folder": onnx_path, "int8_scheme": scheme, "half_life": half_life,
        "validation_users": len(validation.targets),
    }


def time_training_steps(dataset, *, model: str = "minilm", precision: str = "fp32", steps: int = 20,
                        batch_size: int = 64, lr: float = 5e-5, window: int = 3, layers: int | None = None,
                        seed: int = 42, threads: int | None = 1) -> dict[str, Any]:
    """Time ``steps`` training steps of the fine-tune at ``precision`` (fp32 or bf16 autocast).

    The same batches (the first ones of epoch 1 for this seed, cycled if there are fewer),
    dropout draws, constant learning rate ``lr`` and starting weights whatever the
    precision, so two calls compare like with like. Returns the seconds and training loss
    of every step, their medians, and ``heldout_loss``: the fp32 loss (eval mode, no
    dropout) of one fixed batch of pairs that was not trained on, before and after the
    steps.
    """
    import torch

    from leanrec.encoders.resolve import resolve_model
    from leanrec.encoders.sbert_load import check_layers, transformer_num_layers

    precision = check_training_precision(precision)
    steps = check_int("steps", steps, 1)
    if threads is not None:
        torch.set_num_threads(check_int("threads", threads, 1))
    resolved = resolve_model(model)
    layers = check_layers(layers, transformer_num_layers(resolved))
    texts = list(dataset.items.texts)
    pool = mine_pairs(make_split(dataset, "warm").train_valid, window)
    batches = epoch_batches(pool, 1, pairs_per_epoch=batch_size * (steps + 1), batch_size=batch_size, seed=seed)
    if len(batches) < 2:
        raise ValueError("too few pairs for a held-out batch and training batches")
    heldout, train = batches[-1], batches[:-1]
    log_q = sampling_log_q(pool, dataset.n_items)
    st = load_trainable(resolved, layers, train_embeddings=False)
    optimizer = torch.optim.AdamW([p for p in st.parameters() if p.requires_grad], lr=lr)

    def heldout_loss() -> float:
        st.eval()
        with torch.no_grad():
            return float(batch_loss(st, texts, heldout, precision="fp32", symmetric=True, log_q=log_q))

    before = heldout_loss()
    torch.manual_seed(seed)
    st.train()
    seconds, losses = [], []
    for k in range(steps):
        pairs = train[k % len(train)]
        t0 = time.perf_counter()
        loss = batch_loss(st, texts, pairs, precision=precision, symmetric=True, log_q=log_q)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    return {"precision": precision, "steps": steps, "batch_size": batch_size, "step_seconds": seconds,
            "median_step_s": float(np.median(seconds)), "losses": losses, "last_loss": losses[-1],
            "heldout_loss_before": before, "heldout_loss_after": heldout_loss(), "threads": threads,
            "layers": layers}
