"""Explanations: why a recommended item is there, from the score itself — never invented.

A model's :meth:`~leanrec.models.base.Recommender.decompose` splits each score into a
contribution per history item plus a part no history item accounts for (popularity, a
bias) and, for models with no exact split, an ``unexplained`` part. This module turns that
split into what a user reads:

* the history items that pushed the item up most (its *contributors*), each with its
  exact contribution and its share of the positive total;
* what the item shares with them: the values of categorical fields (genres, categories) it
  has in common with the contributors, and salient words (high TF-IDF in both texts);
* one sentence — "Because you watched Heat (1995) and Casino (1995) — shares Crime,
  Thriller" — or, when the model has no exact split (SASRec), a sentence that says so
  instead of guessing.

``Σ contributions + base + unexplained = score`` holds for every explanation (within float
tolerance), also after the list is cut to its first ``limit`` entries (``other`` carries the
rest), so a caller can always check the arithmetic.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

#: the verb a sentence uses for an event kind ("Because you <verb> X")
KIND_VERBS = {"view": "viewed", "watch": "watched", "click": "clicked on", "purchase": "bought", "buy": "bought",
              "rating": "rated", "rate": "rated", "listen": "listened to", "play": "played", "read": "read",
              "like": "liked", "cart": "added to your cart"}
DEFAULT_VERB = "interacted with"
WORD = re.compile(r"(?u)\b[^\W\d_]{3,}\b")


def verb_for(dataset) -> str:
    """The data set's own verb (``meta["verb"]``), else the verb of its most common event kind."""
    verb = (getattr(dataset, "meta", None) or {}).get("verb")
    if verb:
        return str(verb)
    kinds = dataset.events.frame["kind"]
    if len(kinds) == 0:
        return DEFAULT_VERB
    top = str(kinds.value_counts().index[0]).strip().lower()
    return KIND_VERBS.get(top, DEFAULT_VERB)


@dataclass(frozen=True)
class Contribution:
    item_id: object
    title: str
    contribution: float   # exact part of the score owed to this history item
    share: float          # of the positive contributions' total (0 for negative ones)


@dataclass(frozen=True)
class Explanation:
    user_id: object
    item_id: object
    title: str
    score: float                      # the model's score, as ``score()`` returns it
    exact: bool                       # contributions + other + base + unexplained == score
    method: str                       # how the model's score splits
    sentence: str
    contributions: list[Contribution]  # largest first, at most ``limit``
    other: float                      # the history items cut from the list, summed
    base: float                       # the part no history item accounts for
    unexplained: float                # the part with no exact split (0 when exact)
    shared: dict[str, list[str]] = field(default_factory=dict)  # field -> values shared with the contributors
    words: list[str] = field(default_factory=list)              # salient words shared with them
    note: str = ""

    @property
    def total(self) -> float:
        return sum(c.contribution for c in self.contributions) + self.other + self.base + self.unexplained

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("user_id", "item_id"):
            out[key] = plain_id(out[key])
        for c in out["contributions"]:
            c["item_id"] = plain_id(c["item_id"])
        return out


def plain_id(value):
    """A numpy scalar id as the plain Python value JSON can hold."""
    return value.item() if hasattr(value, "item") else value


class ItemFacts:
    """What explanations read about the catalogue: display titles, categorical values and
    a TF-IDF view of the texts (built once per catalogue)."""

    def __init__(self, items):
        from sklearn.feature_extraction.text import TfidfVectorizer

        frame = items.frame
        self.ids = items.ids
        self.titles = _titles(items)
        self.fields = {name: [_values(v) for v in frame[name]] for name in items.categorical_fields}
        texts = items.texts
        # words in more than a fifth of the catalogue ("genres", "item") say nothing specific
        self.vectorizer = TfidfVectorizer(stop_words="english", token_pattern=WORD.pattern, lowercase=True,
                                          max_df=0.2 if len(texts) >= 20 else 1.0)
        try:
            self.tfidf = self.vectorizer.fit_transform(texts).tocsr()
            self.vocab = np.asarray(self.vectorizer.get_feature_names_out())
        except ValueError:  # no word of 3+ letters anywhere: no salient words, not an error
            self.tfidf, self.vocab = None, np.zeros(0, str)
        # words that only restate a field (its name or a value) are not news in "both mention"
        stop = {w.lower() for name in self.fields for w in WORD.findall(name)}
        for values in self.fields.values():
            for vals in values:
                stop.update(w.lower() for v in vals for w in WORD.findall(v))
        self.stop = stop

    def shared_fields(self, item: int, contributors: list[int], weights: list[float]) -> dict[str, list[str]]:
        """Values the item shares with its contributors, most supported first (the summed
        contribution of the contributors that have the value, then the name)."""
        out = {}
        for name, values in self.fields.items():
            mine = values[item]
            support: Counter = Counter()
            for j, w in zip(contributors, weights):
                for v in set(values[j]) & set(mine):
                    support[v] += w
            if support:
                out[name] = [v for v, _ in sorted(support.items(), key=lambda kv: (-kv[1], kv[0]))]
        return out

    def shared_words(self, item: int, contributors: list[int], n: int = 3) -> list[str]:
        if self.tfidf is None or not contributors:
            return []
        row = self.tfidf[item]
        if row.nnz == 0:
            return []
        best: dict[int, float] = {}
        for j in contributors:  # a few short sparse rows: plain dicts beat sparse reductions here
            lo, hi = self.tfidf.indptr[j], self.tfidf.indptr[j + 1]
            for w, v in zip(self.tfidf.indices[lo:hi], self.tfidf.data[lo:hi]):
                if v > best.get(w, 0.0):
                    best[w] = v
        scored = [(row.data[k] * best[w], self.vocab[w]) for k, w in enumerate(row.indices)
                  if w in best and self.vocab[w] not in self.stop]
        return [w for _, w in sorted(scored, key=lambda sw: (-sw[0], sw[1]))[:n]]


def _values(v) -> list[str]:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return []
    if isinstance(v, (list, tuple, np.ndarray)):
        return [str(x) for x in v if x is not None and str(x) != "unknown"]
    return [str(v)]


def _titles(items) -> list[str]:
    """A short display name per item: the first text field (plus the year where there is
    one, as MovieLens shows it), else the text's first sentence."""
    frame = items.frame
    first = items.text_fields[0] if items.text_fields else "text"
    names = frame[first].astype(str).tolist() if first in frame.columns else items.texts
    if "year" in frame.columns and first != "text":
        years = frame["year"].tolist()
        names = [f"{n} ({int(y)})" if isinstance(y, (int, float)) and math.isfinite(y) else n
                 for n, y in zip(names, years)]
    return [n if len(n) <= 80 else n[:77] + "..." for n in (s.split(". ")[0] if first == "text" else s
                                                           for s in names)]


_FACTS: dict[int, tuple] = {}


def item_facts(items) -> ItemFacts:
    """The cached :class:`ItemFacts` of a catalogue (a few recent catalogues kept)."""
    hit = _FACTS.get(id(items))
    if hit is not None and hit[0] is items:
        return hit[1]
    facts = ItemFacts(items)
    if len(_FACTS) >= 4:
        _FACTS.pop(next(iter(_FACTS)))
    _FACTS[id(items)] = (items, facts)
    return facts


#: a history item is named in the sentence if it brings at least this share of the top one's
#: contribution (the structured list keeps them all)
LEAD_RATIO = 0.2
#: at most this many shared values in the sentence
SHARED_IN_SENTENCE = 3


def leaders(col: np.ndarray, order: np.ndarray, top: int) -> list[int]:
    """Rows of ``col`` the sentence names: the largest positive contribution, then the next
    ones down to ``top`` that bring at least ``LEAD_RATIO`` of it (a 2% contributor is not a
    reason a reader would recognise)."""
    if not len(order) or col[order[0]] <= 0:
        return []
    floor = LEAD_RATIO * col[order[0]]
    return [int(j) for j in order[:top] if col[j] > 0 and col[j] >= floor]


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def sentence(verb: str, contributors: list[str], shared: dict[str, list[str]], words: list[str], *,
             exact: bool, method: str, base_only: bool, base: float, partial: bool) -> str:
    """The one human sentence of an explanation (see the module docstring)."""
    if not exact and not contributors:
        return (f"Recommended by the model ({method}); its score has no exact split into the items you "
                f"{verb}, so no reason is given.")
    if base_only:
        return f"Popular with everyone: {base:.0f} interactions in the training data (not based on your history)."
    if not contributors:
        return f"Nothing you {verb} raises this item's score; it ranks here only because others score lower."
    text = f"Because you {verb} {_join(contributors)}"
    values = [v for vals in shared.values() for v in vals]
    if values:
        text += f" — shares {', '.join(list(dict.fromkeys(values))[:SHARED_IN_SENTENCE])}"
    elif words:
        text += " — both mention " + ", ".join(f"“{w}”" for w in words)
    if partial:
        text = "Partly: " + text[0].lower() + text[1:] + " (the rest of the score has no exact split)"
    return text + "."


def explain_items(model, user_id, item_ids, *, top: int = 3, limit: int = 10, verb: str | None = None
                  ) -> list[Explanation]:
    """Explanations of several items for one user (one decomposition call for all of them)."""
    items = model.items_
    pos = items.positions(list(item_ids))  # KeyError naming unknown ids
    d = model.decompose(user_id, pos)
    scores = model.score([user_id])[0].astype(np.float64)[pos]
    verb = verb or getattr(model, "explain_verb_", None) or DEFAULT_VERB
    facts = item_facts(items)
    out = []
    for k, (item_id, p) in enumerate(zip(item_ids, pos)):
        col = d.contributions[:, k]
        order = np.argsort(-col, kind="stable")
        positive = float(col[col > 0].sum())
        shown = order[:limit]
        contributions = [Contribution(plain_id(facts.ids[d.history[j]]), facts.titles[d.history[j]],
                                      float(col[j]),
                                      float(col[j] / positive) if positive > 0 and col[j] > 0 else 0.0)
                         for j in shown]
        lead = leaders(col, order, top)
        named = [int(d.history[j]) for j in lead]
        shared = facts.shared_fields(int(p), named, [float(col[j]) for j in lead])
        words = facts.shared_words(int(p), named)
        unexplained = float(d.unexplained[k])
        exact = unexplained == 0.0
        text = sentence(verb, [facts.titles[j] for j in named], shared, words, exact=exact, method=d.method,
                        base_only=len(d.history) == 0 and exact, base=float(d.base[k]), partial=not exact)
        out.append(Explanation(plain_id(user_id), plain_id(item_id), facts.titles[p], float(scores[k]), exact, d.method,
                               text, contributions, float(col[order[limit:]].sum()), float(d.base[k]),
                               unexplained, shared, words, d.note if not exact else ""))
    return out


def explain(model, user_id, item_id, *, top: int = 3, limit: int = 10, verb: str | None = None) -> Explanation:
    """Why ``model`` scores ``item_id`` as it does for ``user_id``: the ``top`` contributors
    named in the sentence, the ``limit`` largest contributions listed (see the module
    docstring). Raises KeyError for an unknown user or item."""
    return explain_items(model, user_id, [item_id], top=top, limit=limit, verb=verb)[0]
