"""Layer pruning with distillation: a shallower student that copies the full model's vectors.

Why: the linear layers are most of a sentence model's cost, so keeping the first N of its
L layers cuts FLOPs by about N/L. Pruning alone changes the vectors a lot (a 2-layer cut
of MiniLM has cosine ~0.3-0.4 to the full model); a few CPU-minutes of distillation — the
student is trained so that its normalised sentence vector matches the teacher's on a
text corpus, no interaction data involved — brings it back close to the teacher.

The result is a plain sentence-transformers folder (plus ``leanrec_distill.json``, the
training record), so every backend takes it by path: ``load_encoder(folder,
backend="onnx", precision="int8")`` exports and quantises it like the full model.

Deterministic for a seed on one thread (torch's CPU kernels are deterministic there).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["distill_layers", "default_corpus", "ensure_distilled"]


def _embed(model, texts: list[str], grad: bool):
    """Normalised sentence vectors of ``texts``; with autograd only when training."""
    import contextlib

    import torch

    with contextlib.nullcontext() if grad else torch.no_grad():
        prepare = getattr(model, "preprocess", None) or model.tokenize  # tokenize is deprecated in ST 6
        out = model(prepare(texts))["sentence_embedding"]
    return torch.nn.functional.normalize(out, dim=-1)


def distill_layers(model: str, out_dir: str | Path, *, texts: Sequence[str], layers: int = 3,
                   time_budget_s: float = 900.0, max_epochs: int = 10, batch_size: int = 32, lr: float = 2e-4,
                   holdout: float = 0.05, seed: int = 42, threads: int | None = 1,
                   progress: Callable[[dict], None] | None = None) -> Path:
    """Train the first ``layers`` layers of ``model`` to reproduce its vectors; save the best.

    ``texts`` is the corpus (deduplicated here); a ``holdout`` share is kept aside and the
    checkpoint with the best mean cosine to the teacher on it is saved. Training stops after
    ``max_epochs`` or when ``time_budget_s`` is spent (checked after every batch).
    ``progress`` gets a dict after each epoch (epoch, train loss, holdout cosine, seconds).
    """
    import torch

    from .resolve import resolve_model, weights_fingerprint
    from .sbert_load import load_sentence_transformer, prune_layers

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    corpus = list(dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip()))
    if len(corpus) < 20:
        raise ValueError(f"texts: need at least 20 distinct non-empty texts, got {len(corpus)}")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(corpus))
    n_hold = max(10, int(holdout * len(corpus)))
    hold = [corpus[i] for i in order[:n_hold]]
    train = [corpus[i] for i in order[n_hold:]]

    resolved = resolve_model(model)
    teacher = load_sentence_transformer(resolved)
    t0 = time.perf_counter()
    with torch.no_grad():
        target = {t: v for batch in range(0, len(corpus), 64)
                  for t, v in zip(corpus[batch:batch + 64], _embed(teacher, corpus[batch:batch + 64], False))}
    teacher_s = time.perf_counter() - t0
    del teacher
    student = prune_layers(load_sentence_transformer(resolved), layers)

    def holdout_cosine() -> float:
        student.eval()
        sims = []
        for b in range(0, len(hold), 64):
            chunk = hold[b:b + 64]
            s = _embed(student, chunk, False)
            sims.append((s * torch.stack([target[t] for t in chunk])).sum(-1))
        return float(torch.cat(sims).mean())

    history = [{"epoch": 0, "holdout_cosine": holdout_cosine(), "seconds": 0.0}]
    best = history[0]["holdout_cosine"]
    best_state = {k: v.clone() for k, v in student.state_dict().items()}
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr)
    start = time.perf_counter()
    stopped = "max_epochs"
    # Length-bucketed batches: texts sorted by length, cut into batches, batch order
    # shuffled each epoch. Random batches would pad every short title next to a 150-word
    # text to 256 tokens, many times the work of the bucketed batches.
    by_length = sorted(range(len(train)), key=lambda i: (len(train[i]), i))
    batches = [by_length[b:b + batch_size] for b in range(0, len(by_length), batch_size)]
    for epoch in range(1, max_epochs + 1):
        student.train()
        losses = []
        for bi in rng.permutation(len(batches)):
            chunk = [train[i] for i in batches[bi]]
            s = _embed(student, chunk, True)
            t = torch.stack([target[x] for x in chunk])
            loss = (1.0 - (s * t).sum(-1)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if time.perf_counter() - start > time_budget_s:
                stopped = "time_budget"
                break
        cos = holdout_cosine()
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), "holdout_cosine": cos,
                  "seconds": time.perf_counter() - start}
        history.append(record)
        if progress:
            progress(record)
        if cos > best:
            best = cos
            best_state = {k: v.clone() for k, v in student.state_dict().items()}
        if stopped == "time_budget":
            break
    student.load_state_dict(best_state)
    student.eval()
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    from .sbert_load import quiet_transformers

    with quiet_transformers():  # transformers' "Writing model shards" bar: the library never prints
        student.save(str(tmp))
    (tmp / "leanrec_distill.json").write_text(json.dumps({
        "teacher": str(resolved.name), "teacher_fingerprint": weights_fingerprint(resolved.path),
        "layers": int(layers), "corpus_texts": len(corpus), "holdout_texts": len(hold), "seed": seed,
        "batch_size": batch_size, "lr": lr, "time_budget_s": time_budget_s, "stopped": stopped,
        "teacher_encode_s": teacher_s, "train_s": time.perf_counter() - start, "best_holdout_cosine": best,
        "history": history, "torch": torch.__version__,
    }, indent=1))
    tmp.replace(out)
    return out


def default_corpus(*, n_products: int = 8000, n_long: int = 200, seed: int = 42) -> list[str]:
    """The corpus ``leanrec encoder distill`` uses: ML-100K item texts *without the
    cold-start items* (so the cold protocol still meets texts the student never saw) plus
    generated product titles and ~150-word product texts (so the student also meets
    vocabulary and lengths outside the films)."""
    from ..data import load
    from ..data.products import generate_products, item_text
    from ..data.split import cold_items

    ds = load("ml-100k")
    texts = list(ds.items.texts)
    cold = set(cold_items(len(texts)).tolist())
    corpus = [t for i, t in enumerate(texts) if i not in cold]
    corpus += generate_products(n_products, seed=seed)["title"].tolist()
    corpus += list(item_text(generate_products(n_long, seed=seed + 1, description_words=150)))
    return corpus


def ensure_distilled(layers: int, *, time_budget_s: float = 900.0, lr: float = 2e-4, progress=None) -> Path:
    """The cached ``minilm-L{layers}-distilled`` folder, distilled now if it is missing."""
    from .resolve import distilled_path

    path = distilled_path(layers)
    if (path / "config.json").is_file():
        return path
    return distill_layers("minilm", path, texts=default_corpus(), layers=layers, time_budget_s=time_budget_s,
                          lr=lr, progress=progress)
