"""The sentence model as the fine-tune trains and validates it (torch, imported on use).

Shared by the training loop and the cost check that times its steps
(:func:`leanrec.cost.finetune_check.time_training_steps`), so both load, prune and freeze
the model the same way.
"""

from __future__ import annotations

import numpy as np

__all__ = ["encode_items", "features", "load_trainable"]


def features(model, texts: list[str]):
    """The model's input features of ``texts``."""
    prepare = getattr(model, "preprocess", None) or model.tokenize  # tokenize is deprecated in ST 6
    return prepare(texts)


def load_trainable(resolved, layers: int | None, *, train_embeddings: bool):
    """The sentence-transformers model of ``resolved``, cut to its first ``layers`` layers
    (None: all), its token embedding table frozen unless ``train_embeddings`` (cheaper
    steps, and tokens of items never seen in training keep their pretrained vectors)."""
    from leanrec.encoders.sbert_load import load_sentence_transformer, prune_layers

    st = load_sentence_transformer(resolved)
    if layers is not None:
        prune_layers(st, layers)
    if not train_embeddings:
        for p in st[0].auto_model.embeddings.parameters():
            p.requires_grad_(False)
    return st


def encode_items(model, texts: list[str], batch_size: int = 128) -> np.ndarray:
    """Unit fp32 vectors of ``texts`` with the model in eval mode (length-sorted batches)."""
    import torch

    model.eval()
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    out = np.zeros((len(texts), 0), np.float32)
    chunks = []
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            emb = model(features(model, [texts[i] for i in idx]))["sentence_embedding"]
            chunks.append(torch.nn.functional.normalize(emb.float(), dim=-1).numpy())
    vecs = np.concatenate(chunks) if chunks else out
    result = np.empty_like(vecs)
    result[np.asarray(order, np.int64)] = vecs
    return result
