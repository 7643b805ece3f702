"""Sampled softmax (logQ-corrected, shared negatives) against the full softmax: speed and quality.

Speed — one training step of the *loss* (forward, backward into the user states and the
item table's gradient) with SASRec-sized inputs: d = 64, a batch of 128 windows × 50
positions = 6,400 states, at 3,706 items (ML-1M's catalogue size), 100k and 1M items
(random item vectors; targets and each window's seen items drawn from a Zipf(1) popularity
over a random item order). The user tower is the same for both losses and is left out; the
seen-item mask (one row per window) is built once per size and applied by both. Full
softmax runs at as many windows as keep its fp32 logits under ``--full-logits-mb`` (the
whole batch at 3.7k; the full batch at 1M would need 25.6 GB of logits alone), so its time
is also given per window; sampled softmax always runs the whole batch, K = 128, 512, 2048
drawn from the popularity q. Median of ``--steps`` steps after one warm-up; peak RSS above
the start of each configuration (leanrec.cost.hardware.PeakMemory). Also under CPU bf16
autocast when the CPU has AVX512-BF16 or AMX-BF16.

Quality — a small SeqNet (frozen MiniLM text vectors, ``--pooling``, dim 64, max_len 50)
trained on MovieLens-100K's warm split (1,682 items; ML-1M is not among leanrec's data sets)
for ``--epochs`` epochs with the full loss and with sampled variants, the same seed, batch
order and initial weights; valid NDCG@10 (full catalogue, seen items excluded) after every
epoch, through leanrec.core.metrics.

    python benchmarks/sampled_softmax.py [--steps 7] [--epochs 10] [--skip-quality] [--skip-speed]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from leanrec.core.threads import describe_threads, thread_budget
from leanrec.cost.hardware import PeakMemory, machine_info
from leanrec.models.seqloss import (
    full_cross_entropy,
    sampled_cross_entropy,
    sampling_probs,
    seen_mask,
)

WINDOWS, POSITIONS, DIM = 128, 50, 64
SAMPLED_VARIANTS = [  # (name, alpha of q, K, logQ correction)
    ("uniform K=128", 0.0, 128, True), ("uniform K=512", 0.0, 512, True),
    ("pop K=128 logQ", 1.0, 128, True), ("pop K=512 logQ", 1.0, 512, True),
    ("pop K=512 no logQ", 1.0, 512, False),
]


# -- speed --------------------------------------------------------------------------
def _trim() -> None:
    """Hand freed heap memory back to the OS (glibc), so the next configuration's peak RSS
    rise is its own: memory the previous one freed but glibc kept would be reused without
    raising RSS (measured: rises of 0.0 MB before this)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _median_step(fn, steps: int, bf16: bool) -> tuple[float, int]:
    """(median seconds of ``fn`` forward + backward, peak RSS rise in bytes) over ``steps`` after a warm-up."""
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else None
    times = []
    _trim()
    with PeakMemory(0.002) as mem:
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            if autocast:
                with autocast():
                    loss = fn()
            else:
                loss = fn()
            loss.backward()
            times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]), mem.delta_bytes


def _loss_step(k, states, table, targets, q, mask, mask_rows, seed: int):
    """One loss evaluation on fresh gradients: full softmax (``k`` None) or sampled with K = ``k``."""
    sample_g = torch.Generator().manual_seed(seed)

    def fn():
        table.grad = states.grad = None
        if k is None:
            return full_cross_entropy(states, table, targets, mask, mask_rows=mask_rows)
        return sampled_cross_entropy(states, table, targets, q, k, mask=mask, mask_rows=mask_rows,
                                     generator=sample_g)

    return fn


def speed(sizes, ks, steps: int, full_logits_mb: float, bf16: bool, seed: int) -> list[dict]:
    rows = []
    for n in sizes:
        g = torch.Generator().manual_seed(seed)
        table0 = torch.randn(n, DIM, generator=g) / DIM ** 0.5
        rank = torch.randperm(n, generator=g)
        q = 1.0 / (rank.double() + 1.0)
        q = (q / q.sum()).float()
        items = torch.multinomial(q.double(), WINDOWS * (POSITIONS + 1), replacement=True, generator=g)
        items = items.view(WINDOWS, POSITIONS + 1)
        targets = items[:, 1:].reshape(-1)
        states0 = torch.randn(WINDOWS * POSITIONS, DIM, generator=g)
        mask = seen_mask([w.numpy() for w in items], n)
        mask_rows = torch.arange(WINDOWS).repeat_interleave(POSITIONS)
        full_windows = int(max(1, min(WINDOWS, full_logits_mb * 2**20 // (POSITIONS * n * 4))))
        configs = [("full", full_windows, None)] + [(f"sampled K={k}", WINDOWS, k) for k in ks]
        for precision in (["fp32", "bf16"] if bf16 else ["fp32"]):
            for name, w, k in configs:
                m = w * POSITIONS
                fn = _loss_step(k, states0[:m].clone().requires_grad_(), table0.clone().requires_grad_(),
                                targets[:m], q, mask, mask_rows[:m], seed)
                seconds, peak = _median_step(fn, steps, precision == "bf16")
                rows.append({"n_items": n, "loss": name, "K": k, "precision": precision, "windows": w, "states": m,
                             "median_step_s": round(seconds, 5), "ms_per_window": round(1e3 * seconds / w, 4),
                             "peak_rss_rise_mb": round(peak / 2**20, 1), "steps": steps})
                del fn
    return rows


# -- quality ------------------------------------------------------------------------
def _ml100k(max_len: int):
    from leanrec.data import load
    from leanrec.data.history import History
    from leanrec.data.split import make_split
    from leanrec.models.content import build_encoder
    from leanrec.models.sequential import last_window, windows

    split = make_split(load("ml-100k"), "warm")
    train = split.train
    hist = History.from_dataset(train)
    n_items = train.n_items
    text = np.asarray(build_encoder("minilm", train.items.texts, "auto").encode(train.items.texts), np.float32)
    inputs, targets, owner = windows(hist.sequences, max_len, n_items)
    vrows = hist.rows(split.valid.frame["user_id"].to_numpy())
    ok = vrows >= 0
    vrows, vitems = vrows[ok], split.valid.frame["item_pos"].to_numpy()[ok]
    allowed = np.ones((len(vrows), n_items), bool)
    for k, s in enumerate(s for s, keep in zip(split.valid.seen, ok) if keep):
        allowed[k, s] = False
    allowed[np.arange(len(vrows)), vitems] = True
    val_input = np.stack([last_window(hist.sequences[r], max_len, n_items) for r in vrows])
    return {"text": text, "hist": hist, "n_items": n_items, "inputs": inputs, "targets": targets, "owner": owner,
            "seen": [np.unique(s) for s in hist.sequences], "val_input": val_input, "val_items": vitems,
            "allowed": allowed}


def _valid_ndcg(net, data) -> np.ndarray:
    """Per-user NDCG@10 of the validation targets (full catalogue, seen items excluded)."""
    from leanrec.core.metrics import ndcg_at_k, target_ranks

    net.eval()
    with torch.no_grad():
        table = net.item_table()
        states = net.user_states(torch.from_numpy(data["val_input"]), table)[:, -1]
        scores = (states @ table.T).numpy()
    net.train()
    rank, _ = target_ranks(scores, data["allowed"], data["val_items"])
    return ndcg_at_k(rank, 10)


def train_one(data, variant, *, pooling: str, epochs: int, seed: int, batch: int = WINDOWS) -> dict:
    from leanrec.models.seqnet import SeqNet

    name, alpha, k, logq = variant
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sample_g = torch.Generator().manual_seed(seed)
    n_items = data["n_items"]
    net = SeqNet(torch.from_numpy(data["text"]), torch.from_numpy(data["hist"].item_counts > 0), pooling=pooling,
                 dim=DIM, max_len=data["inputs"].shape[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    q = None if k is None else sampling_probs(data["hist"].item_counts, alpha)
    inputs, targets, owner, seen = data["inputs"], data["targets"], data["owner"], data["seen"]
    history, loss_seconds, t0 = [], 0.0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        losses = []
        for idx in np.array_split(rng.permutation(len(inputs)), max(1, -(-len(inputs) // batch))):
            x, y = torch.from_numpy(inputs[idx]), torch.from_numpy(targets[idx])
            table = net.item_table()
            states = net.user_states(x, table)
            where = y >= 0
            mask_rows = torch.from_numpy(np.repeat(np.arange(len(idx)), where.sum(1).numpy()))
            mask = seen_mask([seen[owner[b]] for b in idx], n_items)
            tl = time.perf_counter()
            if k is None:
                loss = full_cross_entropy(states[where], table, y[where], mask, mask_rows=mask_rows)
            else:
                loss = sampled_cross_entropy(states[where], table, y[where], q, k, mask=mask, mask_rows=mask_rows,
                                             logq=logq, generator=sample_g)
            loss_seconds += time.perf_counter() - tl
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        per_user = _valid_ndcg(net, data)
        history.append({"epoch": epoch, "train_loss": round(float(np.mean(losses)), 4),
                        "valid_ndcg@10": round(float(per_user.mean()), 4),
                        "seconds": round(time.perf_counter() - t0, 2)})
    best = max(history, key=lambda h: h["valid_ndcg@10"])
    return {"loss": name, "alpha": alpha, "K": k, "logq": logq, "best_valid_ndcg@10": best["valid_ndcg@10"],
            "best_epoch": best["epoch"], "final_valid_ndcg@10": history[-1]["valid_ndcg@10"],
            "train_seconds": history[-1]["seconds"], "loss_forward_seconds": round(loss_seconds, 2),
            "history": history, "final_per_user": per_user}


def quality(pooling: str, epochs: int, seed: int) -> dict:
    from leanrec.core.bootstrap import bootstrap_ci

    t0 = time.perf_counter()
    data = _ml100k(50)
    prep = time.perf_counter() - t0
    variants = [("full", None, None, None)] + SAMPLED_VARIANTS
    runs = [train_one(data, v, pooling=pooling, epochs=epochs, seed=seed) for v in variants]
    full = runs[0].pop("final_per_user")
    for run in runs[1:]:  # paired over the same users, at the same (last) epoch: no selection on valid
        diff = run.pop("final_per_user") - full
        low, high = bootstrap_ci(diff, seed=seed)
        run["final_minus_full"] = {"mean": round(float(diff.mean()), 4), "ci95": [round(low, 4), round(high, 4)]}
    return {"data": "ml-100k warm split (valid targets)", "n_items": data["n_items"], "windows": len(data["inputs"]),
            "valid_users": len(data["val_items"]), "pooling": pooling, "dim": DIM, "max_len": 50,
            "epochs": epochs, "lr": 3e-3, "batch_windows": WINDOWS, "seed": seed, "prep_seconds": round(prep, 1),
            "runs": runs}


# -- report -------------------------------------------------------------------------
def markdown(r: dict) -> str:
    m = r["machine"]
    flags = ", ".join(f for f, on in m["flags"].items() if on)
    lines = [f"# Sampled softmax (logQ) vs full softmax ({r['measured_at']})", "",
             (f"CPU {m['cpu_model']} ({m['logical_cores']} logical cores; flags: {flags}); torch {r['torch']}; "
             f"{r['threads']} torch thread(s). {r['note']}"), ""]
    if r.get("speed"):
        lines += ["## Speed: one loss step (forward + backward into states and the item table)", "",
                  (f"d={DIM}, batch {WINDOWS} windows × {POSITIONS} positions; median of {r['speed'][0]['steps']} steps; "
                  f"seen-item mask applied. {r['bf16']}"), "",
                  "| items | loss | precision | windows run | median step s | ms / window | peak RSS rise MB |",
                  "|---|---|---|---|---|---|---|"]
        for s in r["speed"]:
            lines.append(f"| {s['n_items']:,} | {s['loss']} | {s['precision']} | {s['windows']} | {s['median_step_s']:.4f} "
                         f"| {s['ms_per_window']:.3f} | {s['peak_rss_rise_mb']} |")
        lines += ["", ("Full softmax runs fewer windows where its logits would pass the memory cap; compare per window. "
                  "Peak RSS rise: the highest resident memory during the steps above the level at their start "
                  "(freed heap trimmed before each configuration; sampled every 2 ms)."), ""]
    q = r.get("quality")
    if q:
        lines += [(f"## Quality: {q['data']}, {q['n_items']:,} items, SeqNet {q['pooling']} dim {q['dim']}, "
                  f"{q['epochs']} epochs, seed {q['seed']}"), "",
                  "| loss | best valid NDCG@10 (epoch) | final valid NDCG@10 | final − full (95% CI) | train s | loss fwd s |",
                  "|---|---|---|---|---|---|"]
        for run in q["runs"]:
            vs = run.get("final_minus_full")
            gap = f"{vs['mean']:+.4f} [{vs['ci95'][0]:+.4f}, {vs['ci95'][1]:+.4f}]" if vs else "–"
            lines.append(f"| {run['loss']} | {run['best_valid_ndcg@10']:.4f} ({run['best_epoch']}) "
                         f"| {run['final_valid_ndcg@10']:.4f} | {gap} | {run['train_seconds']:.1f} "
                         f"| {run['loss_forward_seconds']:.1f} |")
        lines += ["", (f"{q['valid_users']} validation users; final − full: paired over users at epoch {q['epochs']} "
                  "(leanrec.core.bootstrap). Train s includes the per-epoch validation; loss fwd s is the "
                  "loss's forward alone."), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3706,100000,1000000")
    parser.add_argument("--ks", default="128,512,2048")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--full-logits-mb", type=float, default=512.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--pooling", default="sasrec")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--note", default="Other work ran on the machine at the same time.")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sampled_softmax")
    args = parser.parse_args()
    info = machine_info()
    has_bf16 = bool(info["flags"].get("avx512_bf16") or info["flags"].get("amx_bf16"))
    t0 = time.perf_counter()
    report = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": info,
              "torch": torch.__version__, "threads": args.threads, "note": args.note,
              "bf16": "bf16 autocast measured (CPU has AVX512-BF16/AMX-BF16)." if has_bf16 else
                      "bf16 autocast not measured: the CPU has neither AVX512-BF16 nor AMX-BF16."}
    with thread_budget(args.threads):
        report["thread_settings"] = describe_threads()
        if not args.skip_speed:
            report["speed"] = speed([int(s) for s in args.sizes.split(",")], [int(k) for k in args.ks.split(",")],
                                    args.steps, args.full_logits_mb, has_bf16, args.seed)
        if not args.skip_quality:
            report["quality"] = quality(args.pooling, args.epochs, args.seed)
    report["wall_seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
