"""Explanations in the service: the served model's exact score split, on the live catalogue.

``GET /users/{id}/recommendations?explain=true`` adds an ``explanation`` to every item, with
the same fields as :meth:`leanrec.explain.Explanation.to_dict`. The split is the served
model's own (``scorer.decompose``, :mod:`leanrec.models.live`), on the user's live history:
exact for content, EASE, popularity, the hybrids (z-score splits) and the sequence models
with a linear state; a SASRec (alone or as a fused part) has no split and is reported as
``unexplained`` with a note — never turned into reasons. The cold-start list is the
service's own: no history item plays a part, ``base`` is the score.

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
from ..models.live import Decomposition
from .schema import events

TOLERANCE = 1e-4
TOP = 3
LIMIT = 10
COLD_METHOD = "cold start: popular and new items"


def user_verb(store, user_id: str) -> str:
    """The verb of the user's most frequent event kind ("Because you <verb> X")."""
    with store.engine.connect() as conn:
        row = conn.execute(select(events.c.kind, func.count()).where(events.c.user_id == user_id)
                           .group_by(events.c.kind).order_by(func.count().desc()).limit(1)).first()
    return KIND_VERBS.get(str(row[0]).lower(), DEFAULT_VERB) if row else DEFAULT_VERB


def prefetch(svc, user_id: str, answer: dict) -> dict:
    """The store reads an explanation needs — the user's history, their verb, the texts of
    the history and listed items — done before the caller takes the in-memory lock."""
    cold = answer.get("cold_start", False)
    history = [] if cold else svc.store.history(user_id)
    ids = [i for i, _ in history] + [it["item_id"] for it in answer["items"]]
    return {"history": history, "verb": user_verb(svc.store, user_id) if history else DEFAULT_VERB,
            "texts": svc.store.item_texts(list(dict.fromkeys(ids)))}


def explain_answer(user_id: str, user, cat, scorer, answer: dict, pre: dict) -> None:
    """Add an ``explanation`` to every item of a recommendation ``answer`` (in place): the
    scorer's split for ``user`` (a :class:`~leanrec.models.live.LiveUser`); ``pre`` from
    :func:`prefetch`. Called under the service's state lock (positions stay valid)."""
    items = [it for it in answer["items"] if it["item_id"] in cat.pos]
    if not items:
        return
    positions = np.array([cat.pos[it["item_id"]] for it in items], np.int64)
    cold = answer.get("cold_start", False)
    if cold:
        n = len(items)  # log(1 + events): popularity, or the newest items
        split = Decomposition(np.zeros(0, object), np.zeros((0, n)), np.array([it["score"] for it in items]),
                              np.zeros(n), COLD_METHOD)
    else:
        split = scorer.decompose(user, cat, positions)
        keep = np.flatnonzero(np.any(split.contributions != 0, axis=1))  # items that play no part: not listed
        split = Decomposition(split.history[keep], split.contributions[keep], split.base, split.unexplained,
                              split.method, split.note)
    for k, it in enumerate(items):
        it["explanation"] = _one(user_id, it, k, split, cat, pre["texts"], pre["verb"], cold)


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


def _one(user_id, it, k, split: Decomposition, cat, texts, verb, cold) -> dict:
    col = split.contributions[:, k]
    order = np.argsort(-col, kind="stable")
    positive = float(col[col > 0].sum())
    score = float(it["score"])
    base, unexplained = float(split.base[k]), float(split.unexplained[k])
    residual = score - (float(col.sum()) + base + unexplained)
    notes = [split.note] if split.note else []
    method = split.method
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
                        base_only=not len(split.history) and exact, base=base, partial=not exact)
    contributions = [{"item_id": split.history[j], "title": _title(split.history[j], cat, texts),
                      "contribution": float(col[j]),
                      "share": float(col[j] / positive) if positive > 0 and col[j] > 0 else 0.0}
                     for j in order[:LIMIT]]
    return {"user_id": user_id, "item_id": it["item_id"], "title": _title(it["item_id"], cat, texts),
            "score": score, "exact": exact, "method": method, "sentence": text, "contributions": contributions,
            "other": float(col[order[LIMIT:]].sum()), "base": base, "unexplained": unexplained,
            "shared": shared, "words": [], "note": "; ".join(dict.fromkeys(notes)) if not exact else ""}
