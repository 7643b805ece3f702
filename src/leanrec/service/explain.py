"""Explanations in the service: the library's exact score splits, on the live catalogue.

``GET /users/{id}/recommendations?explain=true`` adds an ``explanation`` to every item, with
the same fields as :meth:`leanrec.explain.Explanation.to_dict`. The split follows what the
service actually scored (``core.RecService``):

* content — U = Σ_j w_j V_j / Σ w over the user's live history (decay in events), so
  ⟨U, V_i⟩ = Σ_j (w_j / Σw) ⟨V_j, V_i⟩;
* EASE — Σ_j B_ji over the user's distinct items that the model knows;
* hybrid / learned hybrid — each part's z-score split into centred per-item terms
  (:mod:`leanrec.models.decompose` explains why that is exact), weighted as served;
* sequence models with mean or attention pooling — the user state is Σ_t a_t v_t (+ a
  bias), so ⟨state, E_i⟩ splits exactly (the bias part is ``base``); a SASRec (alone or as a
  fused part) has no split and is reported as ``unexplained`` with a note — never turned
  into reasons;
* popular and the cold-start list — no history item plays a part: ``base`` is the score.

Every explanation is checked against the score the list carries: if the parts do not add
up within 1e-4 (e.g. the stored profile still holds an item deleted since), the difference
is reported as ``unexplained`` and ``exact`` is false. Explaining reads the user's history
and the items' texts from the store, so it is the slow path (a thread, a few ms), never the
default.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from sqlalchemy import func, select

from ..explain import DEFAULT_VERB, KIND_VERBS, leaders, sentence
from ..data.history import decay_weights
from .schema import events

TOLERANCE = 1e-4
TOP = 3
LIMIT = 10


class _Split:
    """Σ rows of ``contributions`` + base + unexplained over the explained positions."""

    def __init__(self, history: list[str], n: int):
        self.history = history
        self.contributions = np.zeros((len(history), n))
        self.base = np.zeros(n)
        self.unexplained = np.zeros(n)
        self.notes: list[str] = []

    def add(self, ids: list[str], rows: np.ndarray) -> None:
        """Add one row per history item id (repeats add up; new ids get a row)."""
        index = {i: k for k, i in enumerate(self.history)}
        new = [i for i in dict.fromkeys(ids) if i not in index]
        if new:
            index.update({i: len(self.history) + k for k, i in enumerate(new)})
            self.history = self.history + new
            self.contributions = np.vstack([self.contributions, np.zeros((len(new), self.contributions.shape[1]))])
        for item, row in zip(ids, rows):
            self.contributions[index[item]] += row


def user_verb(store, user_id: str) -> str:
    """The verb of the user's most frequent event kind ("Because you <verb> X")."""
    with store.engine.connect() as conn:
        row = conn.execute(select(events.c.kind, func.count()).where(events.c.user_id == user_id)
                           .group_by(events.c.kind).order_by(func.count().desc()).limit(1)).first()
    return KIND_VERBS.get(str(row[0]).lower(), DEFAULT_VERB) if row else DEFAULT_VERB


def content_weights(history: list[tuple[str, float]], cat, half_life) -> tuple[list[str], np.ndarray]:
    """Distinct live history items and their weights w_j / Σw (the service's profile)."""
    live = [i for i, _ in history if i in cat]
    if not live:
        return [], np.zeros(0)
    w = decay_weights(len(live), half_life)
    w = w / w.sum()
    ids = list(dict.fromkeys(live))
    index = {i: k for k, i in enumerate(ids)}
    a = np.zeros(len(ids))
    for item, weight in zip(live, w):
        a[index[item]] += weight
    return ids, a


def _sequence_terms(svc, st, cat, live, positions):
    """A mean/attention sequence model's split: (history ids, rows a_t⟨v_t, E_i⟩ at ``positions``,
    the rows' means over the live items, bias⟨b, E_i⟩ at positions, its mean) — None for SASRec."""
    terms = live.split(cat, svc._sequence(st, cat))
    if terms is None:
        return None
    hist, a, v, bias = terms
    E = live.item_table(cat).astype(np.float64)
    alive = np.flatnonzero(cat.alive)
    mean_e = E[alive].mean(axis=0) if len(alive) else np.zeros(E.shape[1])
    rows = a[:, None] * (v @ E[positions].T)
    means = a * (v @ mean_e)
    b = E[positions] @ bias if bias is not None else np.zeros(len(positions))
    b_mean = float(mean_e @ bias) if bias is not None else 0.0
    return [cat.ids[p] for p in hist], rows, means, b, b_mean


def _content_terms(cat, ids, a, positions) -> np.ndarray:
    """a_j ⟨V_j, V_i⟩ for every history item j and explained position i."""
    if not ids:
        return np.zeros((0, len(positions)))
    H = np.stack([cat.vector(i) for i in ids]).astype(np.float64)
    return a[:, None] * (H @ cat.V[positions].astype(np.float64).T)


def _ease_rows(scoring, cat, seen: list[str], B) -> tuple[list[str], np.ndarray]:
    """(the seen items the model knows, B's rows laid over the catalogue positions)."""
    known = [i for i in seen if i in scoring.item_index]
    mpos = scoring.model_positions(cat)
    valid = mpos >= 0
    rows = np.zeros((len(known), cat.n))
    if known:
        rows[:, mpos[valid]] = B[[scoring.item_index[i] for i in known]][:, valid]
    return known, rows


def _zsplit(split, ids, rows_at_pos, rows_mean, full, ref, coef) -> None:
    """Add coef · z's split: (row − its mean over ``ref``) / σ(full over ref)."""
    sd = full[ref].std() if len(ref) else 0.0
    scale = coef / (sd if sd > 0 else 1.0)
    split.add(ids, (rows_at_pos - rows_mean[:, None]) * scale[None, :])


def split_scores(svc, st, cat, scoring, positions: np.ndarray, history) -> _Split:
    """The parts of the served scores of ``positions`` for a user with a history."""
    kind = scoring.kind
    seen = list(st.seen)
    ids, a = content_weights(history, cat, scoring.half_life)
    folder = scoring.folder
    split = _Split(list(dict.fromkeys(ids + [i for i in seen if i in scoring.item_index])), len(positions))
    if kind == "content":
        split.add(ids, _content_terms(cat, ids, a, positions))
        return split
    if kind == "popular":
        split.base += cat.counts[positions]
        return split
    if kind == "sequential":
        terms = _sequence_terms(svc, st, cat, scoring.live[""], positions)
        if terms is None:
            split.unexplained += scoring.live[""].scores(cat, svc._sequence(st, cat))[positions]
            split.notes.append("a transformer's user state (sasrec) has no exact split into history items")
        else:
            ids_t, rows, _, b, _ = terms
            split.add(ids_t, rows)
            split.base += b
        return split
    if kind == "ease":
        known, rows = _ease_rows(scoring, cat, seen, folder.ease_B)
        split.add(known, rows[:, positions])
        return split
    # the hybrids: z-score fusion over the live catalogue, as core._full_scores serves it
    alive = np.flatnonzero(cat.alive)
    mpos = scoring.model_positions(cat)
    has_events = np.zeros(cat.n, bool)
    has_events[mpos[(mpos >= 0) & (folder.popularity > 0)]] = True
    has_events &= cat.alive
    ev_cols = np.flatnonzero(has_events)
    ev = has_events[positions]
    content_full = cat.full_scores(st.profile.vector).astype(np.float64)
    mean_v = cat.V[alive].astype(np.float64).mean(axis=0) if len(alive) else np.zeros(cat.dim)
    content_rows = _content_terms(cat, ids, a, positions)
    content_mean = a * (np.stack([cat.vector(i) for i in ids]).astype(np.float64) @ mean_v) if ids else np.zeros(0)

    def content_part(coef):
        _zsplit(split, ids, content_rows, content_mean, content_full, alive, coef)

    def ease_part(B, coef):
        known, rows = _ease_rows(scoring, cat, seen, B)
        full = rows.sum(axis=0)
        means = rows[:, ev_cols].mean(axis=1) if len(ev_cols) else np.zeros(len(known))
        _zsplit(split, known, rows[:, positions], means, full, ev_cols, coef)

    if kind == "hybrid":
        w = float(folder.weight)
        content_part(np.where(ev, 1.0 - w, 1.0))
        ease_part(folder.ease_B, np.where(ev, w, 0.0))
        return split
    for name, sub in folder.components:  # learned_hybrid
        w, w_new = float(folder.weights[name]), float(folder.new_item_weights[name])
        if sub.kind == "content":
            content_part(np.where(ev, w, w_new))
        elif sub.kind == "ease":
            ease_part(sub.ease_B, np.where(ev, w, 0.0))
        else:
            if sub.kind == "sequential":
                s = scoring.live[name].scores(cat, svc._sequence(st, cat))
                terms = _sequence_terms(svc, st, cat, scoring.live[name], positions)
                if terms is not None:  # mean / attention: centred rows, like the content part
                    ids_t, rows, means, b, b_mean = terms
                    coef = np.where(ev, w, w_new)
                    sd = s[alive].std() if len(alive) else 0.0
                    _zsplit(split, ids_t, rows, means, s, alive, coef)
                    split.base += (b - b_mean) / (sd if sd > 0 else 1.0) * coef
                    continue
                ref, coef, target = alive, np.where(ev, w, w_new), "unexplained"
            else:  # popular: the training counts, a part no history item plays
                s = svc._model_to_live(cat, scoring, sub.popularity.astype(np.float64))
                ref, coef, target = ev_cols, np.where(ev, w, 0.0), "base"
            sd = s[ref].std() if len(ref) else 0.0
            part = (s[positions] - (s[ref].mean() if len(ref) else 0.0)) / (sd if sd > 0 else 1.0) * coef
            setattr(split, target, getattr(split, target) + part)
            if sub.kind == "sequential" and (w or w_new):
                split.notes.append(f"the transformer {name!r} (sasrec) has no exact split into history items")
    return split


def prefetch(svc, user_id: str, answer: dict) -> dict:
    """The store reads an explanation needs — the user's history, their verb, the texts of
    the history and listed items — done before the caller takes the in-memory lock."""
    cold = answer.get("cold_start", False)
    history = [] if cold else svc.store.history(user_id)
    ids = [i for i, _ in history] + [it["item_id"] for it in answer["items"]]
    return {"history": history, "verb": user_verb(svc.store, user_id) if history else DEFAULT_VERB,
            "texts": svc.store.item_texts(list(dict.fromkeys(ids)))}


def explain_answer(svc, user_id: str, st, cat, scoring, answer: dict, pre: dict) -> None:
    """Add an ``explanation`` to every item of a recommendation ``answer`` (in place); ``pre``
    from :func:`prefetch`. Called under the service's state lock (positions stay valid)."""
    items = [it for it in answer["items"] if it["item_id"] in cat.pos]
    if not items:
        return
    positions = np.array([cat.pos[it["item_id"]] for it in items], np.int64)
    scores = np.array([it["score"] for it in items])
    cold = answer.get("cold_start", False)
    if cold:
        split = _Split([], len(items))
        split.base += scores  # log(1 + events): popularity, or the newest items
        method = "cold start: popular and new items"
    else:
        split = split_scores(svc, st, cat, scoring, positions, pre["history"])
        keep = np.flatnonzero(np.any(split.contributions != 0, axis=1))  # items that play no part: not listed
        split.history = [split.history[j] for j in keep]
        split.contributions = split.contributions[keep]
        method = {"content": "weighted mean of history vectors", "ease": "item-item weights (EASE)",
                  "popular": "popularity", "hybrid": "z-scored EASE + content",
                  "learned_hybrid": "learned z-score fusion", "sequential": "sequence model"}[scoring.kind]
        if scoring.kind == "sequential":
            pooling = scoring.folder.seqnet["config"]["pooling"]
            method = {"mean": "weighted mean of learned item vectors", "attention": "attention-weighted item vectors",
                      "sasrec": "SASRec transformer"}.get(pooling, method)
    for k, it in enumerate(items):
        it["explanation"] = _one(user_id, it, k, split, cat, pre["texts"], pre["verb"], method, cold)


def _title(item_id: str, cat, texts: dict) -> str:
    p = cat.pos.get(item_id)
    fields = cat.fields[p] if p is not None else {}
    title = fields.get("title") if isinstance(fields, dict) else None
    if not isinstance(title, str) or not title.strip():
        title = (texts.get(item_id) or item_id).split(". ")[0]
    else:
        year = fields.get("year")  # shown as the library shows MovieLens titles: "Heat (1995)"
        if isinstance(year, (int, float)) and not isinstance(year, bool) and np.isfinite(year):
            title = f"{title} ({int(year)})"
    return title if len(title) <= 80 else title[:77] + "..."


def _values(v) -> set[str]:
    if isinstance(v, list):
        return {str(x) for x in v if isinstance(x, (str, int)) and not isinstance(x, bool)}
    return {v} if isinstance(v, str) else set()


def _shared(cat, item_id: str, leaders: list[str], weights: list[float]) -> dict[str, list[str]]:
    """Field values (strings or lists of them; not the title) shared with the contributors."""
    mine = cat.fields[cat.pos[item_id]] or {}
    out = {}
    for name, value in mine.items():
        if name == "title":
            continue
        values = _values(value)
        support: Counter = Counter()
        for j, w in zip(leaders, weights):
            p = cat.pos.get(j)
            if p is not None:
                for v in values & _values((cat.fields[p] or {}).get(name)):
                    support[v] += w
        if support:
            out[name] = [v for v, _ in sorted(support.items(), key=lambda kv: (-kv[1], kv[0]))]
    return out


def _one(user_id, it, k, split: _Split, cat, texts, verb, method, cold) -> dict:
    col = split.contributions[:, k]
    order = np.argsort(-col, kind="stable")
    positive = float(col[col > 0].sum())
    score = float(it["score"])
    base, unexplained = float(split.base[k]), float(split.unexplained[k])
    residual = score - (float(col.sum()) + base + unexplained)
    notes = list(split.notes)
    if abs(residual) > TOLERANCE * max(1.0, abs(score)):
        unexplained += residual
        notes.append("the stored profile differs from the live history (an item deleted since?)")
    exact = unexplained == 0.0
    lead = leaders(col, order, TOP)
    named = [split.history[j] for j in lead]
    shared = _shared(cat, it["item_id"], named, [float(col[j]) for j in lead])
    if cold:
        text = ("You have no history yet: this is one of the most popular or newest items, the same for "
                "every new user.")
    else:
        text = sentence(verb, [_title(j, cat, texts) for j in named], shared, [], exact=exact, method=method,
                        base_only=not split.history and exact, base=base, partial=not exact)
    contributions = [{"item_id": split.history[j], "title": _title(split.history[j], cat, texts),
                      "contribution": float(col[j]),
                      "share": float(col[j] / positive) if positive > 0 and col[j] > 0 else 0.0}
                     for j in order[:LIMIT]]
    return {"user_id": user_id, "item_id": it["item_id"], "title": _title(it["item_id"], cat, texts),
            "score": score, "exact": exact, "method": method, "sentence": text, "contributions": contributions,
            "other": float(col[order[LIMIT:]].sum()), "base": base, "unexplained": unexplained,
            "shared": shared, "words": [], "note": "; ".join(dict.fromkeys(notes)) if not exact else ""}
