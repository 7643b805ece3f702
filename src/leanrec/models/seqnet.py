"""The torch networks behind :class:`leanrec.models.sequential.SequentialRecommender`.

One item tower, three user towers. Every item is represented from its *frozen text
vector* T_i through a learned projection, E_i = W T_i (+ an optional ID embedding for
items that have training events), so a brand-new item gets a vector the moment its text
is encoded, with no retraining. ``use_text=False`` drops the text path: E_i is the ID
embedding alone (zero for an item without training events), the published ID-only
SASRec that every text-aware model is measured against. A user's state after each position of their history is
one of:

* ``mean`` — the time-decayed mean of the projected history vectors (the content
  recommender's formula on learned vectors: "cheap adaptation", just W is learned);
* ``attention`` — attention pooling: one learned query attends over the history, with a
  learned bias per recency (age in events), so the model chooses which past items count;
  initialised to equal ``mean`` (same decay), so it can only start from the mean;
* ``sasrec`` — a small causal transformer over the sequence (SASRec, Kang & McAuley 2018,
  pre-norm blocks, learned positions), state = output at the position.

Scores are ⟨state, E_i⟩ over the whole catalogue and training is next-item prediction
with the full softmax, P(i | u) = softmax_i(⟨U_u, E_i⟩), the seed formula.
Sequences are right-aligned (left padding, pad index = n_items); a position attends to
itself and to earlier real positions only, so no row is ever fully masked.
"""

from __future__ import annotations

import math

import torch
from torch import nn

POOLINGS = ("mean", "attention", "sasrec")


class _Block(nn.Module):
    """Pre-norm transformer block: causal self-attention + feed-forward, both residual."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, d),
                                nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)
        self.heads = heads

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        mask = blocked.repeat_interleave(self.heads, dim=0)  # (B*heads, L, L), True = may not attend
        a, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
        x = x + self.drop(a)
        return x + self.ff(self.ln2(x))


class SeqNet(nn.Module):
    """Item tower + user tower; see the module docstring."""

    def __init__(self, text: torch.Tensor, has_events: torch.Tensor, *, pooling: str, dim: int, max_len: int,
                 layers: int = 2, heads: int = 1, dropout: float = 0.2, item_ids: bool = False,
                 half_life: float = 8.0, use_text: bool = True) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.n_items = text.shape[0]
        self.max_len = max_len
        self.register_buffer("text", text.float())
        self.register_buffer("has_events", has_events.bool())
        # use_text=False: the ID-only model (SASRec as published), the baseline text must beat
        self.proj = nn.Linear(text.shape[1], dim) if use_text else None
        self.ids = nn.Embedding(self.n_items, dim) if item_ids else None
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=0.01 if use_text else 0.02)
        self.drop = nn.Dropout(dropout)
        if pooling == "mean":
            age = torch.arange(max_len, dtype=torch.float32)
            self.register_buffer("decay", 0.5 ** (age / half_life))
        elif pooling == "attention":
            self.key = nn.Linear(dim, dim)
            self.query = nn.Parameter(torch.zeros(dim))
            # Initialised to be the decayed mean exactly (query 0, bias log 0.5^(age/h), output
            # identity): attention starts where the learned-projection model is and learns
            # which history items to weigh more from there.
            self.age_bias = nn.Embedding(max_len, 1)
            with torch.no_grad():
                self.age_bias.weight[:, 0] = torch.arange(max_len, dtype=torch.float32) * math.log(0.5) / half_life
            self.out = nn.Linear(dim, dim)
            nn.init.eye_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        else:
            self.pos = nn.Embedding(max_len, dim)
            nn.init.normal_(self.pos.weight, std=0.02)
            self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(layers))
            self.ln = nn.LayerNorm(dim)

    def item_table(self, keep_ids: torch.Tensor | None = None) -> torch.Tensor:
        """E: float[n_items, dim]. ID embeddings only for items with training events
        (and, in training, only for the items ``keep_ids`` keeps: ID dropout teaches the
        text path to stand alone, which is all a new item has)."""
        if self.proj is None:  # ID-only: an item without training events has no vector (zeros)
            return self.ids.weight * self.has_events[:, None].to(self.ids.weight.dtype)
        table = self.proj(self.text)
        if self.ids is not None:
            use = self.has_events if keep_ids is None else self.has_events & keep_ids
            table = table + self.ids.weight * use[:, None].to(table.dtype)
        return table

    def gather(self, seq: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [B, L, dim], real [B, L]): the vectors of item positions ``seq`` (pad index =
        ``n_items`` gives zeros) and which positions are real."""
        padded = torch.cat([table, table.new_zeros(1, table.shape[1])])
        return padded[seq], seq != self.n_items

    def last_state_terms(self, seq: torch.Tensor, table: torch.Tensor):
        """:meth:`terms_from` for item positions ``seq`` [B, L] in ``table``."""
        return self.terms_from(*self.gather(seq, table))

    def terms_from(self, x: torch.Tensor, real: torch.Tensor):
        """The last position's state as ``Σ_j a_j · v_j + bias`` (eval mode): (a [B, L],
        v [B, L, dim], bias [dim] or None) — the exact per-history-item split an explanation
        needs. Mean pooling: a = the normalised decay, v = the item vectors; attention: a =
        the attention weights, v = the output layer's linear part applied to the item vectors,
        bias = its bias (linear in v given a). None for ``sasrec``: a transformer's state has
        no such split. ``x`` [B, L, dim] are the history's vectors (zeros where not ``real``)."""
        if self.pooling == "sasrec":
            return None
        length = x.shape[1]
        age = (length - 1) - torch.arange(length, device=x.device)        # age seen from the last position
        if self.pooling == "mean":
            w = torch.where(real, self.decay[age.clamp(max=self.max_len - 1)][None], 0.0)
            return w / w.sum(-1, keepdim=True).clamp(min=1e-12), x, None
        keys = torch.tanh(self.key(x))
        logits = keys @ self.query + self.age_bias(age.clamp(max=self.max_len - 1))[..., 0][None]
        allowed = real.clone()
        allowed[:, -1] = True  # the last position always sees itself (as in user_states)
        att = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
        return att, x @ self.out.weight.T, self.out.bias

    def _ages(self, length: int, device) -> torch.Tensor:
        pos = torch.arange(length, device=device)
        return pos[:, None] - pos[None, :]  # age of key j seen from query t (t - j)

    def user_states(self, seq: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """States after every position: float[B, L, dim] for item positions ``seq`` [B, L]."""
        return self.states_from(*self.gather(seq, table))

    def states_from(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """States after every position of histories given as vectors ``x`` [B, L, dim]
        (zeros where ``real`` [B, L] is False): the user tower itself."""
        length = x.shape[1]
        age = self._ages(length, x.device)
        causal = age >= 0                                                   # (L, L): j <= t
        visible = causal[None] & real[:, None, :]                           # (B, L, L)
        if self.pooling == "mean":
            w = torch.where(visible, self.decay[age.clamp(min=0, max=self.max_len - 1)][None], 0.0)
            return (w @ x) / w.sum(-1, keepdim=True).clamp(min=1e-12)
        eye = torch.eye(length, dtype=torch.bool, device=x.device)[None]
        allowed = visible | eye
        if self.pooling == "attention":
            keys = torch.tanh(self.key(x))
            logits = (keys @ self.query)[:, None, :] + self.age_bias(age.clamp(min=0, max=self.max_len - 1))[..., 0][None]
            att = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
            return self.out(self.drop(att) @ x)
        h = x * math.sqrt(x.shape[-1]) + self.pos.weight[self.max_len - length:][None]
        h = self.drop(h) * real[..., None]
        for block in self.blocks:
            h = block(h, ~allowed) * real[..., None]
        return self.ln(h)
