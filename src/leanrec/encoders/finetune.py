"""Contrastive fine-tuning of the sentence model on item pairs mined from interactions.

Why: a pretrained sentence model places items by what their texts *say*; users consume
items by taste. Items a user consumed close together in their history are a free signal
of "these go together", so we fine-tune the encoder to put such pairs near each other:

* **pairs** (:func:`mine_pairs`): for each user's events in (timestamp, item) order, the
  pairs ``(seq[t], seq[t+d])`` for ``1 <= d <= window``, repeat pairs of one item dropped;
* **loss**: MultipleNegativesRankingLoss (in-batch negatives: each pair's partner is the
  positive, every other pair's items are negatives), symmetric (anchor->positive and
  back), scale 20 (temperature 0.05) as in sentence-transformers, **with the
  sampling-bias ("logQ") correction**: the in-batch negatives are the other pairs' items,
  so an item turns up as a negative in proportion to its popularity Q(j), and plain MNRL
  learns a popularity-free, PMI-like similarity. Subtracting log Q(j) from item j's logit
  during training (Yi et al., RecSys 2019) makes the similarity track P(j | i) instead,
  popularity included — what the content recommender needs. Measured on ML-100K's warm
  training set (1-layer MiniLM proxy, 150 steps of 64 pairs, internal validation
  NDCG@10 from 0.018 frozen): plain MNRL 0.021 (lr 2e-4; 0.013 at 1e-3), corrected
  0.041 / 0.048 / 0.056 at lr 2e-4 / 5e-4 / 1e-3;
* **batches** never hold one item twice (a duplicate would be a false negative), built
  deterministically by :func:`no_duplicate_batches`;
* **internal validation** for early stopping: the warm protocol *inside* the data set we
  are given (``make_split(dataset, "warm")``): pairs come only from ``.train_valid``;
  after every epoch (and for the frozen model, epoch 0) the current model encodes every
  item text and the content recommender's user vectors (time-decayed means,
  :func:`~leanrec.models.content.decay_weights`) rank all items for each user's last
  event (``.test``), seen items excluded, with :func:`leanrec.eval.evaluate`. The best
  epoch's weights are kept; training stops after ``patience`` epochs without
  improvement, ``max_epochs``, or when ``time_budget_s`` is spent (checked after every
  batch).

The result is a plain sentence-transformers folder plus ``leanrec_finetune.json`` (the
training record), so ``load_encoder(folder)`` and ``load_encoder(folder, backend="onnx",
precision="int8")`` take it by path.

**Checkpoints and resume.** After every epoch (and when the budget stops training mid-epoch)
``out_dir/checkpoint/state.ckpt`` is replaced atomically with everything needed to go on:
weights, optimizer state, the torch RNG state, epoch and step, history and the best
weights so far. ``resume=True`` continues from it and ends with exactly the weights of an
uninterrupted run (the per-epoch pair sample and batch order are functions of the seed
and epoch, the learning rate a function of the global step). The checkpoint is deleted
when training ends for any reason but the time budget (then it is kept, in the published
folder, so a run with a larger budget can go on).

Measured on ML-100K (``benchmarks/finetune_encoder.py``, MiniLM, one thread of a 2-core
AMD EPYC, defaults: 6 epochs of 2048 pairs, ~4.3 s per step of 64 pairs): the fine-tune
on each protocol's training set takes ~850 s wall; internal validation NDCG@10 goes from
0.0125 to 0.058 (warm training set) and 0.0132 to 0.033 (cold), and the content
recommender's NDCG@10 on the protocols' own validation targets from 0.013 to 0.039 (warm)
and 0.055 to 0.111 (cold items, never seen in training). bf16 autocast is 17x slower per
step on this CPU (no AVX512-BF16/AMX) at the same loss.

Deterministic for a seed and thread count (torch's CPU kernels are deterministic on a
fixed number of threads). The library never prints; ``progress`` gets dicts.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CHECKPOINT_DIR",
    "RECORD_FILENAME",
    "ValidationSet",
    "compare_onnx_int8",
    "ensure_finetuned",
    "epoch_batches",
    "finetune_encoder",
    "finetune_key",
    "finetuned_path",
    "mine_pairs",
    "mnrl_loss",
    "no_duplicate_batches",
    "time_training_steps",
]

#: Bumped when the training procedure changes, so cached fine-tunes are rebuilt.
FINETUNE_VERSION = 1
RECORD_FILENAME = "leanrec_finetune.json"
CHECKPOINT_DIR = "checkpoint"
# ".ckpt" is not a suffix weights_fingerprint hashes, so a kept checkpoint does not change
# the folder's fingerprint (nor cost a hash of its few hundred MiB).
CHECKPOINT_FILE = "state.ckpt"
PRECISIONS = ("fp32", "bf16")
#: MultipleNegativesRankingLoss's similarity scale (sentence-transformers' default).
SCALE = 20.0
#: Share of the nominal number of steps spent warming the learning rate up.
WARMUP = 0.1
#: The int8 scheme (:data:`~leanrec.encoders.onnx_export.INT8_SCHEMES`) a fine-tuned folder
#: asks its ONNX int8 exports to use (its ``leanrec_export.json``). Measured on the ML-100K
#: fine-tunes (``benchmarks/results/finetune_encoder.md``): s8 keeps 0.996 of the torch
#: model's NDCG@10 over each user's last 10 events (95% interval from 0.982) on both
#: protocols and is the fastest and smallest; the other schemes move vectors closer to
#: torch but gave no measurable NDCG@10.
ONNX_INT8_SCHEME = "s8"
#: Settings that may differ between a checkpoint and the run resuming it.
_RESUMABLE_CHANGES = ("time_budget_s", "threads")

# The clock the time budget reads; a module attribute so tests can make it deterministic.
_now = time.perf_counter

Progress = Callable[[dict], None]


# -- pairs and batches ---------------------------------------------------------------------

def mine_pairs(dataset, window: int = 3) -> np.ndarray:
    """Item-position pairs ``int64[n_pairs, 2]`` of items consumed close together.

    For each user's events ordered by (timestamp, item position) — the order of
    ``History.from_dataset(dataset).sequences`` — every ``(seq[t], seq[t + d])`` with
    ``1 <= d <= window``, except pairs of one item with itself. Rows come user by user
    (users in id order), then by ``t``, then by ``d``. Repeated pairs are kept: a pair
    seen often is sampled often.
    """
    from ..data.history import History

    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    window = int(window)
    chunks = []
    for seq in History.from_dataset(dataset).sequences:
        n = len(seq)
        if n < 2:
            continue
        d_max = min(window, n - 1)
        # (t, d) grid in t-major, d-minor order; keep t + d < n
        t = np.repeat(np.arange(n), d_max)
        d = np.tile(np.arange(1, d_max + 1), n)
        keep = t + d < n
        t, d = t[keep], d[keep]
        chunks.append(np.stack([seq[t], seq[t + d]], axis=1))
    if not chunks:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(chunks).astype(np.int64)
    return pairs[pairs[:, 0] != pairs[:, 1]]


def no_duplicate_batches(pairs: np.ndarray, batch_size: int, *, min_size: int = 2) -> list[np.ndarray]:
    """Cut ``pairs`` (in the given order) into batches in which no item appears twice.

    Greedy and deterministic: each batch takes, in order, the remaining pairs whose two
    items are not yet in it, until it holds ``batch_size`` pairs; the skipped pairs wait
    for the next batch. Returns row indices into ``pairs``. Batches smaller than
    ``min_size`` (a lone pair has no in-batch negative) are dropped, so a few pairs of
    very popular items may go unused in an epoch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2, got {batch_size!r}")
    pairs = np.asarray(pairs)
    remaining = list(range(len(pairs)))
    batches = []
    while remaining:
        batch: list[int] = []
        used: set[int] = set()
        rest: list[int] = []
        for idx in remaining:
            a, b = int(pairs[idx, 0]), int(pairs[idx, 1])
            if len(batch) < batch_size and a != b and a not in used and b not in used:
                batch.append(idx)
                used.add(a)
                used.add(b)
            elif a != b:
                rest.append(idx)
        if len(batch) >= min_size:
            batches.append(np.asarray(batch, np.int64))
        remaining = rest  # at least one pair left it (the first always fits), so this ends
    return batches


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), 0xF17E])


def epoch_batches(pool: np.ndarray, epoch: int, *, pairs_per_epoch: int, batch_size: int,
                  seed: int) -> list[np.ndarray]:
    """The batches of one epoch, as ``int64[n, 2]`` item-position pairs.

    ``pairs_per_epoch`` pairs are drawn uniformly without replacement from ``pool`` (all of
    it, shuffled, when it is smaller), each pair's direction flipped with probability 1/2,
    then cut by :func:`no_duplicate_batches` (batches under a quarter of ``batch_size``
    dropped). A function of (seed, epoch) only, which is
    what makes a resumed run equal an uninterrupted one.
    """
    rng = _epoch_rng(seed, epoch)
    n = min(int(pairs_per_epoch), len(pool))
    chosen = pool[rng.permutation(len(pool))[:n]]
    flip = rng.random(n) < 0.5
    chosen = np.where(flip[:, None], chosen[:, ::-1], chosen)
    # The last batches gather the pairs of very popular items that kept clashing; below a
    # quarter of a batch they have too few negatives to be worth a step.
    return [chosen[idx] for idx in no_duplicate_batches(chosen, batch_size, min_size=max(2, batch_size // 4))]


# -- internal validation -------------------------------------------------------------------

class _FixedScorer:
    """What :func:`leanrec.eval.evaluate` needs: ``items_`` and ``score(ids)``, where the ids
    are rows of a fixed matrix of user vectors (one row per validation target)."""

    def __init__(self, items, user_vectors: np.ndarray, item_vectors: np.ndarray) -> None:
        self.items_ = items
        self._users = user_vectors
        self._items = item_vectors

    def score(self, rows) -> np.ndarray:
        return self._users[np.asarray(rows, np.int64)] @ self._items.T


class ValidationSet:
    """The internal validation of a fine-tune: the warm protocol inside ``dataset``.

    The target of each user with two or more events is their last event in (timestamp,
    item) order — ``make_split(dataset, "warm").test`` — and their user vector the content
    recommender's: the time-decayed mean (``half_life`` in events) of the vectors of every
    item before it (the ``.train_valid`` history); every item is ranked, the items before
    the target excluded. ``last_n > 1`` adds each user's earlier events as targets too (the
    last ``last_n``, each with the history before it): several times the targets, so a
    tighter estimate where two encoders are compared (it overlaps what a fine-tune trained
    on, so it is not for early stopping). ``.train`` is the ``.train_valid`` data set
    (where a fine-tune mines its pairs). :meth:`ndcg` takes item vectors
    (``float32[n_items, d]``, unit rows).
    """

    def __init__(self, dataset, half_life: float | None = 8.0, *, last_n: int = 1) -> None:
        import pandas as pd
        import scipy.sparse as sp

        from ..data.split import Targets, make_split
        from ..data.history import History
        from ..data.history import decay_weights

        last_n = _check_int("last_n", last_n, 1)
        split = make_split(dataset, "warm")
        if len(split.test) == 0:
            raise ValueError("the data set has no user with two or more events: nothing to validate on")
        self.items = dataset.items
        self.train = split.train_valid
        rows, cols, vals, targets, seen, users = [], [], [], [], [], []
        for u, seq in enumerate(History.from_dataset(dataset).sequences):
            for t in range(max(1, len(seq) - last_n), len(seq)):
                users.append(u)
                w = decay_weights(t, half_life)
                rows.append(np.full(t, len(targets)))
                cols.append(seq[:t])
                vals.append(w / w.sum())
                targets.append(int(seq[t]))
                seen.append(seq[:t])
        n = len(targets)
        self._weights = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                      shape=(n, dataset.n_items))
        # "user ids" are the rows of the weight matrix: one per target
        frame = pd.DataFrame({"user_id": np.arange(n), "item_pos": np.asarray(targets, np.int64)})
        frame["item_id"] = dataset.items.ids[frame["item_pos"].to_numpy()]
        self.targets = Targets(frame, seen)
        #: the user (row of ``History.from_dataset(dataset)``) of every target
        self.target_users = np.asarray(users, np.int64)

    def evaluate(self, item_vectors: np.ndarray):
        """The full :class:`~leanrec.eval.evaluate.EvalResult` for these item vectors."""
        from ..eval.evaluate import evaluate

        V = np.asarray(item_vectors, np.float32)
        users = np.asarray(self._weights @ V.astype(np.float64), np.float32)
        return evaluate(_FixedScorer(self.items, users, V), self.targets)

    def ndcg(self, item_vectors: np.ndarray) -> float:
        """Mean NDCG@10 over the validation targets."""
        return float(self.evaluate(item_vectors).metrics["ndcg@10"])


# -- the model -----------------------------------------------------------------------------

def _features(model, texts: list[str]):
    prepare = getattr(model, "preprocess", None) or model.tokenize  # tokenize is deprecated in ST 6
    return prepare(texts)


def _encode_items(model, texts: list[str], batch_size: int = 128) -> np.ndarray:
    """Unit fp32 vectors of ``texts`` with the model in eval mode (length-sorted batches)."""
    import torch

    model.eval()
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    out = np.zeros((len(texts), 0), np.float32)
    chunks = []
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            emb = model(_features(model, [texts[i] for i in idx]))["sentence_embedding"]
            chunks.append(torch.nn.functional.normalize(emb.float(), dim=-1).numpy())
    vecs = np.concatenate(chunks) if chunks else out
    result = np.empty_like(vecs)
    result[np.asarray(order, np.int64)] = vecs
    return result


def _log_q(pool: np.ndarray, n_items: int) -> np.ndarray:
    """log of each item's share of the pair slots in ``pool``: how often the batches hold it."""
    counts = np.bincount(pool.ravel(), minlength=n_items).astype(np.float64)
    return np.log(np.maximum(counts, 1.0) / max(1, 2 * len(pool))).astype(np.float32)


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


def _mnrl_loss(model, texts: list[str], pairs: np.ndarray, *, precision: str, symmetric: bool,
               log_q: np.ndarray | None = None):
    """:func:`mnrl_loss` of one batch of item ``pairs`` (one forward pass for both sides)."""
    import torch

    a_items, b_items = pairs[:, 0], pairs[:, 1]
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    with ctx:
        emb = model(_features(model, [texts[i] for i in a_items] + [texts[i] for i in b_items]))["sentence_embedding"]
    emb = torch.nn.functional.normalize(emb.float(), dim=-1)
    q_a = None if log_q is None else torch.from_numpy(log_q[a_items])
    q_b = None if log_q is None else torch.from_numpy(log_q[b_items])
    return mnrl_loss(emb[:len(pairs)], emb[len(pairs):], log_q_a=q_a, log_q_b=q_b, symmetric=symmetric)


def _lr_at(step: int, base_lr: float, total: int) -> float:
    """Linear warm-up over the first WARMUP share of ``total`` steps, then linear decay to 0."""
    warm = max(1, int(WARMUP * total))
    if step < warm:
        return base_lr * (step + 1) / warm
    return base_lr * max(0.0, (total - step) / max(1, total - warm))


def _data_key(dataset) -> str:
    """sha256 of the event log (user, item, timestamp) and the item texts."""
    h = hashlib.sha256()
    ev = dataset.events.frame
    for col in ("user_id", "item_id"):
        h.update(col.encode())
        h.update("\x1f".join(map(str, ev[col].tolist())).encode())
    h.update(np.ascontiguousarray(ev["timestamp"].to_numpy(np.float64)).tobytes())
    h.update("\x1f".join(map(str, dataset.items.ids.tolist())).encode())
    h.update("\x1e".join(dataset.items.texts).encode())
    return h.hexdigest()


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_float(name: str, value: object, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
        math.isfinite(float(value)) and (float(value) > 0 if positive else True)
    ):
        raise ValueError(f"{name} must be a finite number{' > 0' if positive else ''}, got {value!r}")
    return float(value)


def _write_checkpoint(folder: Path, state: dict) -> None:
    """Replace ``folder/state.ckpt`` atomically (write a temporary file, then rename)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (CHECKPOINT_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, folder / CHECKPOINT_FILE)


def _read_checkpoint(folder: Path) -> dict | None:
    import torch

    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _clone_state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def finetune_encoder(dataset, out_dir: str | os.PathLike[str], *, model: str = "minilm",
                     time_budget_s: float = 1200.0, max_epochs: int = 6, pairs_per_epoch: int = 2048,
                     batch_size: int = 64, lr: float = 5e-4, weight_decay: float = 0.01, window: int = 3,
                     half_life: float | None = 8.0, patience: int = 2, layers: int | None = None,
                     train_embeddings: bool = False, symmetric: bool = True, logq_correction: bool = True,
                     onnx_int8_scheme: str | None = ONNX_INT8_SCHEME, seed: int = 42,
                     threads: int | None = 1, precision: str = "fp32", resume: bool = False,
                     progress: Progress | None = None) -> Path:
    """Fine-tune ``model`` on item pairs mined from ``dataset``; save the best epoch at ``out_dir``.

    See the module docstring for the method. Options: ``pairs_per_epoch`` pairs (drawn from
    the mined pool per epoch) in batches of ``batch_size`` pairs; AdamW with ``lr`` (linear
    warm-up over the first 10% of the ``max_epochs`` steps, then linear decay) and
    ``weight_decay``; ``window`` for :func:`mine_pairs`; ``half_life`` of the validation's
    user vectors (events; None = plain mean); ``layers``: keep only the first N transformer
    layers (a cheaper model, e.g. for tests); ``train_embeddings``: also train the token
    embedding table (off: cheaper steps, and tokens of items never seen in training keep
    their pretrained vectors); ``symmetric``: the loss in both directions;
    ``logq_correction``: the sampling-bias correction (module docstring);
    ``onnx_int8_scheme``: written to the folder's ``leanrec_export.json`` so that
    ``load_encoder(folder, backend="onnx", precision="int8")`` quantises it that way
    (None: no hint, the export's default);
    ``precision="bf16"``: bf16 autocast around the forward pass (weights and optimizer
    stay fp32); ``threads``: ``torch.set_num_threads`` (process-wide; None leaves it).

    ``out_dir`` must not exist or be empty, unless ``resume=True``: then a checkpoint in
    it is continued (its settings must match these, except ``time_budget_s`` and
    ``threads``), and training starts afresh when there is none. ``time_budget_s`` counts
    the whole training (validations included) across resumed runs.

    ``progress`` gets dicts: ``{"event": "epoch_start", "epoch", "steps", "max_epochs"}``,
    ``{"event": "step", "epoch", "step", "steps", "loss", "seconds"}`` after every batch,
    ``{"event": "validate", "epoch"}`` before and ``{"event": "epoch", **record}`` after each
    validation (the record has epoch, train_loss, valid_ndcg10, seconds; epoch 0 = the
    frozen model). Exceptions it raises propagate (the last checkpoint stays usable).

    Returns ``out_dir`` as a ``Path``: a sentence-transformers folder with
    ``leanrec_finetune.json``.
    """
    import torch

    from .resolve import resolve_model, weights_fingerprint
    from .sbert import (
        _quiet_transformers,
        check_layers,
        load_sentence_transformer,
        prune_layers,
        transformer_num_layers,
    )

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    time_budget_s = _check_float("time_budget_s", time_budget_s)
    max_epochs = _check_int("max_epochs", max_epochs, 1)
    pairs_per_epoch = _check_int("pairs_per_epoch", pairs_per_epoch, 2)
    batch_size = _check_int("batch_size", batch_size, 2)
    lr = _check_float("lr", lr)
    weight_decay = _check_float("weight_decay", weight_decay, positive=False)
    window = _check_int("window", window, 1)
    patience = _check_int("patience", patience, 1)
    seed = _check_int("seed", seed, 0)
    if half_life is not None:
        half_life = _check_float("half_life", half_life)
    if threads is not None:
        threads = _check_int("threads", threads, 1)
    from .onnx_export import EXPORT_HINTS_FILENAME, INT8_SCHEMES

    if onnx_int8_scheme is not None and onnx_int8_scheme not in INT8_SCHEMES:
        raise ValueError(f"onnx_int8_scheme must be None or one of {', '.join(map(repr, INT8_SCHEMES))}, "
                         f"got {onnx_int8_scheme!r}")
    resolved = resolve_model(model)
    layers = check_layers(layers, transformer_num_layers(resolved))
    out = Path(out_dir).expanduser()
    ckpt_dir = out / CHECKPOINT_DIR
    ckpt = None
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if resume:
        ckpt = _read_checkpoint(ckpt_dir)
        if ckpt is None and out.exists() and any(out.iterdir()):
            done = (out / RECORD_FILENAME).is_file()
            raise FileExistsError(
                f"{out} holds {'a finished fine-tune' if done else 'files but no checkpoint'}: nothing to resume; "
                "delete it or choose another folder")
    elif out.exists() and any(out.iterdir()):
        hint = " (it holds a checkpoint: pass resume=True to continue it)" if (ckpt_dir / CHECKPOINT_FILE).is_file() \
            else ""
        raise FileExistsError(f"{out} exists and is not empty{hint}")

    texts = list(dataset.items.texts)
    validation = ValidationSet(dataset, half_life)
    pool = mine_pairs(validation.train, window)
    if len(pool) < 2:
        raise ValueError(f"only {len(pool)} item pair(s) mined from the data set (window={window}): too few to train")
    if not any(len(b) >= 2 for b in epoch_batches(pool, 1, pairs_per_epoch=pairs_per_epoch, batch_size=batch_size,
                                                  seed=seed)):
        raise ValueError("no batch of two or more pairs without a repeated item: the data set is too small")
    log_q = _log_q(pool, dataset.n_items) if logq_correction else None
    fingerprint = weights_fingerprint(resolved.path)
    config = {
        "finetune_version": FINETUNE_VERSION, "base_model": resolved.name, "base_fingerprint": fingerprint,
        "data_key": _data_key(dataset), "time_budget_s": time_budget_s, "max_epochs": max_epochs,
        "pairs_per_epoch": pairs_per_epoch, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "window": window, "half_life": half_life, "patience": patience, "layers": layers,
        "train_embeddings": bool(train_embeddings), "symmetric": bool(symmetric),
        "logq_correction": bool(logq_correction), "onnx_int8_scheme": onnx_int8_scheme, "seed": seed,
        "threads": threads, "precision": precision, "scale": SCALE, "warmup": WARMUP,
    }
    if ckpt is not None:
        old = dict(ckpt["config"])
        diff = sorted(k for k in set(old) | set(config) if k not in _RESUMABLE_CHANGES and old.get(k) != config.get(k))
        if diff:
            raise ValueError("the checkpoint in " f"{ckpt_dir} was made with other settings: "
                             + ", ".join(f"{k}={old.get(k)!r} (now {config.get(k)!r})" for k in diff))

    if threads:
        torch.set_num_threads(threads)
    wall0, cpu0 = _now(), time.process_time()
    prior_wall = float(ckpt["train_s"]) if ckpt else 0.0
    prior_cpu = float(ckpt["cpu_s"]) if ckpt else 0.0

    def elapsed() -> float:
        return prior_wall + (_now() - wall0)

    def emit(event: dict) -> None:
        if progress:
            progress(event)

    st = load_sentence_transformer(resolved)
    if layers is not None:
        prune_layers(st, layers)
    if not train_embeddings:
        for p in st[0].auto_model.embeddings.parameters():
            p.requires_grad_(False)
    params = [p for p in st.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    nominal_steps = max_epochs * max(1, math.ceil(min(pairs_per_epoch, len(pool)) / batch_size))

    if ckpt is not None:
        st.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        epoch, step, global_step = int(ckpt["epoch"]), int(ckpt["step"]), int(ckpt["global_step"])
        epoch_losses = list(ckpt["epoch_losses"])
        history = list(ckpt["history"])
        best_score, best_epoch, bad_epochs = float(ckpt["best_score"]), int(ckpt["best_epoch"]), int(ckpt["bad_epochs"])
        best_state = ckpt["best_state"]
        rng_state = ckpt["torch_rng"]
        resumes = int(ckpt["resumes"]) + 1
        stopped = ckpt.get("stopped") or None
        if stopped == "time_budget":
            stopped = None  # a larger budget may go on
    else:
        emit({"event": "validate", "epoch": 0})
        score = validation.ndcg(_encode_items(st, texts))
        history = [{"epoch": 0, "train_loss": None, "valid_ndcg10": score, "steps": 0, "seconds": elapsed()}]
        emit({"event": "epoch", **history[0]})
        best_score, best_epoch, bad_epochs = score, 0, 0
        best_state = _clone_state(st)
        epoch, step, global_step, epoch_losses, rng_state = 1, 0, 0, [], None
        resumes, stopped = 0, None

    def state(**extra) -> dict:
        return {"config": config, "epoch": epoch, "step": step, "global_step": global_step,
                "epoch_losses": list(epoch_losses), "history": list(history), "best_score": best_score,
                "best_epoch": best_epoch, "bad_epochs": bad_epochs, "best_state": best_state,
                "model": st.state_dict(), "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                "train_s": elapsed(), "cpu_s": prior_cpu + time.process_time() - cpu0, "resumes": resumes,
                "stopped": extra.get("stopped", "")}

    partial = None
    while stopped is None and epoch <= max_epochs:
        batches = epoch_batches(pool, epoch, pairs_per_epoch=pairs_per_epoch, batch_size=batch_size, seed=seed)
        if step == 0:
            torch.manual_seed(int(_epoch_rng(seed, epoch).integers(2**62)))  # dropout draws of this epoch
        else:
            torch.set_rng_state(rng_state)
        emit({"event": "epoch_start", "epoch": epoch, "steps": len(batches), "max_epochs": max_epochs,
              "step": step})
        st.train()
        while step < len(batches):
            if elapsed() > time_budget_s:
                stopped = "time_budget"
                break
            pairs = batches[step]
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(global_step, lr, nominal_steps)
            loss = _mnrl_loss(st, texts, pairs, precision=precision, symmetric=symmetric, log_q=log_q)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_losses.append(float(loss.detach()))
            step += 1
            global_step += 1
            emit({"event": "step", "epoch": epoch, "step": step, "steps": len(batches), "loss": epoch_losses[-1],
                  "seconds": elapsed()})
        if stopped == "time_budget":  # mid-epoch: checkpoint the training state, then judge these weights
            _write_checkpoint(ckpt_dir, state(stopped="time_budget"))
            if step == 0:
                break  # nothing trained since the last validation
            emit({"event": "validate", "epoch": epoch})
            score = validation.ndcg(_encode_items(st, texts))
            partial = {"epoch": epoch, "train_loss": float(np.mean(epoch_losses)), "valid_ndcg10": score,
                       "steps": step, "seconds": elapsed(), "partial": True}
            emit({"event": "epoch", **partial})
            if score > best_score:
                best_score, best_epoch, best_state = score, epoch, _clone_state(st)
            break
        emit({"event": "validate", "epoch": epoch})
        score = validation.ndcg(_encode_items(st, texts))
        record = {"epoch": epoch, "train_loss": float(np.mean(epoch_losses)) if epoch_losses else None,
                  "valid_ndcg10": score, "steps": step, "seconds": elapsed()}
        history.append(record)
        if score > best_score:
            best_score, best_epoch, bad_epochs, best_state = score, epoch, 0, _clone_state(st)
        else:
            bad_epochs += 1
        if bad_epochs >= patience:
            stopped = "early_stop"
        elif epoch >= max_epochs:
            stopped = "max_epochs"
        elif elapsed() > time_budget_s:
            stopped = "time_budget"
        epoch, step, epoch_losses = epoch + 1, 0, []
        _write_checkpoint(ckpt_dir, state(stopped=stopped or ""))
        emit({"event": "epoch", **record})
    if stopped is None:
        stopped = "max_epochs"

    st.load_state_dict(best_state)
    st.eval()
    train_s, cpu_s = elapsed(), prior_cpu + time.process_time() - cpu0
    import sentence_transformers
    import transformers

    record = {
        **config,
        "dataset": getattr(dataset, "name", None), "n_events": len(dataset.events),
        "n_items": int(dataset.n_items), "n_pairs_mined": len(pool),
        "validation": {"protocol": "warm split of the given data set: pairs from train_valid, NDCG@10 on the "
                                   "last event per user, full ranking, seen items excluded",
                       "train_events": len(validation.train.events), "users": len(validation.targets)},
        "history": history + ([partial] if partial else []),
        "best_epoch": best_epoch, "best_valid_ndcg10": best_score, "frozen_valid_ndcg10": history[0]["valid_ndcg10"],
        "stopped": stopped, "train_s": train_s, "cpu_s": cpu_s, "resumes": resumes,
        "checkpoint_kept": stopped == "time_budget",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentence-transformers": sentence_transformers.__version__},
    }
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        with _quiet_transformers():  # transformers' "Writing model shards" bar: the library never prints
            st.save(str(tmp))
        (tmp / RECORD_FILENAME).write_text(json.dumps(record, indent=1))
        if onnx_int8_scheme is not None:
            (tmp / EXPORT_HINTS_FILENAME).write_text(json.dumps({"int8_scheme": onnx_int8_scheme}))
        if stopped == "time_budget" and (ckpt_dir / CHECKPOINT_FILE).is_file():
            (tmp / CHECKPOINT_DIR).mkdir()
            os.replace(ckpt_dir / CHECKPOINT_FILE, tmp / CHECKPOINT_DIR / CHECKPOINT_FILE)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _publish(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out``, replacing what training left there."""
    if out.exists():
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


# -- cached fine-tunes ---------------------------------------------------------------------

_FINETUNE_SIGNATURE = inspect.signature(finetune_encoder)
_KEY_EXCLUDED = ("dataset", "out_dir", "resume", "progress", "threads")


def _bound_kwargs(kwargs: dict) -> dict:
    """``kwargs`` with finetune_encoder's defaults filled in (so omitted == passed default)."""
    sig = _FINETUNE_SIGNATURE
    allowed = {name for name, p in sig.parameters.items()
               if p.default is not inspect.Parameter.empty and name not in ("resume", "progress")}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"unexpected argument(s) for a cached fine-tune: {', '.join(unknown)}")
    return {name: kwargs.get(name, p.default) for name, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty}


def finetune_key(dataset, **kwargs) -> str:
    """sha256 (hex) of the event log (user, item, timestamp), item texts, base weights and
    settings (``seed`` included; ``threads`` and ``progress`` not: they do not change what
    is learnt, beyond float noise across thread counts)."""
    from .resolve import resolve_model, weights_fingerprint

    bound = _bound_kwargs(kwargs)
    settings = {k: v for k, v in bound.items() if k not in _KEY_EXCLUDED}
    resolved = resolve_model(settings["model"])
    settings["model"] = f"{resolved.name}@{weights_fingerprint(resolved.path)}"
    h = hashlib.sha256()
    h.update(f"leanrec-finetune-v{FINETUNE_VERSION}\n".encode())
    h.update(_data_key(dataset).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def finetuned_path(dataset, **kwargs) -> Path:
    """Where :func:`ensure_finetuned` keeps the fine-tune of ``dataset`` with these settings."""
    from ..paths import cache_dir

    return cache_dir() / "encoders" / f"finetuned-{finetune_key(dataset, **kwargs)[:16]}"


def ensure_finetuned(dataset, *, progress: Progress | None = None, **kwargs) -> Path:
    """The cached fine-tuned encoder folder for ``dataset`` and these settings; trained now if missing.

    ``kwargs`` are :func:`finetune_encoder`'s (not ``out_dir`` or ``resume``); the folder is
    ``<cache dir>/encoders/finetuned-<key16>`` (see :func:`finetune_key`). A run interrupted
    earlier is resumed from its checkpoint. Use the folder path as an encoder name.
    """
    path = finetuned_path(dataset, **kwargs)
    if (path / RECORD_FILENAME).is_file() and (path / "config.json").is_file():
        return path
    return finetune_encoder(dataset, path, resume=True, progress=progress, **kwargs)


# -- serving cost check --------------------------------------------------------------------

def _ratio_ci(base: np.ndarray, other: np.ndarray, users: np.ndarray, n_boot: int = 1000) -> list[float]:
    """95% interval of ``other.sum() / base.sum()`` from a bootstrap over users (a user's
    targets are resampled together: they are not independent)."""
    _, groups = np.unique(users, return_inverse=True)
    sums_base = np.bincount(groups, weights=base)
    sums_other = np.bincount(groups, weights=other)
    boot = np.random.default_rng(0).integers(0, len(sums_base), (n_boot, len(sums_base)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = sums_other[boot].sum(1) / sums_base[boot].sum(1)
    return [float(np.nanpercentile(ratios, 2.5)), float(np.nanpercentile(ratios, 97.5))]


def compare_onnx_int8(folder: str | os.PathLike[str], dataset, *, half_life: float | None | str = "record",
                      threads: int | None = 1, int8_scheme: str | None = None, last_n: int = 10) -> dict[str, Any]:
    """Internal-validation NDCG@10 of ``folder`` on torch fp32 and as an ONNX int8 export.

    Exports (or reuses the cached export of) ``folder`` with ``load_encoder(folder,
    backend="onnx", precision="int8")`` — the serving path, which takes the folder's int8
    scheme hint — or, with ``int8_scheme``, with that scheme of
    :data:`~leanrec.encoders.onnx_export.INT8_SCHEMES` (cached alongside). Encodes every
    item text both ways and scores both on :class:`ValidationSet` (``half_life="record"``:
    the one in the folder's ``leanrec_finetune.json``, else 8). Returns both NDCG@10 values,
    their ratio (int8 / torch) with a 95% paired-bootstrap interval over users (at NDCG@10
    ~0.02-0.05 on ~900 users, one user's target crossing the top-10 edge moves the ratio by
    1-3%), how many users' NDCG@10 changed, the mean overlap of the two top-10 lists, the
    per-item cosine between the two vectors (min, mean), seconds, and the export's folder;
    and the same ratio over each user's last ``last_n`` events (``ratio_last10`` by
    default: ~10x the targets, a tighter interval; see :class:`ValidationSet`).
    """
    from . import _cached_build, _encoders_dir, _slug, load_encoder
    from .onnx_export import export_onnx, int8_scheme_hint
    from .resolve import resolve_model, weights_fingerprint
    from .saved import load_saved_encoder, read_config

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
    if int8_scheme is None:
        onnx = load_encoder(str(folder), backend="onnx", precision="int8", threads=threads)
    else:
        resolved = resolve_model(folder)
        target = _encoders_dir() / _slug("onnx", resolved.name, weights_fingerprint(resolved.path), "int8",
                                         int8_scheme, "Lall", "msldefault")
        built = _cached_build(target, lambda out: export_onnx(folder, out, precision="int8", int8_scheme=int8_scheme))
        onnx = load_saved_encoder(built, threads=1 if threads is None else threads)
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
        "ratio_ci95": _ratio_ci(per_torch, per_int8, validation.target_users),
        "users_ndcg_changed": int(np.sum(~np.isclose(per_torch, per_int8))),
        f"torch_ndcg10_last{last_n}": float(wide_torch.mean()),
        f"onnx_int8_ndcg10_last{last_n}": float(wide_int8.mean()),
        f"ratio_last{last_n}": float(wide_int8.sum() / wide_torch.sum()) if wide_torch.sum() > 0 else float("nan"),
        f"ratio_last{last_n}_ci95": _ratio_ci(wide_torch, wide_int8, wide.target_users),
        f"targets_last{last_n}": len(wide.targets),
        "top10_overlap": float(overlap),
        "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
        "torch_encode_s": t1 - t0, "onnx_load_s": t2 - t1, "onnx_encode_s": t3 - t2,
        "onnx_folder": onnx_path, "int8_scheme": scheme, "half_life": half_life,
        "validation_users": len(validation.targets),
    }


# -- low-precision measurement -------------------------------------------------------------

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

    from ..data.split import make_split
    from .resolve import resolve_model
    from .sbert import (
        check_layers,
        load_sentence_transformer,
        prune_layers,
        transformer_num_layers,
    )

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    steps = _check_int("steps", steps, 1)
    if threads is not None:
        torch.set_num_threads(_check_int("threads", threads, 1))
    resolved = resolve_model(model)
    layers = check_layers(layers, transformer_num_layers(resolved))
    texts = list(dataset.items.texts)
    pool = mine_pairs(make_split(dataset, "warm").train_valid, window)
    batches = epoch_batches(pool, 1, pairs_per_epoch=batch_size * (steps + 1), batch_size=batch_size, seed=seed)
    if len(batches) < 2:
        raise ValueError("too few pairs for a held-out batch and training batches")
    heldout, train = batches[-1], batches[:-1]
    log_q = _log_q(pool, dataset.n_items)
    st = load_sentence_transformer(resolved)
    if layers is not None:
        prune_layers(st, layers)
    for p in st[0].auto_model.embeddings.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in st.parameters() if p.requires_grad], lr=lr)

    def heldout_loss() -> float:
        st.eval()
        with torch.no_grad():
            return float(_mnrl_loss(st, texts, heldout, precision="fp32", symmetric=True, log_q=log_q))

    before = heldout_loss()
    torch.manual_seed(seed)
    st.train()
    seconds, losses = [], []
    for k in range(steps):
        pairs = train[k % len(train)]
        t0 = time.perf_counter()
        loss = _mnrl_loss(st, texts, pairs, precision=precision, symmetric=True, log_q=log_q)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    return {"precision": precision, "steps": steps, "batch_size": batch_size, "step_seconds": seconds,
            "median_step_s": float(np.median(seconds)), "losses": losses, "last_loss": losses[-1],
            "heldout_loss_before": before, "heldout_loss_after": heldout_loss(), "threads": threads,
            "layers": layers}
