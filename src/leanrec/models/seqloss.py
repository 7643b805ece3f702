"""Next-item losses for the sequence models: the full softmax and sampled softmax with logQ.

Why two: the full softmax cross-entropy scores every user state against the whole item
table, ``N × n_items`` logits per batch. At the 1-4k items of MovieLens that is cheap; at
100k or 1M items the logits alone are gigabytes per batch (6,400 states × 1M items × 4
bytes = 25.6 GB). Sampled softmax scores each state against its target and ``K`` negatives
drawn once per batch, ``N × (K + 1)`` logits, whatever the catalogue size.

Inputs, shared by both losses: user ``states`` float[N, d] (one per target), the item
``table`` float[n_items, d], ``targets`` int[N] (item positions) and an optional ``mask`` of
items to exclude per row (the user's seen items, so they are not pushed down as negatives —
the evaluation excludes them too). The mask is bool[R, n_items] dense, or a sparse COO
tensor of that shape whose stored (row, item) pairs are the excluded ones (values ignored;
:func:`seen_mask` builds one). ``mask_rows`` int[N] says which mask row belongs to each state
(training windows yield many targets per user: one mask row per window, not per target);
without it the mask has one row per state. A row's own target is never excluded.

Sampled softmax (Jean et al. 2015; the "logQ correction" of Yi et al. 2019, here with
negatives shared across the batch): negatives ``S = (s_1 .. s_K)`` are drawn with
replacement from a sampling distribution ``q`` (uniform, or popularity^alpha: see
:func:`sampling_probs`), and every candidate's logit ``o_j = ⟨state, E_j⟩`` — the target's
and the negatives' — is corrected to ``o_j - log(K q_j)``, minus the log of the expected
number of times j is drawn. That makes the sampled softmax a consistent estimate of the full
one: a popular item, drawn often, is discounted by how often it is drawn. A negative equal
to the row's target (an "accidental hit") and negatives in the row's mask get -inf. The loss
is the mean over rows of ``-log softmax([o_t - log(K q_t), o_s - log(K q_s) for s in S])[0]``.

Two facts the tests pin down: (1) any constant added to every candidate's logit cancels in
the softmax, so scaling ``q`` (it need not sum to 1) or changing ``K`` in the correction
changes nothing for a shared sample — what matters is log q_j relative to the others;
(2) hence, when the sample is every item exactly once and the correction is the same for all
items (uniform q, or ``logq=False``), the sampled loss *equals* the full one: the
candidates are then exactly the catalogue, the target once (its own column, the duplicate
among the negatives masked as an accidental hit), the same mask applied.

Logits are computed in the inputs' dtype and cast to float32 before the softmax, so the
caller's bf16 autocast covers the matrix products only (as the training loop has done).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "full_cross_entropy",
    "logq_correction",
    "sample_negatives",
    "sampled_cross_entropy",
    "sampling_probs",
    "seen_mask",
]


# -- checks -------------------------------------------------------------------------
def _check_inputs(states, table, targets) -> None:
    if not isinstance(states, torch.Tensor) or states.ndim != 2:
        raise ValueError(f"states must be a 2-d tensor [N, d], got {getattr(states, 'shape', type(states))}")
    if not isinstance(table, torch.Tensor) or table.ndim != 2:
        raise ValueError(f"table must be a 2-d tensor [n_items, d], got {getattr(table, 'shape', type(table))}")
    if states.shape[1] != table.shape[1]:
        raise ValueError(f"states and table must share the dimension d: {states.shape[1]} != {table.shape[1]}")
    if not isinstance(targets, torch.Tensor) or targets.ndim != 1 or len(targets) != len(states):
        raise ValueError(f"targets must be a 1-d tensor with one item per state ({len(states)}), "
                         f"got {getattr(targets, 'shape', type(targets))}")
    if targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must be integer item positions, got {targets.dtype}")
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= table.shape[0]):
        raise ValueError(f"targets must be item positions in [0, {table.shape[0]}), "
                         f"got [{int(targets.min())}, {int(targets.max())}]")


def _check_mask(mask, mask_rows, n_states: int, n_items: int) -> None:
    if mask is None:
        if mask_rows is not None:
            raise ValueError("mask_rows given without a mask")
        return
    if not isinstance(mask, torch.Tensor) or mask.ndim != 2 or mask.shape[1] != n_items:
        raise ValueError(f"mask must be a tensor [rows, n_items={n_items}], got {getattr(mask, 'shape', type(mask))}")
    if mask.layout == torch.strided and mask.dtype != torch.bool:
        raise ValueError(f"a dense mask must be bool, got {mask.dtype}")
    if mask.layout not in (torch.strided, torch.sparse_coo):
        raise ValueError(f"mask must be dense or sparse COO, got {mask.layout}")
    if mask_rows is None:
        if mask.shape[0] != n_states:
            raise ValueError(f"mask has {mask.shape[0]} rows for {n_states} states: give mask_rows")
        return
    if not isinstance(mask_rows, torch.Tensor) or mask_rows.ndim != 1 or len(mask_rows) != n_states:
        raise ValueError(f"mask_rows must be a 1-d tensor with one mask row per state ({n_states})")
    if len(mask_rows) and (int(mask_rows.min()) < 0 or int(mask_rows.max()) >= mask.shape[0]):
        raise ValueError(f"mask_rows must be in [0, {mask.shape[0]})")


def _check_q(q, n_items: int) -> torch.Tensor:
    if not isinstance(q, torch.Tensor) or q.ndim != 1 or len(q) != n_items:
        raise ValueError(f"q must be a 1-d tensor with one probability per item ({n_items}), "
                         f"got {getattr(q, 'shape', type(q))}")
    if not bool(torch.isfinite(q).all()) or not bool((q > 0).all()):
        raise ValueError("q must be finite and > 0 for every item (a zero-probability item could be a "
                         "target with an infinite correction); smooth it, e.g. sampling_probs(counts, alpha)")
    return q


# -- masks --------------------------------------------------------------------------
def seen_mask(seen, n_items: int) -> torch.Tensor:
    """A sparse COO mask [len(seen), n_items] excluding, on row r, the item positions
    ``seen[r]`` (an array each): memory O(events), not O(rows × n_items), so it scales to
    catalogues where the dense mask would not fit."""
    items = [np.unique(np.asarray(s, np.int64)) for s in seen]   # sorted, unique: a coalesced tensor
    r = np.repeat(np.arange(len(items), dtype=np.int64), [len(s) for s in items])
    i = np.concatenate(items) if items else np.zeros(0, np.int64)
    if len(i) and (i.min() < 0 or i.max() >= n_items):
        raise ValueError(f"seen item positions must be in [0, {n_items})")
    idx = torch.from_numpy(np.stack([r, i]))
    return torch.sparse_coo_tensor(idx, torch.ones(len(i), dtype=torch.bool), (len(seen), n_items),
                                   is_coalesced=True, check_invariants=False)


def _pairs(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (row, item) pairs a sparse mask stores."""
    if not mask.is_coalesced():  # duplicates merge; as uint8, since values are ignored anyway
        mask = mask.to(torch.uint8).coalesce()
    idx = mask.indices()
    return idx[0], idx[1]


def _excluded(mask, mask_rows, columns: torch.Tensor | None) -> torch.Tensor:
    """bool[N, C]: the mask restricted to item ``columns`` (None = every item), one row per state."""
    if mask.layout == torch.strided:
        out = mask if columns is None else mask[:, columns]
    else:
        rows, items = _pairs(mask)
        if columns is None:
            out = torch.zeros(mask.shape, dtype=torch.bool)
            out[rows, items] = True
        else:  # look each pair's item up among the sampled columns (which may repeat)
            uniq, inverse = torch.unique(columns, return_inverse=True)
            pos = torch.searchsorted(uniq, items).clamp(max=len(uniq) - 1)
            found = uniq[pos] == items
            hit = torch.zeros(mask.shape[0], len(uniq), dtype=torch.bool)
            hit[rows[found], pos[found]] = True
            out = hit[:, inverse]
    return out if mask_rows is None else out[mask_rows]


# -- losses -------------------------------------------------------------------------
def full_cross_entropy(states: torch.Tensor, table: torch.Tensor, targets: torch.Tensor,
                       mask: torch.Tensor | None = None, *, mask_rows: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of the full softmax over the catalogue, P(i | u) = softmax_i(⟨U_u, E_i⟩),
    with the masked items (never a row's own target) set to -inf. See the module docstring."""
    _check_inputs(states, table, targets)
    _check_mask(mask, mask_rows, len(states), table.shape[0])
    logits = (states @ table.T).float()
    if mask is not None:
        excluded = _excluded(mask, mask_rows, None).scatter(1, targets[:, None].long(), False)
        logits = logits.masked_fill(excluded, float("-inf"))
    return F.cross_entropy(logits, targets.long())


def sampling_probs(counts, alpha: float = 1.0) -> torch.Tensor:
    """q_i ∝ (count_i + 1)^alpha: alpha = 0 is uniform, 1 is popularity, in between flattens it.
    The +1 keeps every item sampleable with a finite logQ correction (an item without
    training events can still be a target)."""
    c = torch.as_tensor(np.asarray(counts, np.float64))
    if c.ndim != 1 or not len(c) or not bool(torch.isfinite(c).all()) or bool((c < 0).any()):
        raise ValueError("counts must be a non-empty 1-d array of non-negative finite numbers")
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    w = (c + 1.0) ** float(alpha)
    return (w / w.sum()).float()


def sample_negatives(q: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """K item positions drawn with replacement from ``q`` (one sample shared by the batch);
    with replacement, item j's expected count is exactly K q_j, the logQ correction's term."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"num_negatives must be a positive integer, got {k!r}")
    return torch.multinomial(q.double(), int(k), replacement=True, generator=generator)


def logq_correction(q: torch.Tensor, k: int) -> torch.Tensor:
    """-log(K q_j) for each probability in ``q`` (float32): the term added to a candidate's logit.
    Pass only the candidates' entries: over the whole q it is O(n_items) work per step, the
    cost sampling exists to avoid."""
    return -(torch.log(q.double()) + np.log(k)).float()


def sampled_cross_entropy(states: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, q: torch.Tensor,
                          num_negatives: int | None = None, *, negatives: torch.Tensor | None = None,
                          mask: torch.Tensor | None = None, mask_rows: torch.Tensor | None = None,
                          logq: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean sampled-softmax cross-entropy with the logQ correction (module docstring).

    Give ``num_negatives`` (K, drawn from ``q`` with ``generator``: same generator state,
    same sample) or the sample itself as ``negatives`` int[K] (drawn by the caller from ``q``;
    the correction assumes so). ``logq=False`` drops the correction (the biased estimate,
    for comparison). The item table's gradient touches the target and sampled rows only.
    """
    _check_inputs(states, table, targets)
    n_items = table.shape[0]
    _check_mask(mask, mask_rows, len(states), n_items)
    q = _check_q(q, n_items)
    if (num_negatives is None) == (negatives is None):
        raise ValueError("give exactly one of num_negatives and negatives")
    if negatives is None:
        negatives = sample_negatives(q, num_negatives, generator)
    elif not isinstance(negatives, torch.Tensor) or negatives.ndim != 1 or not len(negatives) \
            or negatives.dtype not in (torch.int64, torch.int32) \
            or int(negatives.min()) < 0 or int(negatives.max()) >= n_items:
        raise ValueError(f"negatives must be a non-empty 1-d tensor of item positions in [0, {n_items})")
    negatives = negatives.long()
    targets = targets.long()
    # one gather for targets and negatives: one scatter-add into the table's gradient, not two
    rows = table[torch.cat([targets, negatives])]
    target_logit = (states * rows[:len(targets)]).sum(-1).float()      # [N]
    negative_logits = (states @ rows[len(targets):].T).float()         # [N, K]
    if logq:
        target_logit = target_logit + logq_correction(q[targets], len(negatives))
        negative_logits = negative_logits + logq_correction(q[negatives], len(negatives))[None]
    excluded = negatives[None, :] == targets[:, None]                  # accidental hits
    if mask is not None:
        excluded = excluded | _excluded(mask, mask_rows, negatives)
    negative_logits = negative_logits.masked_fill_(excluded, float("-inf"))  # in place: nothing needs it
    logits = torch.cat([target_logit[:, None], negative_logits], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long))
