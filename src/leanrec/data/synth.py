"""Generated data sets with a known structure, for tests and quick experiments.

Items belong to topics; an item's text names its topic's words, and each user prefers one
or two topics and mostly consumes items from them (with a popularity skew). So a content
model has real signal (text says topic), a collaborative model has real signal (co-
consumption within topics), and neither is trivially perfect. Deterministic given the seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import Dataset, Events, Items

TOPICS = {
    "space": ["rocket", "galaxy", "astronaut", "orbit", "planet", "alien", "star"],
    "crime": ["detective", "murder", "heist", "gangster", "police", "prison", "mystery"],
    "romance": ["love", "wedding", "heart", "kiss", "couple", "paris", "letter"],
    "cooking": ["kitchen", "chef", "recipe", "bread", "spice", "dinner", "garden"],
    "sport": ["football", "coach", "team", "match", "stadium", "champion", "race"],
    "music": ["guitar", "band", "concert", "singer", "piano", "tour", "album"],
}


def make_dataset(n_users: int = 200, n_items: int = 120, events_per_user: tuple[int, int] = (8, 30),
                 seed: int = 0, p_off_topic: float = 0.1) -> Dataset:
    """A synthetic catalogue and event log; see the module docstring."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    item_topic = rng.integers(0, len(names), n_items)
    popularity = rng.pareto(1.5, n_items) + 1.0
    items = []
    for i, t in enumerate(item_topic):
        words = rng.choice(TOPICS[names[t]], size=3, replace=False)
        items.append({"item_id": i + 1, "title": f"Item {i + 1}: {' '.join(words)}",
                      "genres": [names[t]], "price": float(rng.uniform(1, 50)),
                      "text": f"Item {i + 1}: {' '.join(words)}. Genres: {names[t]}"})
    rows = []
    t0 = 1_600_000_000
    for u in range(1, n_users + 1):
        liked = rng.choice(len(names), size=int(rng.integers(1, 3)), replace=False)
        n = int(rng.integers(events_per_user[0], events_per_user[1] + 1))
        on_topic = np.isin(item_topic, liked)
        weights = popularity * np.where(on_topic, 1.0, p_off_topic)
        chosen = rng.choice(n_items, size=min(n, n_items), replace=False, p=weights / weights.sum())
        times = t0 + np.sort(rng.integers(0, 86_400 * 90, size=len(chosen)))
        for item, ts in zip(chosen, times):
            rows.append({"user_id": u, "item_id": int(item) + 1, "timestamp": float(ts),
                         "value": float(rng.integers(1, 6)), "kind": "view"})
    return Dataset(
        Items.from_frame(pd.DataFrame(items), text_fields=("title",), categorical_fields=("genres",),
                         numeric_fields=("price",)),
        Events.from_frame(pd.DataFrame(rows)),
        name=f"synthetic-{seed}",
    )
