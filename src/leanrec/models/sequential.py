"""Learned user models on frozen text vectors: projection, attention pooling, SASRec.

:class:`SequentialRecommender` learns from interactions *on top of* a frozen sentence
encoder: item vectors are a learned projection of the item's text vector (plus, if asked,
an ID embedding for items with training events), and the user's state is pooled from the
history by ``pooling`` = ``mean`` | ``attention`` | ``sasrec`` (see
:mod:`leanrec.models.seqnet`). The encoder is never back-propagated through, so a fit
costs CPU-minutes, not the hour a language-model fine-tune would, and a new item needs its
text encoded and one matrix-vector product — no retraining.

Training: next-item prediction at every position of every training history (windows of
``max_len`` events, full softmax over the catalogue; with ``mask_seen`` the user's other
items are not used as negatives, matching the evaluation, which excludes seen items).
Early stopping: each user's last training event (users with at least 3) is held out as an
internal validation target, NDCG@10 over the full catalogue is computed after every epoch
and the best epoch's weights are kept; training stops after ``patience`` epochs without
improvement, after ``max_epochs``, or when ``time_budget_s`` is spent (checked after every
batch). The held-out events still feed the user state at scoring time. Deterministic for a
seed on a fixed number of threads (``threads``; torch's CPU kernels are deterministic
there). ``precision="bf16"`` runs the forward pass under CPU bf16 autocast.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from ..core.metrics import ndcg_at_k, target_ranks
from ..encoders.backends import TRAINING_PRECISIONS
from .base import Recommender
from .content import build_encoder
from .seqnet import POOLINGS

LOSSES = ("full", "sampled")



def windows(sequences: list[np.ndarray], max_len: int, pad: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut histories into training windows, right-aligned, newest window first.

    Returns ``inputs`` int[n, max_len] (``pad`` = empty), ``targets`` int[n, max_len]
    (-1 = no target: the item after each input position) and ``owner`` int[n] (the
    sequence each window came from). Consecutive windows share one event, so every event
    but a history's first is a target exactly once.
    """
    inputs, targets, owner = [], [], []
    for s, seq in enumerate(sequences):
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len - 1)
            chunk = seq[start:end]
            x = np.full(max_len, pad, np.int64)
            y = np.full(max_len, -1, np.int64)
            x[max_len - (len(chunk) - 1):] = chunk[:-1]
            y[max_len - (len(chunk) - 1):] = chunk[1:]
            inputs.append(x)
            targets.append(y)
            owner.append(s)
            end = start + 1
    if not inputs:
        return np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64), np.zeros(0, np.int64)
    return np.stack(inputs), np.stack(targets), np.asarray(owner, np.int64)


def last_window(seq: np.ndarray, max_len: int, pad: int) -> np.ndarray:
    """The newest ``max_len`` events of a history, right-aligned: the input for scoring."""
    x = np.full(max_len, pad, np.int64)
    tail = seq[-max_len:]
    if len(tail):
        x[max_len - len(tail):] = tail
    return x


class SequentialRecommender(Recommender):
    """Parameters (all stored as given; see the module docstring):

    ``encoder``/``cache`` — the frozen text encoder, as for ContentRecommender;
    ``pooling`` — mean | attention | sasrec; ``dim`` — learned space; ``max_len`` — events
    the user tower sees; ``layers``/``heads`` (sasrec); ``dropout``; ``item_ids`` — add ID
    embeddings for items with training events, dropped per item with ``id_dropout`` in
    training; ``half_life`` (mean pooling, in events); ``lr``, ``weight_decay``,
    ``batch_size`` (windows); ``max_epochs``, ``patience``, ``time_budget_s``;
    ``mask_seen``; ``precision`` fp32 | bf16; ``seed``; ``threads`` (torch intra-op
    threads during fit and scoring; None leaves torch's setting); ``use_text`` — False: no
    text path at all, items are ID embeddings only (the ID-only SASRec baseline; needs
    ``item_ids``; no encoder is loaded); ``loss`` — ``full`` softmax cross-entropy over
    the catalogue, or ``sampled``: ``num_negatives`` shared negatives per batch drawn from
    q ∝ (count + 1)^``sampling_alpha`` (0 = uniform) with the logQ correction
    (:mod:`leanrec.models.seqloss`; for catalogues where full logits do not fit);
    ``on_epoch`` — called with
    each epoch's record (epoch, train loss, valid NDCG@10, seconds), for progress display.
    """

    def __init__(self, encoder="minilm", pooling: str = "sasrec", dim: int = 64, max_len: int = 50,
                 layers: int = 2, heads: int = 1, dropout: float = 0.2, item_ids: bool = False,
                 id_dropout: float = 0.5, half_life: float = 8.0, lr: float = 3e-3, weight_decay: float = 0.0,
                 batch_size: int = 128, max_epochs: int = 200, patience: int = 10, time_budget_s: float = 300.0,
                 mask_seen: bool = True, precision: str = "fp32", seed: int = 42, threads: int | None = 1,
                 cache="auto", temperature: float = 1.0, use_text: bool = True, loss: str = "full",
                 num_negatives: int = 512, sampling_alpha: float = 0.0, on_epoch=None):
        self.encoder = encoder
        self.pooling = pooling
        self.dim = dim
        self.max_len = max_len
        self.layers = layers
        self.heads = heads
        self.dropout = dropout
        self.item_ids = item_ids
        self.id_dropout = id_dropout
        self.half_life = half_life
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.time_budget_s = time_budget_s
        self.mask_seen = mask_seen
        self.precision = precision
        self.seed = seed
        self.threads = threads
        self.cache = cache
        self.temperature = temperature
        self.use_text = use_text
        self.loss = loss
        self.num_negatives = num_negatives
        self.sampling_alpha = sampling_alpha
        self.on_epoch = on_epoch

    @property
    def scores_new_items(self) -> bool:
        """Item vectors come from text, so new items score at once; not for ID-only."""
        return bool(self.use_text)

    # -- checks ---------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.precision not in TRAINING_PRECISIONS:
            raise ValueError(f"precision must be one of {TRAINING_PRECISIONS}, got {self.precision!r}")
        for name in ("dim", "max_len", "layers", "heads", "batch_size", "max_epochs"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not self.use_text and not self.item_ids:
            raise ValueError("use_text=False needs item_ids=True: the items need text or ID embeddings")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        for name in ("dropout", "id_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not self.lr > 0 or not self.time_budget_s > 0 or self.patience < 1:
            raise ValueError("lr and time_budget_s must be > 0 and patience >= 1")

    def _threads(self):
        """The project's one thread budget (torch, BLAS, faiss) for fit and scoring."""
        import torch  # noqa: F401  (imported first, so thread_budget limits it)

        from ..core.threads import thread_budget

        return contextlib.nullcontext() if self.threads is None else thread_budget(int(self.threads))

    # -- fit ------------------------------------------------------------------------
    def _fit(self, dataset) -> None:
        self._check_params()
        if self.use_text:
            texts = dataset.items.texts
            self.encoder_ = build_encoder(self.encoder, texts, self.cache)
            self.text_vectors_ = np.asarray(self.encoder_.encode(texts), np.float32)
        else:  # ID-only: no encoder, a zero-width text table
            self.encoder_ = None
            self.text_vectors_ = np.zeros((len(dataset.items), 0), np.float32)
        with self._threads():
            self._train()

    def _holdout(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Training histories without each user's last event (users with >= 3 events), and
        those last events as (user row, item position) validation targets."""
        fit_seqs, rows, items = [], [], []
        for r, seq in enumerate(self.history_.sequences):
            if len(seq) >= 3:
                fit_seqs.append(seq[:-1])
                rows.append(r)
                items.append(seq[-1])
            else:
                fit_seqs.append(seq)
        return fit_seqs, np.asarray(rows, np.int64), np.asarray(items, np.int64)

    def _train(self) -> None:
        import torch

        from .seqloss import full_cross_entropy, sampled_cross_entropy, sampling_probs, seen_mask
        from .seqnet import SeqNet

        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        n_items = len(self.items_)
        net = SeqNet(torch.from_numpy(self.text_vectors_), torch.from_numpy(self.history_.item_counts > 0),
                     pooling=self.pooling, dim=self.dim, max_len=self.max_len, layers=self.layers, heads=self.heads,
                     dropout=self.dropout, item_ids=self.item_ids, half_life=self.half_life,
                     use_text=self.use_text)
        fit_seqs, val_rows, val_items = self._holdout()
        inputs, targets, owner = windows(fit_seqs, self.max_len, n_items)
        seen = [np.unique(s) for s in fit_seqs]
        q = sampler = None
        if self.loss == "sampled":
            q = sampling_probs(self.history_.item_counts, self.sampling_alpha)
            sampler = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if self.precision == "bf16" \
            else contextlib.nullcontext
        val_input = np.stack([last_window(fit_seqs[r], self.max_len, n_items) for r in val_rows]) \
            if len(val_rows) else np.zeros((0, self.max_len), np.int64)

        def validate() -> float:
            if not len(val_rows):
                return float("nan")
            scores = self._scores_for(net, val_input)
            allowed = np.ones_like(scores, dtype=bool)
            for k, r in enumerate(val_rows):
                allowed[k, seen[r]] = False
            allowed[np.arange(len(val_rows)), val_items] = True
            rank, _ = target_ranks(scores, allowed, val_items)
            return float(ndcg_at_k(rank, 10).mean())

        t0, c0 = time.perf_counter(), time.process_time()
        history = [{"epoch": 0, "valid_ndcg@10": validate(), "seconds": 0.0, "cpu_seconds": 0.0}]
        best = (history[0]["valid_ndcg@10"], 0, {k: v.clone() for k, v in net.state_dict().items()})
        stopped, steps = "max_epochs", 0
        for epoch in range(1, self.max_epochs + 1):
            net.train()
            losses = []
            for batch in np.array_split(rng.permutation(len(inputs)), max(1, -(-len(inputs) // self.batch_size))):
                if not len(batch):
                    continue
                x = torch.from_numpy(inputs[batch])
                y = torch.from_numpy(targets[batch])
                keep = None
                if self.item_ids and self.use_text and self.id_dropout > 0:
                    keep = torch.rand(n_items) >= self.id_dropout
                where = y >= 0
                tgt = y[where]
                mask = mask_rows = None
                if self.mask_seen:  # one sparse mask row per window, never a row's own target
                    mask = seen_mask([seen[owner[b]] for b in batch], n_items)
                    mask_rows = torch.from_numpy(np.repeat(np.arange(len(batch)), where.sum(1).numpy()))
                with autocast():  # the products in bf16 where asked; the softmax in float32
                    table = net.item_table(keep)
                    states = net.user_states(x, table)[where]
                    if self.loss == "full":
                        loss = full_cross_entropy(states, table, tgt, mask, mask_rows=mask_rows)
                    else:
                        loss = sampled_cross_entropy(states, table, tgt, q, self.num_negatives, mask=mask,
                                                     mask_rows=mask_rows, generator=sampler)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                steps += 1
                if time.perf_counter() - t0 > self.time_budget_s:
                    stopped = "time_budget"
                    break
            value = validate()
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                            "valid_ndcg@10": value, "seconds": round(time.perf_counter() - t0, 3),
                            "cpu_seconds": round(time.process_time() - c0, 3)})
            if self.on_epoch is not None:
                self.on_epoch(history[-1])
            if value > best[0]:
                best = (value, epoch, {k: v.clone() for k, v in net.state_dict().items()})
            if stopped == "time_budget":
                break
            if epoch - best[1] >= self.patience:
                stopped = "early_stopping"
                break
        net.load_state_dict(best[2])
        net.eval()
        self.net_ = net
        with torch.no_grad():
            self.item_table_ = net.item_table().float().numpy()
        self.training_ = {
            "pooling": self.pooling, "best_epoch": best[1], "best_valid_ndcg@10": best[0], "stopped": stopped,
            # the quality-vs-cost point: CPU time (all threads) until the kept epoch ended
            "cpu_seconds_to_best": history[best[1]]["cpu_seconds"],
            "epochs": len(history) - 1, "steps": steps, "windows": int(len(inputs)),
            "valid_users": int(len(val_rows)), "train_seconds": round(time.perf_counter() - t0, 3),
            "train_cpu_seconds": round(time.process_time() - c0, 3), "precision": self.precision,
            "threads": self.threads, "parameters": int(sum(p.numel() for p in net.parameters())),
            "history": history,
        }

    def update_history(self, dataset) -> "SequentialRecommender":
        """A copy that scores with ``dataset``'s histories, without retraining: the user
        tower is a function of the history, so new events (and new users) need no fit.
        ``dataset`` must have the same catalogue."""
        import copy

        from ..data.history import History

        self._check_fitted()
        if not np.array_equal(np.asarray(dataset.items.ids), np.asarray(self.items_.ids)):
            raise ValueError("update_history needs the catalogue the model was fitted on")
        other = copy.copy(self)
        other.history_ = History.from_dataset(dataset)
        return other

    # -- scoring --------------------------------------------------------------------
    def _scores_for(self, net, inputs: np.ndarray, batch: int = 512) -> np.ndarray:
        """Scores over the catalogue for right-aligned input windows (eval mode, no grad)."""
        import torch

        was_training = net.training
        net.eval()
        out = np.zeros((len(inputs), net.n_items), np.float32)
        with torch.no_grad():
            table = net.item_table()
            for start in range(0, len(inputs), batch):
                x = torch.from_numpy(inputs[start:start + batch])
                states = net.user_states(x, table)[:, -1]
                out[start:start + batch] = (states @ table.T).float().numpy()
        net.train(was_training)
        return out

    def live_scorer(self):
        from .seqscorer import SEQNET_CONFIG, SequentialScorer, scorer_state

        net = self.net_
        config = {k: getattr(self, k) for k in SEQNET_CONFIG}
        config = {k: v.item() if hasattr(v, "item") else v for k, v in config.items()}
        config.update(text_dim=int(net.text.shape[1]), n_items=int(net.n_items))
        params = {k: v for k, v in self.get_params(deep=False).items()
                  if v is None or isinstance(v, (bool, int, float, str))}
        training = {k: v for k, v in getattr(self, "training_", {}).items() if k != "history"}
        return SequentialScorer(self.items_.ids, self.history_.item_counts, config, scorer_state(net),
                                temperature=self.temperature, encoder=self.encoder if self.use_text else None,
                                meta={"params": params, "training": training})

    def _catalogue_vectors(self) -> np.ndarray | None:
        return self.text_vectors_ if self.use_text else None

    def _score(self, rows: np.ndarray) -> np.ndarray:
        with self._threads():
            return super()._score(rows)

    def _decompose(self, row: int, items: np.ndarray):
        """Mean and attention pooling split exactly (the scorer's ``decompose``); SASRec has
        no exact split and says so."""
        with self._threads():
            return super()._decompose(row, items)

    @property
    def explain_method(self) -> str:
        from .seqscorer import POOLING_METHODS

        return POOLING_METHODS.get(self.pooling, "none")
