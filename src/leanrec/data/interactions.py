"""Generated interaction logs over a product catalogue, shaped like real shopping behaviour.

:func:`generate_events` pairs with :func:`leanrec.data.products.generate_products`: given
a catalogue (``item_id`` and ``category``), it writes who looked at or bought what, and
when. It exists for load tests and benchmarks of the service, where the *shape* of the
data decides the measurement: a profile that mixes two categories points somewhere
different in the embedding space than one random item, popular items are the ones in
every user's history (so excluding seen items matters), and per-user timestamps must be
increasing for the service's O(d) profile update to apply.

Why each choice:

* **Users prefer 1-3 categories** (uniform over 1..3): most shoppers browse a handful of
  departments, and a mix of one- and multi-category users gives profiles that are both
  sharp and blended. The preferred categories are drawn without replacement with
  probability proportional to each category's share of the catalogue — supply follows
  demand, so the catalogue's Zipf skew over categories carries over to users. The first
  preferred category gets the most events (weights 1, 1/2, 1/3): a main interest and
  side interests, rather than an even split.
* **Item popularity is Zipf-skewed within a category** (weight ~ 1 / rank**s, ``s`` =
  ``item_zipf``, over a random order of the category's items fixed by the seed): a few
  bestsellers per department and a long tail, which is what makes "seen" sets overlap
  and popularity baselines non-trivial. The rank order is random rather than by id so
  that popularity is unrelated to the catalogue's generation order.
* **Noise**: a ``p_noise`` share of events ignores the user's preferences and draws the
  category from the catalogue's category shares (then an item by the same within-category
  skew) — the gift, the one-off purchase; without it every profile would be a clean
  category centroid and a content model would look better than it would on real logs.
* **Kinds**: ``view`` / ``cart`` / ``purchase`` with shares ``kind_shares`` (a typical
  funnel); ``value`` is NaN (implicit feedback: the kind says what happened).
* **Timestamps**: uniform over ``[start_ts, start_ts + days)``, whole seconds, sorted
  within each user; rows are ordered by (user, timestamp). The default start is a fixed
  date (2024-01-01 UTC), not "now", so the output depends on the arguments only.
* **Repeats are allowed**: people re-view the same item; the events are a log, not a set.
* **Speed and determinism**: every draw is one vectorised numpy call over all users or
  all events (inverse-CDF sampling with ``searchsorted`` on a concatenated per-category
  CDF, top-k of Gumbel keys for sampling without replacement), from one
  ``numpy.random.default_rng(seed)`` stream in a fixed order, so the same arguments give
  the same frame on every run; 100k users × 20 events take about a second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_START_TS", "KINDS", "generate_events"]

DEFAULT_START_TS = 1_704_067_200.0  # 2024-01-01T00:00:00Z
KINDS = ("view", "cart", "purchase")
_MAX_PREFERRED = 3


def _check(items: pd.DataFrame, n_users: int, events_per_user: tuple[int, int], days: float,
           p_noise: float, item_zipf: float, kind_shares: tuple[float, float, float]) -> None:
    for col in ("item_id", "category"):
        if col not in items.columns:
            raise ValueError(f"items must have an {col!r} column (e.g. from generate_products)")
    if len(items) == 0:
        raise ValueError("items is empty")
    if items["item_id"].duplicated().any():
        raise ValueError("items has duplicate item_id values")
    if items["category"].isna().any():
        raise ValueError("items has missing category values")
    if not isinstance(n_users, (int, np.integer)) or isinstance(n_users, bool) or n_users < 0:
        raise ValueError(f"n_users must be a non-negative integer, got {n_users!r}")
    lo, hi = events_per_user
    if not (0 <= int(lo) <= int(hi)):
        raise ValueError(f"events_per_user must be (lo, hi) with 0 <= lo <= hi, got {events_per_user!r}")
    if not 0 < days <= 40_000:  # offsets in seconds must fit 32 bits (see the timestamp sort)
        raise ValueError(f"days must be in (0, 40000], got {days!r}")
    if not 0.0 <= p_noise <= 1.0:
        raise ValueError(f"p_noise must be in [0, 1], got {p_noise!r}")
    if not item_zipf >= 0:
        raise ValueError(f"item_zipf must be >= 0, got {item_zipf!r}")
    if len(kind_shares) != len(KINDS) or min(kind_shares) < 0 or sum(kind_shares) <= 0:
        raise ValueError(f"kind_shares must be {len(KINDS)} non-negative numbers with a positive sum")


def generate_events(items: pd.DataFrame, n_users: int, events_per_user: tuple[int, int] = (10, 30), *,
                    seed: int = 42, start_ts: float = DEFAULT_START_TS, days: float = 90.0,
                    p_noise: float = 0.1, item_zipf: float = 1.0,
                    kind_shares: tuple[float, float, float] = (0.85, 0.10, 0.05)) -> pd.DataFrame:
    """An event log of ``n_users`` users over ``items`` (see the module docstring for the model).

    ``items``: a DataFrame with ``item_id`` and ``category`` (other columns are ignored).
    Each user gets a number of events drawn uniformly from ``events_per_user`` (inclusive).
    Returns columns ``user_id`` (int64, 0..n_users-1), ``item_id`` (the catalogue's ids and
    dtype), ``timestamp`` (float64 Unix seconds), ``kind`` (``view``/``cart``/``purchase``)
    and ``value`` (float64, NaN), ordered by user then timestamp, with a fresh RangeIndex.
    Deterministic given the arguments.
    """
    _check(items, n_users, events_per_user, days, p_noise, item_zipf, kind_shares)
    rng = np.random.default_rng(seed)

    # Catalogue: items grouped by category (stable, so ties keep catalogue order).
    cat_codes, cat_names = pd.factorize(items["category"], sort=True)
    order = np.argsort(cat_codes, kind="stable")
    item_ids = items["item_id"].to_numpy()[order]
    codes = cat_codes[order]
    n_cat = len(cat_names)
    size = np.bincount(codes, minlength=n_cat)
    offset = np.concatenate([[0], np.cumsum(size)[:-1]])
    share = size / size.sum()

    # Within-category popularity: Zipf over a random rank order. One monotone array
    # ``c + cdf_c(item)`` lets a single searchsorted sample every event's item from its
    # own category's law.
    rank_in_cat = np.arange(len(codes)) - offset[codes]          # 0.. within each category
    key = rng.random(len(codes)) + codes                         # shuffle within category
    shuffled = np.argsort(key, kind="stable")                    # position -> item at that rank
    weight = 1.0 / (rank_in_cat + 1.0) ** item_zipf              # by rank
    cum = np.cumsum(weight)
    cat_total = cum[offset + size - 1]
    before = np.where(offset > 0, cum[np.maximum(offset - 1, 0)], 0.0)
    cdf = codes + (cum - before[codes]) / (cat_total - before)[codes]

    # Users: 1-3 preferred categories, without replacement, proportional to category share
    # (top-k of Gumbel-perturbed log weights), main interest weighted most.
    n_pref = rng.integers(1, _MAX_PREFERRED + 1, n_users)
    n_pref = np.minimum(n_pref, n_cat)
    with np.errstate(divide="ignore"):
        gumbel = np.log(share)[None, :] - np.log(-np.log(rng.random((n_users, n_cat))))
    k = min(_MAX_PREFERRED, n_cat)
    preferred = np.argsort(-gumbel, axis=1, kind="stable")[:, :k]    # int[n_users, k]
    pref_w = np.where(np.arange(k)[None, :] < n_pref[:, None], 1.0 / np.arange(1, k + 1)[None, :], 0.0)
    pref_cdf = np.cumsum(pref_w, axis=1) / pref_w.sum(axis=1, keepdims=True)

    # Events: counts per user, then one draw per event for each choice.
    lo, hi = int(events_per_user[0]), int(events_per_user[1])
    counts = rng.integers(lo, hi + 1, n_users)
    user = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    n_events = len(user)
    slot = (rng.random(n_events)[:, None] >= pref_cdf[user]).sum(axis=1)
    cat = preferred[user, np.minimum(slot, k - 1)]
    noise = rng.random(n_events) < p_noise
    noise_cat = np.searchsorted(np.cumsum(share), rng.random(n_events), side="right").clip(0, n_cat - 1)
    cat = np.where(noise, noise_cat, cat)
    pos = np.searchsorted(cdf, cat + rng.random(n_events), side="right")
    pos = np.clip(pos, offset[cat], offset[cat] + size[cat] - 1)
    item = item_ids[shuffled[pos]]
    # Times: whole seconds after start_ts, sorted within each user. Every other column is
    # drawn independently per event, so sorting one (user, offset) key is enough.
    span = max(int(np.ceil(days * 86_400.0)), 1)
    offset_s = np.sort((user << 32) + rng.integers(0, span, n_events)) & 0xFFFFFFFF
    ts = float(start_ts) + offset_s.astype(np.float64)
    shares = np.asarray(kind_shares, np.float64)
    kind_idx = np.searchsorted(np.cumsum(shares) / shares.sum(), rng.random(n_events), side="right")
    kind = pd.Categorical.from_codes(np.minimum(kind_idx, len(KINDS) - 1), KINDS)

    return pd.DataFrame({
        "user_id": user,
        "item_id": item,
        "timestamp": ts,
        "kind": pd.Series(kind, dtype="str"),
        "value": np.full(n_events, np.nan),
    })
