"""A/A calibration of ``leanrec compare``: how often does it call two equal configs different?

Why: a paired test is only useful if, when nothing differs, it says "different" about as
often as alpha promises. Each repetition generates a fresh synthetic data set
(``make_dataset``, data seed 1000 + r), splits it with the warm protocol and fits the *same*
configuration twice with two different model seeds, through the same code path as
``leanrec compare`` (:func:`leanrec.eval.compare.fit_and_evaluate`, then
:func:`leanrec.eval.abtest.paired_comparison`). Three configurations / controls:

* ``projection`` (the sequential model with mean pooling over frozen TF-IDF vectors, tiny
  budget): its seed changes the initial weights and batch order, so the two sides really are
  two different models. Counted: p < alpha on the primary metric, for the Wilcoxon and the t
  test, and the paired bootstrap interval excluding 0.
* ``sign-flipped``: the projection runs' per-user differences with each user's sign flipped
  at random — an exactly exchangeable null, so it calibrates the *tests themselves*,
  separately from any real seed effect.
* ``ease`` (deterministic): the two seeds change nothing, so every repetition must say
  "identical".

Reported: the false-positive count, its rate with a Clopper–Pearson 95% interval, and the
binomial critical count (the largest count that chance alone reaches with probability at
least 1% in ``reps`` tries at alpha). Writes ``benchmarks/results/aa_calibration.{json,md}``.

    python benchmarks/aa_calibration.py [--reps 100] [--users 300] [--items 120]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from scipy import stats

from leanrec.data.split import make_split
from leanrec.data.synth import make_dataset
from leanrec.eval.abtest import paired_comparison
from leanrec.eval.compare import CompareConfig, fit_and_evaluate
from leanrec.experiment import versions

PRIMARY = "ndcg@10"
PROJECTION = {"encoder": "tfidf", "pooling": "mean", "max_epochs": 5, "patience": 5, "time_budget_s": 60.0,
              "threads": 1}


def binomial_summary(k: int, n: int, alpha: float) -> dict:
    """Rate, Clopper–Pearson 95% interval, and whether k is within what chance allows."""
    ci = stats.binomtest(k, n, alpha).proportion_ci(confidence_level=0.95, method="exact")
    critical = int(stats.binom.ppf(0.99, n, alpha))  # P(X <= critical) >= 0.99
    return {"count": k, "n": n, "rate": k / n, "ci95": [float(ci.low), float(ci.high)],
            "critical_count_1pct": critical, "p_upper_tail": float(stats.binom.sf(k - 1, n, alpha)),
            "within_chance": bool(k <= critical)}


def one_rep(r: int, users: int, items: int, n_boot: int, alpha: float) -> dict:
    ds = make_dataset(n_users=users, n_items=items, seed=1000 + r)
    split = make_split(ds, "warm")
    out: dict = {"rep": r, "data_seed": 1000 + r, "test_users": len(split.test)}
    seeds = (2 * r + 1, 2 * r + 2)
    for label, model, params in (("projection", "projection", PROJECTION), ("ease", "ease", {"lam": 100.0})):
        runs = [fit_and_evaluate(CompareConfig(name=f"{label}-{s}", model=model, dataset="synthetic", seed=s,
                                               params=params), split) for s in seeds]
        a, b = runs[0].run.test, runs[1].run.test
        rec = {"seeds": list(seeds), "ndcg@10": [a.metrics[PRIMARY], b.metrics[PRIMARY]]}
        for test in ("wilcoxon", "t"):
            comp = paired_comparison(a.per_user, b.per_user, alpha=alpha, n_boot=n_boot, seed=r, test=test,
                                     users_a=a.user_ids, users_b=b.user_ids)
            m = comp.metrics[PRIMARY]
            rec[test] = {"p": m.p_value, "verdict": m.verdict,
                         "secondary_rejections_holm": sum(x.p_holm < alpha for n, x in comp.metrics.items()
                                                          if n != PRIMARY)}
            rec["diff"], rec["ci"] = m.diff, [m.ci_low, m.ci_high]
            rec["ci_excludes_zero"] = m.ci_excludes_zero
        if label == "projection":  # exchangeable control: flip each user's difference at random
            rng = np.random.default_rng(10_000 + r)
            d = b.per_user[PRIMARY] - a.per_user[PRIMARY]
            flipped = {PRIMARY: np.where(rng.random(len(d)) < 0.5, d, -d)}
            zero = {PRIMARY: np.zeros(len(d))}
            flip = {}
            for test in ("wilcoxon", "t"):
                m = paired_comparison(zero, flipped, alpha=alpha, n_boot=n_boot, seed=r, test=test).metrics[PRIMARY]
                flip[test] = {"p": m.p_value}
                flip["ci_excludes_zero"] = m.ci_excludes_zero
            out["sign-flipped"] = flip
        out[label] = rec
    return out


def summarise(reps: list[dict], alpha: float) -> dict:
    n = len(reps)
    out: dict = {}
    for label in ("projection", "sign-flipped", "ease"):
        rows = [r[label] for r in reps]
        entry = {test: binomial_summary(sum(row[test]["p"] < alpha for row in rows), n, alpha)
                 for test in ("wilcoxon", "t")}
        entry["bootstrap_ci_excludes_zero"] = binomial_summary(sum(row["ci_excludes_zero"] for row in rows), n, alpha)
        if label != "sign-flipped":
            entry["identical"] = sum(row["wilcoxon"]["verdict"] == "identical" for row in rows)
            diffs = np.array([row["diff"] for row in rows])
            entry["mean_diff"] = float(diffs.mean())
            entry["sd_diff"] = float(diffs.std(ddof=1))
            entry["secondary_rejections_holm_total"] = int(sum(row["wilcoxon"]["secondary_rejections_holm"]
                                                               for row in rows))
        out[label] = entry
    return out


def fmt_rate(s: dict) -> str:
    lo, hi = s["ci95"]
    flag = "within chance" if s["within_chance"] else "**inflated**"
    return f"{s['count']}/{s['n']} = {s['rate']:.2f} [{lo:.3f}, {hi:.3f}] ({flag})"


def markdown(result: dict) -> str:
    s, meta = result["summary"], result["meta"]
    crit = s["projection"]["wilcoxon"]["critical_count_1pct"]
    lines = [
        f"# A/A calibration of `leanrec compare` ({meta['finished']})",
        "",
        f"{meta['reps']} repetitions; each: `make_dataset(n_users={meta['users']}, n_items={meta['items']}, "
        f"seed=1000 + r)`, warm protocol (temporal leave-one-out, split seed 42), the same configuration fitted "
        f"twice with model seeds 2r + 1 and 2r + 2, compared per user on test {PRIMARY} (primary metric), "
        f"α = {meta['alpha']}, {meta['n_boot']} paired bootstrap resamples. "
        f"Projection config: `{json.dumps(PROJECTION)}`; deterministic config: `ease` λ = 100. "
        f"{meta['threads']}; wall time {meta['wall_seconds']:.0f} s. Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if k in ("python", "leanrec", "numpy", "scipy",
                                                                             "torch", "scikit-learn")) + ".",
        "",
        (f"Binomial critical count: with {meta['reps']} tries at {meta['alpha']}, chance alone exceeds "
         f"**{crit}** rejections with probability < 1%; counts ≤ {crit} are consistent with a calibrated test."),
        "",
        "| configuration | Wilcoxon p < α | t test p < α | bootstrap 95% CI excludes 0 | \"identical\" |",
        "|---|---|---|---|---|",
    ]
    for label, what in (("projection", "projection, two seeds (real randomness)"),
                        ("sign-flipped", "sign-flipped projection differences (exact null)"),
                        ("ease", "ease, two seeds (deterministic)")):
        e = s[label]
        lines.append(f"| {what} | {fmt_rate(e['wilcoxon'])} | {fmt_rate(e['t'])} | "
                     f"{fmt_rate(e['bootstrap_ci_excludes_zero'])} | {e.get('identical', '–')} |")
    p = s["projection"]
    lines += [
        "",
        (f"Projection seed effect on test {PRIMARY}: mean B − A {p['mean_diff']:+.5f}, standard deviation over "
         f"repetitions {p['sd_diff']:.5f}. Secondary metrics rejected after Holm (all repetitions, 6 metrics each): "
         f"{p['secondary_rejections_holm_total']}."),
        "",
        "## Reading",
        "",
    ]
    inflated = [t for t in ("wilcoxon", "t") if not p[t]["within_chance"]]
    if inflated:
        lines.append(
            f"The two-seed projection A/A is rejected more often than α allows ({', '.join(inflated)}). That is not a "
            "bug in the test: the sign-flipped control (same data, exchangeable by construction) is calibrated, so the "
            "tests hold their level. The excess comes from what is being compared — two *trained instances* of a "
            "model whose seed changes its weights, early-stopping epoch and so its rankings. Conditional on the two "
            "fitted models, their per-user NDCG@10 really does differ, and a paired test over users detects that "
            "real difference between instances. It is not evidence that one *configuration* is better: the sign of "
            "the difference is random over seeds (mean difference ≈ 0 above). To compare configurations of a "
            "randomised model, compare several seeds per side (or read a single-seed verdict as \"these two "
            "instances differ\").")
    else:
        lines.append(
            "Both tests stay within what chance allows on the two-seed projection A/A, and the sign-flipped control "
            "(an exactly exchangeable null) is calibrated too: at this data size the seed variance of the trained "
            "models is too small, relative to the per-user noise, to be declared a difference.")
    lines.append("")
    lines.append("The deterministic configuration gives per-user arrays that are equal bit for bit, so every "
                 "repetition is reported \"identical\" (p = 1), never a false positive.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--boot", type=int, default=10_000)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "aa_calibration")
    parser.add_argument("--render", action="store_true", help="Only rewrite OUT.md from an existing OUT.json.")
    args = parser.parse_args()
    if args.render:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.out.with_suffix(".json").read_text())))
        return
    import torch

    t0 = time.perf_counter()
    reps = []
    for r in range(args.reps):
        reps.append(one_rep(r, args.users, args.items, args.boot, args.alpha))
        last = reps[-1]["projection"]
        print(f"rep {r + 1}/{args.reps}: projection p(wilcoxon) {last['wilcoxon']['p']:.3f} "
              f"diff {last['diff']:+.4f} · {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    wall = time.perf_counter() - t0
    result = {
        "meta": {"reps": args.reps, "users": args.users, "items": args.items, "alpha": args.alpha,
                 "n_boot": args.boot, "protocol": "warm", "primary": PRIMARY, "projection_params": PROJECTION,
                 "data_seeds": "1000 + r", "model_seeds": "2r + 1 (A), 2r + 2 (B)",
                 "threads": f"{os.cpu_count()} CPUs, torch {torch.get_num_threads()} intra-op threads "
                            f"(model threads=1)",
                 "wall_seconds": round(wall, 1), "versions": versions(),
                 "finished": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "summary": summarise(reps, args.alpha),
        "reps": reps,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
