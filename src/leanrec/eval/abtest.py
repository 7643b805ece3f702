"""Paired statistics for offline A/B tests: is configuration B really better than A?

Why paired: both configurations rank the *same* test targets, so each user gives one
difference ``b - a``. Per-user differences cancel the large user-to-user variance (some
users are easy, some hopeless for any model) that an unpaired comparison of two means would
have to carry, and the tests below work on them.

What :func:`paired_comparison` reports per metric:

* the means and their difference ``diff = mean(B) - mean(A)``;
* a percentile bootstrap interval of that difference, resampling users (one index matrix
  per user count, drawn from ``seed``, so every metric with the same users is resampled with
  the same users: the intervals are paired across metrics too);
* a p-value from the Wilcoxon signed-rank test (default: per-user metrics are bounded and
  very skewed — most users score 0 at NDCG@10) or the paired t test;
* a Holm-adjusted p-value: the *primary* metric (default ``ndcg@10``) is the one pre-declared
  decision and is judged on its own p-value; the other metrics are a family of secondary
  checks, adjusted together so that several looks at the same runs do not buy several chances
  of a false "better" (the primary's adjusted p equals its raw p);
* a verdict: ``identical`` when every user's difference is exactly 0 (a deterministic model
  evaluated twice: there is nothing to test, and SciPy would return NaN), ``B better`` /
  ``A better`` when the (adjusted) p-value is below ``alpha``, else
  ``no significant difference``.

Per-user values that are NaN (AUC is undefined for a user with no negatives) are dropped
pairwise and counted.

Seeded models (:func:`seed_comparison`). A model whose seed changes its weights gives, for
one configuration, a *distribution* of trained instances. With one seed per side the
per-user paired test above compares two instances: conditional on them, their per-user
metrics really differ, and the test rightly finds that often — also in an A/A where the two
configurations are the same (benchmarks/results/aa_calibration.md: 24/100 at α = 0.05).
That is a true statement about instances and a false one about configurations. So:

* with ``n ≥ 2`` seeds on every seeded side, the unit of replication is the **seed**: each
  run's mean metric over the (fixed) test users is one observation, and Welch's t test
  compares the ``n_A`` and ``n_B`` per-seed means (unequal variances — one side may be less
  stable than the other; a deterministic side is one exact value with variance 0, so the
  test becomes a one-sample t test against it). Under the null "both configurations have the
  same expected metric over seeds, on these users" the per-seed means of each side are
  independent draws (different seeds, same data), so Welch's statistic is t-distributed up to
  the normality of a mean over hundreds of users; its interval ``diff ± t·se`` is the CI of
  the difference of seed-averaged means and carries exactly the between-seed variance. The
  inference is conditional on the test users (the user-paired part below is conditional on
  the instances); with 3 seeds per side it is valid but not powerful — more seeds buy power.
  Verdicts: ``B better`` / ``A better`` / ``no significant difference`` / ``identical``.
* the per-user paired analysis is still computed, on each user's metric averaged over the
  side's seeds, and reported as secondary *instance-level / user-paired* information
  (:attr:`MetricComparison.user_paired`); it never decides for a seeded configuration.
* with one seed on a seeded side there is no seed-level variance to test against: the
  user-paired test decides, as before, but its verdict says what it compares —
  ``instances differ (B higher)`` / ``instances differ (A higher)`` instead of "B/A better".

Pure numpy/SciPy: no I/O, nothing printed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from ..core.bootstrap import bootstrap_ci

TESTS = ("wilcoxon", "t")
PRIMARY = "ndcg@10"
#: report order after the primary metric (others follow alphabetically)
ORDER = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "mrr@20", "auc")
VERDICTS = ("B better", "A better", "no significant difference", "identical", "instances differ (B higher)",
            "instances differ (A higher)")
#: how a :class:`Comparison` was decided: per-user paired test of deterministic runs, of two
#: single-seed instances of a seeded model, or Welch's t over per-seed means
LEVELS = ("users", "instances", "seeds")


@dataclass
class MetricComparison:
    """One metric's paired comparison (``diff`` and the interval are B − A)."""

    metric: str
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    n_users: int
    n_dropped: int
    verdict: str
    #: seed level only: each run's mean over its users (A's and B's seeds, in order)
    seed_means_a: list[float] = field(default_factory=list)
    seed_means_b: list[float] = field(default_factory=list)
    #: seed level only: Welch–Satterthwaite degrees of freedom (NaN otherwise)
    df: float = math.nan
    #: seed level only: the secondary per-user paired analysis of the seed-averaged runs
    user_paired: MetricComparison | None = None

    @property
    def ci_excludes_zero(self) -> bool:
        return bool(self.ci_low > 0 or self.ci_high < 0)


@dataclass
class Comparison:
    """Every metric's comparison; ``verdict`` is the primary metric's.

    ``level`` says what decided (one of :data:`LEVELS`); ``test`` is the per-user paired
    test (wilcoxon or t) — the deciding one at the users/instances levels, the secondary one
    at the seeds level, where :attr:`decided_by` is Welch's t."""

    primary: str
    alpha: float
    test: str
    n_boot: int
    seed: int
    metrics: dict[str, MetricComparison] = field(default_factory=dict)
    level: str = "users"
    n_seeds_a: int = 1
    n_seeds_b: int = 1

    @property
    def verdict(self) -> str:
        return self.metrics[self.primary].verdict

    @property
    def decided_by(self) -> str:
        if self.level == "seeds":
            return "Welch t over per-seed means"
        return f"user-paired {'Wilcoxon signed-rank' if self.test == 'wilcoxon' else 't'} test" + (
            " (two single-seed instances)" if self.level == "instances" else "")

    def to_dict(self) -> dict:
        """Plain JSON-ready dict; NaN becomes None (JSON has no NaN)."""
        def clean(value):
            return None if isinstance(value, float) and math.isnan(value) else value

        def row(m: MetricComparison) -> dict:
            out = {k: clean(v) for k, v in asdict(m).items() if k != "user_paired"}
            out["ci_excludes_zero"] = m.ci_excludes_zero
            if m.user_paired is not None:
                out["user_paired"] = {k: clean(v) for k, v in asdict(m.user_paired).items()
                                      if k not in ("user_paired", "seed_means_a", "seed_means_b", "df")}
            return out

        return {
            "primary": self.primary, "alpha": self.alpha, "test": self.test, "n_boot": self.n_boot,
            "seed": self.seed, "verdict": self.verdict, "level": self.level, "decided_by": self.decided_by,
            "n_seeds_a": self.n_seeds_a, "n_seeds_b": self.n_seeds_b,
            "metrics": {name: row(m) for name, m in self.metrics.items()},
        }


def holm(p_values) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def paired_p_value(a: np.ndarray, b: np.ndarray, test: str = "wilcoxon") -> float:
    """Two-sided p-value of "B and A score users alike" from SciPy's paired tests.

    All-zero differences give 1.0 (no evidence of any difference; SciPy says NaN). Equal
    non-zero differences for every user give 0.0 (the t statistic is infinite)."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    d = b - a
    if len(d) == 0 or np.all(d == 0):
        return 1.0
    if np.all(d == d[0]):
        return 0.0
    if test == "t":
        p = stats.ttest_rel(b, a).pvalue
    else:
        # zero_method="wilcox": users both configurations score alike say nothing about
        # direction and are left out of the ranks (the classic signed-rank test).
        p = stats.wilcoxon(d, zero_method="wilcox").pvalue
    return float(p) if np.isfinite(p) else 1.0


def _verdict(diff: float, p: float, alpha: float, all_zero: bool, instances: bool = False) -> str:
    if all_zero:
        return "identical"
    if p < alpha:
        if instances:
            return f"instances differ ({'B' if diff > 0 else 'A'} higher)"
        return "B better" if diff > 0 else "A better"
    return "no significant difference"


def welch_seed_test(means_a, means_b, *, alpha: float = 0.05, exact_a: bool = False,
                    exact_b: bool = False) -> tuple[float, float, float, float, float]:
    """Welch's t test and interval for ``mean(means_b) − mean(means_a)`` over seeds.

    ``means_a``/``means_b`` are per-seed mean metrics (one value per trained instance).
    A side flagged ``exact`` is a deterministic model: its value is known without seed
    variance, so it contributes its mean and no variance (one value is enough). A seeded
    side needs at least two values — one value has no variance to compare against.
    Returns ``(diff, ci_low, ci_high, p, df)``. Zero standard error: p = 1 and a point
    interval if the means agree, p = 0 if they differ (no seed moves the metric at all)."""
    a, b = np.asarray(means_a, dtype=float), np.asarray(means_b, dtype=float)
    for side, values, exact in (("A", a, exact_a), ("B", b, exact_b)):
        if len(values) < (1 if exact else 2):
            raise ValueError(f"side {side}: the seed-level test needs at least 2 per-seed values of a seeded "
                             f"configuration, got {len(values)}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"side {side}: per-seed means must be finite, got {values.tolist()}")
    diff = float(b.mean() - a.mean())
    terms = [0.0 if exact else float(v.var(ddof=1)) / len(v) for v, exact in ((a, exact_a), (b, exact_b))]
    se2 = sum(terms)
    if se2 <= 0:
        return diff, diff, diff, (1.0 if diff == 0 else 0.0), math.nan
    dof_den = sum(t * t / (len(v) - 1) for t, v in zip(terms, (a, b)) if t > 0)
    df = se2 * se2 / dof_den
    se = math.sqrt(se2)
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return diff, diff - half, diff + half, p, float(df)


def _check_users(users_a, users_b) -> None:
    if users_a is None and users_b is None:
        return
    if users_a is None or users_b is None:
        raise ValueError("give the user ids of both runs (users_a and users_b) or of neither")
    ua, ub = np.asarray(users_a), np.asarray(users_b)
    if ua.shape != ub.shape or not np.array_equal(ua, ub):
        where = next((i for i in range(min(len(ua), len(ub))) if ua[i] != ub[i]), min(len(ua), len(ub)))
        raise ValueError(f"the two runs' users do not align ({len(ua)} vs {len(ub)} users, first mismatch at "
                         f"position {where}): both configurations must be evaluated on the same split")


def paired_comparison(a: dict[str, np.ndarray], b: dict[str, np.ndarray], *, alpha: float = 0.05,
                      n_boot: int = 10_000, seed: int = 0, test: str = "wilcoxon", primary: str = PRIMARY,
                      users_a=None, users_b=None, instances: bool = False) -> Comparison:
    """Compare per-user metric arrays of run A and run B (same users, same order).

    ``a``/``b`` map metric names to one value per test user (``EvalResult.per_user``);
    ``users_a``/``users_b`` (``EvalResult.user_ids``), when given, must be equal.
    ``instances=True`` says the runs are single-seed instances of a seeded model: a
    significant difference is then worded "instances differ (X higher)", not "X better".
    See the module docstring for what is computed and why."""
    _check_options(alpha, n_boot, test)
    _check_metrics(a, b, primary)
    _check_users(users_a, users_b)
    names = _metric_order(a, primary)
    rows = {}
    for name in names:
        va, vb = np.asarray(a[name], dtype=float), np.asarray(b[name], dtype=float)
        if va.shape != vb.shape or va.ndim != 1:
            raise ValueError(f"metric {name!r}: the runs have {va.shape} and {vb.shape} values; "
                             "the users do not align")
        keep = np.isfinite(va) & np.isfinite(vb)
        va, vb = va[keep], vb[keep]
        d = vb - va
        n = len(d)
        if n == 0 and name == primary:
            raise ValueError(f"primary metric {primary!r}: no user has a value in both runs")
        low, high = bootstrap_ci(d, n_boot=n_boot, alpha=alpha, seed=seed)
        rows[name] = {
            "metric": name,
            "mean_a": float(va.mean()) if n else math.nan,
            "mean_b": float(vb.mean()) if n else math.nan,
            "diff": float(d.mean()) if n else math.nan,
            "ci_low": low, "ci_high": high,
            "p_value": paired_p_value(va, vb, test) if n else math.nan,
            "n_users": int(n), "n_dropped": int((~keep).sum()),
            "all_zero": bool(n and np.all(d == 0)),
        }
    secondary = names[1:]
    adjusted = dict(zip(secondary, holm([rows[m]["p_value"] for m in secondary])))
    adjusted[primary] = rows[primary]["p_value"]
    out = Comparison(primary=primary, alpha=alpha, test=test, n_boot=n_boot, seed=seed,
                     level="instances" if instances else "users")
    for name in names:
        row = rows[name]
        all_zero = row.pop("all_zero")
        out.metrics[name] = MetricComparison(**row, p_holm=float(adjusted[name]),
                                             verdict=_verdict(row["diff"], adjusted[name], alpha, all_zero, instances))
    return out


def _check_options(alpha: float, n_boot: int, test: str) -> None:
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot!r}")


def _check_metrics(a: dict, b: dict, primary: str) -> None:
    if set(a) != set(b):
        raise ValueError(f"the runs report different metrics: only A has {sorted(set(a) - set(b))}, "
                         f"only B has {sorted(set(b) - set(a))}")
    if primary not in a:
        raise ValueError(f"primary metric {primary!r} is not among the metrics {sorted(a)}")


def _metric_order(a: dict, primary: str) -> list[str]:
    return [primary] + sorted((m for m in a if m != primary),
                              key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))


def seed_average(runs: list[dict[str, np.ndarray]], name: str) -> np.ndarray:
    """Each user's metric averaged over the runs where it is defined (NaN if in none)."""
    stack = np.vstack([np.asarray(r[name], dtype=float) for r in runs])
    ok = np.isfinite(stack)
    count = ok.sum(axis=0)
    total = np.where(ok, stack, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _run_mean(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else math.nan


def seed_comparison(runs_a: list[dict[str, np.ndarray]], runs_b: list[dict[str, np.ndarray]], *,
                    seeded_a: bool = True, seeded_b: bool = True, alpha: float = 0.05, n_boot: int = 10_000,
                    seed: int = 0, test: str = "wilcoxon", primary: str = PRIMARY, users_a=None,
                    users_b=None) -> Comparison:
    """Compare two configurations given one per-user metric dict per trained run (seed).

    ``runs_a``/``runs_b``: one ``EvalResult.per_user`` per seed, all on the same users
    (``users_a``/``users_b``: one user-id array per run, or None). ``seeded_x`` says whether
    side X's model depends on its seed. Chooses the level (module docstring):

    * no seeded side → :func:`paired_comparison` of the (single) runs, level ``users``;
    * a seeded side with one run → :func:`paired_comparison`, level ``instances``;
    * otherwise → Welch's t on the per-seed means decides (level ``seeds``), secondary
      metrics Holm-adjusted as in :func:`paired_comparison`, and each metric keeps the
      user-paired analysis of the seed-averaged per-user values in ``user_paired``."""
    _check_options(alpha, n_boot, test)
    if not runs_a or not runs_b:
        raise ValueError(f"each side needs at least one run, got {len(runs_a)} (A) and {len(runs_b)} (B)")
    for runs in (runs_a, runs_b):
        for r in runs:
            _check_metrics(runs_a[0], r, primary)
    _check_metrics(runs_a[0], runs_b[0], primary)
    all_users = [u for u in [*(users_a if users_a is not None else []), *(users_b if users_b is not None else [])]
                 if u is not None]
    for u in all_users[1:]:
        _check_users(all_users[0], u)
    if not seeded_a and len(runs_a) > 1 or not seeded_b and len(runs_b) > 1:
        raise ValueError("a deterministic side has exactly one run (more seeds would give identical runs)")
    if (not seeded_a and not seeded_b) or (seeded_a and len(runs_a) == 1) or (seeded_b and len(runs_b) == 1):
        instances = (seeded_a and len(runs_a) == 1) or (seeded_b and len(runs_b) == 1)
        if len(runs_a) > 1 or len(runs_b) > 1:
            raise ValueError("with one run of a seeded side there is no seed-level test: give one run per side, "
                             f"or at least 2 seeds on every seeded side (got {len(runs_a)} and {len(runs_b)} runs)")
        out = paired_comparison(runs_a[0], runs_b[0], alpha=alpha, n_boot=n_boot, seed=seed, test=test,
                                primary=primary, instances=instances)
        out.n_seeds_a, out.n_seeds_b = len(runs_a), len(runs_b)
        return out
    names = _metric_order(runs_a[0], primary)
    avg_a = {name: seed_average(runs_a, name) for name in names}
    avg_b = {name: seed_average(runs_b, name) for name in names}
    users = paired_comparison(avg_a, avg_b, alpha=alpha, n_boot=n_boot, seed=seed, test=test, primary=primary,
                              instances=True)
    rows = {}
    for name in names:
        ma = [_run_mean(r[name]) for r in runs_a]
        mb = [_run_mean(r[name]) for r in runs_b]
        if not np.all(np.isfinite(ma + mb)):  # a metric no user has (AUC without negatives)
            rows[name] = (ma, mb, math.nan, math.nan, math.nan, math.nan, math.nan)
            continue
        rows[name] = (ma, mb, *welch_seed_test(ma, mb, alpha=alpha, exact_a=not seeded_a, exact_b=not seeded_b))
    if not np.isfinite(rows[primary][5]):
        raise ValueError(f"primary metric {primary!r}: no user has a value in every run")
    secondary = names[1:]
    adjusted = dict(zip(secondary, holm([rows[m][5] for m in secondary])))
    adjusted[primary] = rows[primary][5]
    out = Comparison(primary=primary, alpha=alpha, test=test, n_boot=n_boot, seed=seed, level="seeds",
                     n_seeds_a=len(runs_a), n_seeds_b=len(runs_b))
    for name in names:
        ma, mb, diff, low, high, p, df = rows[name]
        up = users.metrics[name]
        identical = up.verdict == "identical" and sorted(ma) == sorted(mb)
        out.metrics[name] = MetricComparison(
            metric=name, mean_a=float(np.mean(ma)), mean_b=float(np.mean(mb)), diff=diff, ci_low=low, ci_high=high,
            p_value=p, p_holm=float(adjusted[name]), n_users=up.n_users, n_dropped=up.n_dropped,
            verdict=_verdict(diff, adjusted[name], alpha, identical) if np.isfinite(p) else "no significant difference",
            seed_means_a=ma, seed_means_b=mb, df=df, user_paired=up)
    return out
