"""The fine-tune's training data: item pairs mined from histories, cut into batches.

Why these pairs: items a user consumed close together in their history are a free signal
of "these go together". Why these batches: the loss takes every other pair's items as
negatives, so a batch must never hold one item twice (a duplicate would be a false
negative). Everything here is a function of its arguments (and the seed): it is what makes
a resumed fine-tune equal an uninterrupted one.
"""

from __future__ import annotations

import numpy as np

from leanrec.data.history import History

__all__ = ["epoch_batches", "epoch_rng", "mine_pairs", "no_duplicate_batches", "sampling_log_q"]


def mine_pairs(dataset, window: int = 3) -> np.ndarray:
    """Item-position pairs ``int64[n_pairs, 2]`` of items consumed close together.

    For each user's events ordered by (timestamp, item position) — the order of
    ``History.from_dataset(dataset).sequences`` — every ``(seq[t], seq[t + d])`` with
    ``1 <= d <= window``, except pairs of one item with itself. Rows come user by user
    (users in id order), then by ``t``, then by ``d``. Repeated pairs are kept: a pair
    seen often is sampled often.
    """
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


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch's pair sample (and of its dropout seed): (seed, epoch) only."""
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
    rng = epoch_rng(seed, epoch)
    n = min(int(pairs_per_epoch), len(pool))
    chosen = pool[rng.permutation(len(pool))[:n]]
    flip = rng.random(n) < 0.5
    chosen = np.where(flip[:, None], chosen[:, ::-1], chosen)
    # The last batches gather the pairs of very popular items that kept clashing; below a
    # quarter of a batch they have too few negatives to be worth a step.
    return [chosen[idx] for idx in no_duplicate_batches(chosen, batch_size, min_size=max(2, batch_size // 4))]


def sampling_log_q(pool: np.ndarray, n_items: int) -> np.ndarray:
    """log of each item's share of the pair slots in ``pool``: how often the batches hold it.

    The sampling-bias ("logQ") correction of the loss subtracts it from each candidate's
    logit (see :mod:`leanrec.encoders.finetune`)."""
    counts = np.bincount(pool.ravel(), minlength=n_items).astype(np.float64)
    return np.log(np.maximum(counts, 1.0) / max(1, 2 * len(pool))).astype(np.float32)
