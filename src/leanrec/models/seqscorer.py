"""The learned sequence models' scorer: a trained user tower over any catalogue.

Item table — :meth:`SeqNet.item_table`'s formula on the catalogue: the net's projection of
the catalogue's text vectors (the served encoder's), plus the trained ID embedding for
items of the training catalogue that had training events (matched by item id); an item
the model never saw gets the text part alone, so it is recommendable the moment its text
is encoded. The table is cached per catalogue and brought up to date on the first read
after a change: upserts append positions and deletions only tombstone, so only the
positions added since are projected (an ``added × text_dim`` by ``text_dim × dim``
product); a compaction (positions renumbered) or another catalogue recomputes all n rows,
O(n · text_dim · dim) — about 0.1 s for 100k items of 384-d text at dim 64 on one core.
Memory: n × dim float32.

User state — the user tower on the newest ``max_len`` live items of the history (time
order, repeats kept, deleted items skipped), right-aligned as the library trains it;
scores = ⟨state, E_i⟩ for every position. Histories are gathered into a batch's own small
table (``SeqNet.states_from``), never a copy of the catalogue's. Runs under
``torch.no_grad`` on the caller's torch thread setting.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .live import Decomposition, LiveScorer, encoder_spec

SEQNET_FILE = "seqnet.pt"
#: SequentialRecommender parameters that fix the network's shape and formulas.
SEQNET_CONFIG = ("pooling", "dim", "max_len", "layers", "heads", "dropout", "item_ids", "half_life", "use_text")
#: what a folder saved before a key existed means by its absence
SEQNET_DEFAULTS = {"use_text": True}
_BUFFERS = ("text", "has_events")  # the training catalogue's: the scorer reads the live one's texts
BATCH = 512  # users per forward pass
#: how each pooling's score splits, as explanations name it
POOLING_METHODS = {"mean": "weighted mean of learned item vectors", "attention": "attention-weighted item vectors",
                   "sasrec": "SASRec transformer"}


class SequentialScorer(LiveScorer):
    """``config``: SEQNET_CONFIG plus text_dim and n_items; ``state``: the net's state dict
    without its text buffer. Which items have an ID embedding is the net's ``has_events``
    buffer (the items with events in its *training* data; a model whose history was
    extended since, ``update_history``, keeps it), or, in a folder saved without it, the
    saved popularity."""

    kind = "sequential"
    scores_new_items = True

    def __init__(self, item_ids, popularity, config: dict, state: dict, **kw):
        import torch

        from .seqnet import SeqNet

        super().__init__(item_ids, popularity, **kw)
        self.config, self.state = dict(config), state
        self.max_len, self.dim = int(config["max_len"]), int(config["dim"])
        self.pooling = config["pooling"]
        self.window = 2 * self.max_len  # twice the window: the newest max_len *live* items survive some deletions
        shape = {k: config[k] for k in ("pooling", "dim", "max_len", "layers", "heads", "dropout", "half_life")}
        shape["use_text"] = bool(config.get("use_text", True))
        with torch.random.fork_rng(devices=[]):  # the skeleton's random init must not move the caller's seed
            net = SeqNet(torch.zeros(1, int(config["text_dim"])).expand(self.max_len, -1),
                         torch.zeros(self.max_len, dtype=torch.bool), item_ids=False, **shape)
        tower = {k: v for k, v in state.items() if not k.startswith("ids.") and k not in _BUFFERS}
        missing, unexpected = net.load_state_dict(tower, strict=False)
        if unexpected or set(missing) - set(_BUFFERS):
            raise ValueError(f"sequential weights do not fit the network (missing {missing}, unexpected {unexpected})")
        self.net = net.eval()
        self.scores_new_items = shape["use_text"]  # ID-only: an unseen item has no vector
        ids = state.get("ids.weight") if config["item_ids"] else None
        self.id_weights = None if ids is None else ids.float().numpy()
        trained = state.get("has_events")
        self.trained_items = (trained.numpy() if trained is not None else self.popularity > 0).astype(bool)
        self._table: tuple | None = None  # (catalogue, its ids list, version, buffer, rows filled)

    @property
    def explain_method(self) -> str:
        return POOLING_METHODS.get(self.pooling, "none")

    # -- the item table -----------------------------------------------------------------
    def item_table(self, cat) -> np.ndarray:
        """float32[cat.n, dim]: the item vectors of every position (tombstones included)."""
        import torch

        c = self._table
        if c is not None and c[0] is cat and c[2] == cat.version and c[4] == cat.n:
            return c[3][:cat.n]
        same = c is not None and c[0] is cat and c[1] is cat.ids and c[4] <= cat.n
        start = c[4] if same else 0
        buf = c[3] if same else np.zeros((0, self.dim), np.float32)
        if len(buf) < cat.n:
            grown = np.zeros((max(cat.n, 2 * len(buf), 1024), self.dim), np.float32)
            grown[:start] = buf[:start]
            buf = grown
        if cat.n > start:
            if self.net.proj is None:  # ID-only: an item it never trained on has no vector
                rows = np.zeros((cat.n - start, self.dim), np.float32)
            else:
                with torch.no_grad():
                    rows = self.net.proj(torch.from_numpy(np.ascontiguousarray(cat.V[start:cat.n]))).float().numpy()
            if self.id_weights is not None:
                k = np.fromiter((self.item_index.get(i, -1) for i in cat.ids[start:cat.n]), np.int64,
                                count=cat.n - start)
                use = np.flatnonzero(k >= 0)
                use = use[self.trained_items[k[use]]]
                rows[use] += self.id_weights[k[use]]
            buf[start:cat.n] = rows
        self._table = (cat, cat.ids, cat.version, buf, cat.n)
        return buf[:cat.n]

    # -- user states --------------------------------------------------------------------
    def _windows(self, users, cat, table: np.ndarray):
        """(x [B, L, dim], real [B, L], the windows' positions): each user's newest
        ``max_len`` live items, right-aligned."""
        import torch

        L = self.max_len
        windows = [u.window_in(cat)[-L:] for u in users]
        x = torch.zeros(len(users), L, self.dim)
        real = torch.zeros(len(users), L, dtype=torch.bool)
        for b, w in enumerate(windows):
            if len(w):
                x[b, L - len(w):] = torch.from_numpy(table[w])
                real[b, L - len(w):] = True
        return x, real, windows

    def score(self, users, cat) -> np.ndarray:
        import torch

        table = self.item_table(cat)
        out = np.zeros((len(users), cat.n), np.float32)
        table_t = torch.from_numpy(table)
        with torch.no_grad():
            for lo in range(0, len(users), BATCH):
                x, real, _ = self._windows(users[lo:lo + BATCH], cat, table)
                states = self.net.states_from(x, real)[:, -1]
                out[lo:lo + BATCH] = (states @ table_t.T).float().numpy()
        return out

    def _terms(self, user, cat):
        """(table, the window's positions, a, v, bias) of the state's linear split, or None
        for SASRec (mean and attention pooling: the state is Σ_t a_t v_t + bias)."""
        import torch

        table = self.item_table(cat)
        x, real, windows = self._windows([user], cat, table)
        with torch.no_grad():
            terms = self.net.terms_from(x, real)
        if terms is None:
            return None
        a, v, bias = terms
        h = len(windows[0])  # the window's real positions are its last h
        return (table, windows[0], a[0, self.max_len - h:].double().numpy(), v[0, self.max_len - h:].double().numpy(),
                None if bias is None else bias.detach().double().numpy())

    _SASREC_NOTE = "a transformer's user state (sasrec) has no exact split into history items"

    def decompose(self, user, cat, positions) -> Decomposition:
        """Mean and attention pooling: the user state is Σ_t a_t v_t (+ a bias), so the score
        splits exactly (for attention the weights a_t depend on the whole history; the split
        given them is exact). SASRec: no exact split, said in the note."""
        terms = self._terms(user, cat)
        if terms is None:
            d = super().decompose(user, cat, positions)
            return Decomposition(d.history, d.contributions, d.base, d.unexplained, d.method, self._SASREC_NOTE)
        table, window, a, v, bias = terms
        target = table[positions].astype(np.float64)
        per_position = (a[:, None] * v) @ target.T                               # [h, n]
        base = target @ bias if bias is not None else np.zeros(len(positions))
        hist, inverse = np.unique(window, return_inverse=True)
        contributions = np.zeros((len(hist), len(positions)))
        np.add.at(contributions, inverse, per_position)
        return Decomposition(np.asarray([cat.ids[p] for p in hist], dtype=object), contributions, base,
                             np.zeros(len(positions)), self.explain_method)

    def decompose_mean(self, user, cat, columns):
        terms = self._terms(user, cat)
        if terms is None:
            scores = self.score([user], cat)[0, columns].astype(np.float64)
            return np.zeros(0, object), np.zeros(0), 0.0, float(scores.mean()) if len(columns) else 0.0
        table, window, a, v, bias = terms
        mean_e = table[columns].astype(np.float64).mean(axis=0) if len(columns) else np.zeros(self.dim)
        hist, inverse = np.unique(window, return_inverse=True)
        means = np.bincount(inverse, weights=a * (v @ mean_e), minlength=len(hist))
        b_mean = float(mean_e @ bias) if bias is not None else 0.0
        return np.asarray([cat.ids[p] for p in hist], dtype=object), means, b_mean, 0.0

    # -- folders ------------------------------------------------------------------------
    @classmethod
    def needs_encoder(cls, config: dict) -> bool:
        seqnet = config.get("seqnet")
        return not isinstance(seqnet, dict) or bool(seqnet.get("use_text", True))

    def _config(self) -> dict:
        if not self.config.get("use_text", True):  # ID-only: no text, no encoder
            return {"seqnet": self.config, "encoder": None}
        return {"seqnet": self.config, "encoder": encoder_spec(self.encoder, "sequential model")}

    def _save_arrays(self, folder: Path) -> None:
        import torch

        torch.save(self.state, folder / SEQNET_FILE)

    @classmethod
    def _from_folder(cls, path, config, item_ids, popularity, load=None):
        if not isinstance(config.get("seqnet"), dict):
            raise ValueError(f"{path / 'leanrec_model.json'}: a sequential model needs a 'seqnet' object")
        state = read_seqnet(path, config["seqnet"], popularity)
        return cls(item_ids, popularity, config["seqnet"], state, temperature=config.get("temperature", 1.0),
                   encoder=config["encoder"], meta=config)


def read_seqnet(path: Path, config: dict, popularity: np.ndarray) -> dict:
    """Read ``seqnet.pt`` and check it fits the network ``config`` describes (by loading it
    into a skeleton of that network); a missing or unreadable file names itself."""
    import torch

    from .seqnet import SeqNet

    file = path / SEQNET_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path}: {SEQNET_FILE} (the sequential model's weights) is missing")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:  # truncated, not torch
        raise ValueError(f"{file}: not a readable torch weights file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file}: expected a state dict of tensors")
    config = {**SEQNET_DEFAULTS, **config}
    need = ("text_dim", "n_items", *SEQNET_CONFIG)
    missing = [k for k in need if k not in config]
    if missing:
        raise ValueError(f"{path / 'leanrec_model.json'}: 'seqnet' lacks {missing}")
    if config["n_items"] != len(popularity):
        raise ValueError(f"{path}: seqnet is for {config['n_items']} items, item_ids.json has {len(popularity)}")
    n, text_dim = int(config["n_items"]), int(config["text_dim"])
    with torch.random.fork_rng(devices=[]):  # the skeleton's random init must not move the caller's seed
        skeleton = SeqNet(torch.zeros(1, text_dim).expand(n, text_dim), torch.from_numpy(popularity > 0),
                          **{k: config[k] for k in SEQNET_CONFIG})
    try:
        missing, unexpected = skeleton.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ValueError(f"{file}: does not fit the network in leanrec_model.json ({exc})") from None
    missing = [k for k in missing if k not in _BUFFERS]
    if missing or unexpected:
        raise ValueError(f"{file}: does not fit the network in leanrec_model.json "
                         f"(missing {missing}, unexpected {list(unexpected)})")
    return state


def scorer_state(net) -> dict:
    """A trained net's state dict without the text buffer (plain, contiguous tensors)."""
    return {k: v.detach().cpu().clone().contiguous() for k, v in net.state_dict().items() if k != "text"}
