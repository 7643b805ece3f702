"""Learned hybrid: fuse collaborative, content and sequential scores with learned weights.

Each component's scores are z-normalised per user (collaborative ones over the items with
training events, text-based ones over all items), then fused linearly:

* items with training events:  s = Σ_c w_c · z_c           (every component)
* items without (new items):    s = Σ_c w'_c · z_c          (text-based components only)

The weights are learned, not grid-searched: they minimise the softmax cross-entropy of
held-out next items over the user's unseen items (the seed's P(i|u) = softmax(s), so the
weights are a listwise ranker with one parameter per component), with a small L2 penalty,
by L-BFGS-B with the exact gradient, bounded at 0: a component can be switched off but never
turned against (correlated components otherwise trade large opposite weights that fit the
validation users and little else, and a non-negative weight reads as "how much this part
counts"). w' is learned first on text components alone (what is left when an item has no
collaborative signal), then w with w' fixed.

Where the held-out events come from:

* ``fit(dataset)`` — an internal validation: each user's last event is held out (the warm
  protocol's split of ``dataset``), the components are fitted on the rest, the weights
  learned on the held-out events, then the components are refitted on all of ``dataset``
  (a component with ``update_history`` — the learned sequence models, which are inductive
  over histories — is not retrained: it just takes the full histories);
* :meth:`LearnedHybrid.from_fitted` — components already fitted on a training set and a
  validation set (``Targets``) to learn the weights on, then components fitted on
  train+validation to serve: what ``leanrec demo`` does, so the weights are learned on
  exactly the validation data every other model is tuned on, with no extra training.

Users unknown to every component get zeros (the service adds its cold-start list).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from sklearn.base import clone

from .base import Recommender
from .decompose import merge, zscore_split
from .live import LiveScorer, encoder_key, zscore


def scores_new_items(model) -> bool:
    """Whether a model (or scorer) scores items from their content (so new items get real scores)."""
    return bool(getattr(model, "scores_new_items", False))


def component_z(scores: np.ndarray, text_based: bool, has_events: np.ndarray,
                alive: np.ndarray | None = None) -> np.ndarray:
    """z-scores of one component's scores: over the (``alive``; all if None) items for a
    text-based component, over the items with events for a collaborative one (0 elsewhere)."""
    scores = scores.astype(np.float64)
    if text_based:
        return zscore(scores, alive)
    z = zscore(scores, np.flatnonzero(has_events))
    z[:, ~has_events] = 0.0
    return z


def fuse(parts: list, weights: dict, new_item_weights: dict, has_events: np.ndarray) -> np.ndarray:
    """Σ w·z on items with events, Σ w'·z on the others; ``parts`` = [(name, z)]."""
    warm = sum(weights[name] * z for name, z in parts)
    new = sum(new_item_weights[name] * z for name, z in parts)
    return np.where(has_events, warm, new).astype(np.float32)


class LearnedHybridScorer(LiveScorer):
    """The learned fusion over a live catalogue. Its parts are the components' scorers, on
    one catalogue (the service's) or each on its own (``catalogues``: the library's
    components may read different encoders' vectors)."""

    kind = "learned_hybrid"
    explain_method = "learned z-score fusion"
    scores_new_items = True
    fusable = False

    def __init__(self, item_ids, popularity, parts: list, weights: dict, new_item_weights: dict, **kw):
        super().__init__(item_ids, popularity, **kw)
        self.parts = list(parts)
        self.weights, self.new_item_weights = dict(weights), dict(new_item_weights)
        for _, part in self.parts:
            if hasattr(part, "live_counts"):  # popularity as the weights were learned on it
                part.live_counts = False
        self.uses_profile = any(p.uses_profile for _, p in self.parts)
        self.window = max((p.window for _, p in self.parts), default=0)

    def _cats(self, cat, catalogues) -> list:
        return list(catalogues) if catalogues is not None else [cat] * len(self.parts)

    def score(self, users, cat, catalogues=None) -> np.ndarray:
        cats = self._cats(cat, catalogues)
        alive = None if self.identity(cat) else np.flatnonzero(cat.alive)
        has_events = self.has_events(cat)
        parts = [(name, component_z(part.score(users, c), scores_new_items(part), has_events, alive))
                 for (name, part), c in zip(self.parts, cats)]
        return fuse(parts, self.weights, self.new_item_weights, has_events)

    def decompose(self, user, cat, positions, catalogues=None):
        """Each component's z-score split with its learned weight (w on items with events,
        w' on the others; collaborative components are 0 on items without events); a
        component with no exact split (a transformer) lands in ``unexplained``."""
        has_events = self.has_events(cat)
        ev = has_events[positions]
        cols = np.flatnonzero(has_events)
        out = []
        for (name, part), c in zip(self.parts, self._cats(cat, catalogues)):
            w, w_new = self.weights[name], self.new_item_weights[name]
            if w == 0 and w_new == 0:
                continue
            if scores_new_items(part):
                out.append(zscore_split(part, user, c, positions, None, np.where(ev, w, w_new)))
            else:
                out.append(zscore_split(part, user, c, positions, cols, np.where(ev, w, 0.0)))
        return merge(out, self.explain_method) if out else super().decompose(user, cat, positions)

    # -- folders ------------------------------------------------------------------------
    def _config(self) -> dict:
        configs = [(name, part, part._config()) for name, part in self.parts]
        spec = None
        for name, part, config in configs:
            if not part.fusable:
                what = type(part).__name__.removesuffix("Scorer")
                raise ValueError(f"learned hybrid component {name!r}: cannot save a {what} inside a learned hybrid "
                                 "(a fused model is never a component)")
            comp_spec = config.get("encoder")
            if comp_spec is not None:
                if spec is not None and encoder_key(comp_spec) != encoder_key(spec):
                    raise ValueError(f"the service holds one encoder, but the learned hybrid's text components use "
                                     f"{spec['name']!r} and {comp_spec['name']!r}; fit them on one encoder")
                spec = comp_spec
        contents = [part for _, part, _ in configs if part.uses_profile]
        if len(contents) > 1:
            raise ValueError("a learned hybrid with more than one content component cannot be served "
                             "(the service keeps one content profile per user)")
        for name, part in self.parts:
            if part.item_ids != self.item_ids:
                raise ValueError(f"learned hybrid component {name!r} was fitted on another catalogue")
        return {"encoder": spec, "half_life": contents[0].half_life if contents else None,
                "components": [{"name": n, "folder": f"components/c{k}", "kind": p.kind}
                               for k, (n, p) in enumerate(self.parts)],
                "weights": {n: float(self.weights[n]) for n, _ in self.parts},
                "new_item_weights": {n: float(self.new_item_weights[n]) for n, _ in self.parts}}

    def _save_arrays(self, folder) -> None:
        for k, (_, part) in enumerate(self.parts):
            part.save(folder / "components" / f"c{k}")

    @classmethod
    def _from_folder(cls, path, config, item_ids, popularity, load=None):
        """``load(folder)`` reads a component's folder (the registry's loader)."""
        comps, weights, new = config.get("components"), config.get("weights"), config.get("new_item_weights")
        file = path / "leanrec_model.json"
        if not isinstance(comps, list) or not comps or not isinstance(weights, dict) or not isinstance(new, dict):
            raise ValueError(f"{file}: a learned_hybrid needs 'components', 'weights' and 'new_item_weights'")
        parts = []
        for c in comps:
            name = c.get("name") if isinstance(c, dict) else None
            if name not in weights or name not in new:
                raise ValueError(f"{file}: component {name!r} has no weight")
            sub = load(path / str(c.get("folder")))
            if sub.item_ids != item_ids:
                raise ValueError(f"{path / str(c.get('folder'))}: component {name!r} has another catalogue than {path}")
            if sub.encoder is not None and encoder_key(sub.encoder) != encoder_key(config["encoder"]):
                raise ValueError(f"{path / str(c.get('folder'))}: component {name!r} uses encoder {sub.encoder}, "
                                 f"the learned hybrid {config['encoder']}")
            parts.append((name, sub))
        return cls(item_ids, popularity, parts, weights, new, temperature=config.get("temperature", 1.0),
                   encoder=config["encoder"], half_life=config.get("half_life"), meta=config)


def _softmax_ce(weights, Z, offset, allowed, target, l2):
    """Mean cross-entropy of the targets and its gradient for logits = Σ_c w_c Z_c + offset."""
    logits = np.tensordot(weights, Z, axes=(0, 0)) + offset  # (U, I)
    logits = np.where(allowed, logits, -np.inf)
    top = logits.max(axis=1, keepdims=True)
    p = np.exp(logits - top)
    norm = p.sum(axis=1, keepdims=True)
    p /= norm
    rows = np.arange(len(target))
    loss = float(np.mean(np.log(norm[:, 0]) + top[:, 0] - logits[rows, target])) + l2 * float(weights @ weights)
    expected = np.einsum("ui,cui->c", p, Z) / len(target)
    observed = Z[:, rows, target].mean(axis=1)
    return loss, expected - observed + 2 * l2 * weights


def learn_weights(Z: np.ndarray, allowed: np.ndarray, target: np.ndarray, l2: float = 1e-3,
                  offset: np.ndarray | float = 0.0) -> np.ndarray:
    """Weights w >= 0 minimising the softmax cross-entropy of ``target`` among ``allowed``
    items for logits Σ_c w_c Z[c] + offset (``Z`` float[C, U, I]); starts from equal weights."""
    start = np.ones(Z.shape[0]) / Z.shape[0]
    res = minimize(_softmax_ce, start, args=(Z, offset, allowed, target, l2), jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * Z.shape[0], options={"maxiter": 200})
    return np.asarray(res.x, np.float64)


class LearnedHybrid(Recommender):
    """``components``: list of (name, estimator) pairs (default: EASE, MiniLM content and a
    SASRec on MiniLM vectors); ``l2``: penalty on the weights; ``max_users``: cap on the
    validation users the weights are learned on (a seeded sample beyond it; memory is
    users × items × components); ``seed``; ``temperature``: softmax T of P(i|u)."""

    scores_new_items = True

    def __init__(self, components=None, l2: float = 1e-3, max_users: int = 5000, seed: int = 42,
                 temperature: float = 1.0):
        self.components = components
        self.l2 = l2
        self.max_users = max_users
        self.seed = seed
        self.temperature = temperature

    def _default_components(self):
        from .content import ContentRecommender
        from .ease import EASE
        from .sequential import SequentialRecommender

        return [("ease", EASE()), ("content", ContentRecommender()), ("sasrec", SequentialRecommender())]

    def _parts(self):
        parts = self.components if self.components is not None else self._default_components()
        names = [name for name, _ in parts]
        if not parts or len(set(names)) != len(names):
            raise ValueError(f"components must be non-empty (name, estimator) pairs with distinct names, got {names}")
        if not any(scores_new_items(est) for _, est in parts):
            raise ValueError("at least one component must score items from their content (for new items)")
        return parts

    # -- learning the weights ---------------------------------------------------------
    def _learn(self, fitted: list, has_events: np.ndarray, targets, candidates=None) -> None:
        """Learn (w, w') from components fitted on the data ``targets`` were held out of,
        ranking each target among the user's unseen ``candidates`` (item positions; all
        items if None — the cold protocol passes its cold items, so w' is learned on
        exactly the ranking it will face)."""
        frame = targets.frame
        users = frame["user_id"].to_numpy()
        item = frame["item_pos"].to_numpy()
        pick = np.arange(len(users))
        if len(pick) > self.max_users:
            pick = np.sort(np.random.default_rng(self.seed).choice(len(pick), self.max_users, replace=False))
        users, item = users[pick], item[pick]
        Z = np.stack([component_z(model.score(users), scores_new_items(model), has_events) for _, model in fitted])
        allowed = np.ones(Z.shape[1:], bool)
        if candidates is not None:
            allowed[:] = False
            allowed[:, np.asarray(candidates)] = True
        for k, p in enumerate(pick):
            allowed[k, targets.seen[p]] = False
        allowed[np.arange(len(item)), item] = True
        text = np.array([scores_new_items(model) for _, model in fitted])
        w_new = np.zeros(len(fitted))
        w_new[text] = learn_weights(Z[text], allowed, item, self.l2)
        # Items without events keep the score w'·z whatever w is: a fixed offset while w is
        # learned on the items with events.
        offset = np.where(has_events[None, :], 0.0, np.tensordot(w_new, Z, axes=(0, 0)))
        w = learn_weights(np.where(has_events[None, None, :], Z, 0.0), allowed, item, self.l2, offset)
        self.weights_ = dict(zip([n for n, _ in fitted], np.round(w, 6).tolist()))
        self.new_item_weights_ = dict(zip([n for n, _ in fitted], np.round(w_new, 6).tolist()))
        self.learned_on_ = {"users": int(len(users)), "components": [n for n, _ in fitted]}

    # -- fitting ----------------------------------------------------------------------
    def _fit(self, dataset) -> None:
        from ..data.split import temporal_leave_one_out

        parts = self._parts()
        inner = temporal_leave_one_out(dataset)
        inner_fitted = [(name, clone(est).fit(inner.train_valid)) for name, est in parts]
        self._learn(inner_fitted, inner_fitted[0][1].history_.item_counts > 0, inner.test)
        full = []
        for (name, est), (_, model) in zip(parts, inner_fitted):
            if hasattr(model, "update_history"):
                full.append((name, model.update_history(dataset)))
            else:
                full.append((name, clone(est).fit(dataset)))
        self.components_ = full
        self.has_events_ = self.history_.item_counts > 0

    @classmethod
    def from_fitted(cls, valid_components: list, valid_targets, test_components: list, candidates=None,
                    **params) -> "LearnedHybrid":
        """Weights learned on ``valid_targets`` (ranked among ``candidates``, default all
        items) with ``valid_components`` (fitted on the training set); the returned model
        serves with ``test_components`` (the same components fitted on train+validation)."""
        model = cls(components=[(n, m) for n, m in test_components], **params)
        has_valid = valid_components[0][1].history_.item_counts > 0
        model._learn(valid_components, has_valid, valid_targets, candidates)
        reference = test_components[0][1]
        model.items_ = reference.items_
        model.history_ = reference.history_
        model.components_ = list(test_components)
        model.has_events_ = model.history_.item_counts > 0
        return model

    def with_components(self, components: list) -> "LearnedHybrid":
        """A copy with the same learned weights over other fitted components (the same
        names; e.g. refitted on more data)."""
        import copy

        names = [n for n, _ in components]
        if names != list(self.weights_):
            raise ValueError(f"components {names} do not match the learned weights {list(self.weights_)}")
        other = copy.copy(self)
        other.components = list(components)
        other.components_ = list(components)
        other.items_ = components[0][1].items_
        other.history_ = components[0][1].history_
        other.has_events_ = other.history_.item_counts > 0
        other._reset_scorer()
        return other

    # -- scoring ----------------------------------------------------------------------
    explain_method = LearnedHybridScorer.explain_method

    def live_scorer(self) -> LearnedHybridScorer:
        params = {k: v for k, v in self.get_params(deep=False).items()
                  if v is None or isinstance(v, (bool, int, float, str))}
        parts = [(name, model.live_scorer()) for name, model in self.components_]
        return LearnedHybridScorer(self.items_.ids, self.history_.item_counts, parts, self.weights_,
                                   self.new_item_weights_, temperature=self.temperature, meta={"params": params})

    def _split(self, user, items):
        """The scorer's split, each component on its own training catalogue (the components
        may read different encoders' vectors)."""
        return self.scorer_.decompose(user, self.catalogue_, items,
                                      catalogues=[model.catalogue_ for _, model in self.components_])

    def _score(self, rows: np.ndarray) -> np.ndarray:
        """:func:`fuse` of the components' own scores (each on its own catalogue)."""
        users = self.history_.user_ids[rows]
        parts = [(name, component_z(model.score(users), scores_new_items(model), self.has_events_))
                 for name, model in self.components_]
        return fuse(parts, self.weights_, self.new_item_weights_, self.has_events_)
