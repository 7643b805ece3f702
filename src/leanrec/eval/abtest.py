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
  checks, adjusted together so that eight looks at the same runs do not buy eight chances
  of a false "better" (the primary's adjusted p equals its raw p);
* a verdict: ``identical`` when every user's difference is exactly 0 (a deterministic model
  evaluated twice: there is nothing to test, and SciPy would return NaN), ``B better`` /
  ``A better`` when the (adjusted) p-value is below ``alpha``, else
  ``no significant difference``.

Per-user values that are NaN (AUC is undefined for a user with no negatives) are dropped
pairwise and counted. Pure numpy/SciPy: no I/O, nothing printed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

TESTS = ("wilcoxon", "t")
PRIMARY = "ndcg@10"
#: report order after the primary metric (others follow alphabetically)
ORDER = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "mrr@20", "auc")
VERDICTS = ("B better", "A better", "no significant difference", "identical")
_BOOT_CELLS = 4_000_000  # resample-matrix cells per chunk: bounds memory at ~32 MB whatever the user count


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

    @property
    def ci_excludes_zero(self) -> bool:
        return bool(self.ci_low > 0 or self.ci_high < 0)


@dataclass
class Comparison:
    """Every metric's comparison; ``verdict`` is the primary metric's."""

    primary: str
    alpha: float
    test: str
    n_boot: int
    seed: int
    metrics: dict[str, MetricComparison] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return self.metrics[self.primary].verdict

    def to_dict(self) -> dict:
        """Plain JSON-ready dict; NaN becomes None (JSON has no NaN)."""
        def clean(value):
            return None if isinstance(value, float) and math.isnan(value) else value

        return {
            "primary": self.primary, "alpha": self.alpha, "test": self.test, "n_boot": self.n_boot,
            "seed": self.seed, "verdict": self.verdict,
            "metrics": {name: {**{k: clean(v) for k, v in asdict(m).items()},
                               "ci_excludes_zero": m.ci_excludes_zero}
                        for name, m in self.metrics.items()},
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


def bootstrap_ci(diffs: np.ndarray, *, n_boot: int = 10_000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(diffs)``, resampling users with replacement.

    Vectorised in chunks (``_BOOT_CELLS`` cells at a time) so 10 000 resamples of 100 000
    users do not need 8 GB. Same seed and same length → same resamples."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n == 0:
        return math.nan, math.nan
    if np.all(d == d[0]):  # every resample has the same mean
        return float(d[0]), float(d[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CELLS // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        means[start:stop] = d[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


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


def _verdict(diff: float, p: float, alpha: float, all_zero: bool) -> str:
    if all_zero:
        return "identical"
    if p < alpha:
        return "B better" if diff > 0 else "A better"
    return "no significant difference"


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
                      users_a=None, users_b=None) -> Comparison:
    """Compare per-user metric arrays of run A and run B (same users, same order).

    ``a``/``b`` map metric names to one value per test user (``EvalResult.per_user``);
    ``users_a``/``users_b`` (``EvalResult.user_ids``), when given, must be equal. See the
    module docstring for what is computed and why."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot!r}")
    if set(a) != set(b):
        raise ValueError(f"the runs report different metrics: only A has {sorted(set(a) - set(b))}, "
                         f"only B has {sorted(set(b) - set(a))}")
    if primary not in a:
        raise ValueError(f"primary metric {primary!r} is not among the metrics {sorted(a)}")
    _check_users(users_a, users_b)
    names = [primary] + sorted((m for m in a if m != primary),
                               key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))
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
    out = Comparison(primary=primary, alpha=alpha, test=test, n_boot=n_boot, seed=seed)
    for name in names:
        row = rows[name]
        all_zero = row.pop("all_zero")
        out.metrics[name] = MetricComparison(**row, p_holm=float(adjusted[name]),
                                             verdict=_verdict(row["diff"], adjusted[name], alpha, all_zero))
    return out
