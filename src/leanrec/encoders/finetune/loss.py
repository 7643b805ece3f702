"""The fine-tune's loss: MultipleNegativesRankingLoss with the sampling-bias correction.

In-batch negatives (each pair's partner is the positive, every other pair's items are
negatives), symmetric, scale 20 as in sentence-transformers; why the logQ correction is
there, and what it measured, is in :mod:`leanrec.encoders.finetune`.
"""

from __future__ import annotations

import contextlib

import numpy as np

from leanrec.encoders.backends import TRAINING_PRECISIONS, check_precision
from leanrec.encoders.finetune.model import features

__all__ = ["SCALE", "TRAINING_PRECISIONS", "batch_loss", "check_training_precision", "mnrl_loss"]

#: MultipleNegativesRankingLoss's similarity scale (sentence-transformers' default).
SCALE = 20.0

def mnrl_loss(a, b, *, log_q_a=None, log_q_b=None, symmetric: bool = True, scale: float = SCALE):
    """MultipleNegativesRankingLoss of unit row vectors ``a[i]`` (anchors) and ``b[i]`` (positives).

    Row i's positive is ``b[i]``, the other rows of ``b`` are its negatives (cross-entropy
    over ``scale * a @ b.T``), and with ``symmetric`` the same from ``b`` to ``a``,
    averaged. ``log_q_b`` / ``log_q_a`` (tensors, one value per row) are subtracted from
    the logits of each candidate: the sampling-bias correction. Without them and
    ``symmetric=False`` this is sentence-transformers' loss.
    """
    import torch

    sims = scale * (a @ b.T)
    labels = torch.arange(len(a))
    ab = sims if log_q_b is None else sims - log_q_b[None, :]
    loss = torch.nn.functional.cross_entropy(ab, labels)
    if symmetric:
        ba = sims.T if log_q_a is None else sims.T - log_q_a[None, :]
        loss = (loss + torch.nn.functional.cross_entropy(ba, labels)) / 2
    return loss


def batch_loss(model, texts: list[str], pairs: np.ndarray, *, precision: str, symmetric: bool,
               log_q: np.ndarray | None = None):
    """:func:`mnrl_loss` of one batch of item ``pairs`` (one forward pass for both sides)."""
    import torch

    a_items, b_items = pairs[:, 0], pairs[:, 1]
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    with ctx:
        emb = model(features(model, [texts[i] for i in a_items] + [texts[i] for i in b_items]))["sentence_embedding"]
    emb = torch.nn.functional.normalize(emb.float(), dim=-1)
    q_a = None if log_q is None else torch.from_numpy(log_q[a_items])
    q_b = None if log_q is None else torch.from_numpy(log_q[b_items])
    return mnrl_loss(emb[:len(pairs)], emb[len(pairs):], log_q_a=q_a, log_q_b=q_b, symmetric=symmetric)


def check_training_precision(precision: object) -> str:
    """``precision`` if it is one of :data:`TRAINING_PRECISIONS`, else a ValueError naming them."""
    return check_precision(precision, TRAINING_PRECISIONS)
