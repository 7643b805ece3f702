"""Online experiments: the pure parts — assignment, team-draft interleaving, attribution and
the report's statistics. No I/O here, so every rule is unit-tested without a server.

Two modes:

* **A/B** (``"ab"``): each user is assigned one arm for the whole experiment, by hashing
  ``"{experiment_id}:{user_id}"`` (SHA-256) to a number in [0, 1) and cutting that interval
  at the cumulative traffic shares. No state is needed to assign, so the same user gets the
  same arm in every process, after every restart, without a lookup.
* **Team-draft interleaving** (``"interleave"``, Radlinski et al. 2008): every exposure
  mixes the two arms' rankings; each item carries the team that contributed it, and a click
  is a vote for that team. Each user compares the arms side by side, so user-to-user
  variation cancels out and far fewer users are needed than for A/B.

Attribution: a click (an event of one of the experiment's click kinds) on an item that was
in an exposure of the same user at most ``attribution_window_s`` seconds before the click
is credited to the *latest* such exposure, once per (exposure, item): a repeated click on
the same shown item is one click, not two.

Statistics (``ab_report`` / ``interleave_report``) are documented on the functions.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field

import numpy as np

ALPHA = 0.05
SRM_ALPHA = 0.001  # a sample-ratio mismatch is flagged only at this level: it means a bug, not noise
Z95 = 1.959963984540054
DEFAULT_WINDOW_S = 86_400.0
DEFAULT_CLICK_KINDS = ("click", "purchase")
SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Arm:
    name: str
    share: float
    model: str | None = None  # a model folder; None = the service's content model

    def to_dict(self) -> dict:
        return {"name": self.name, "share": self.share, "model": self.model}


@dataclass
class Experiment:
    id: str
    mode: str  # "ab" | "interleave"
    arms: list[Arm]
    status: str = "running"  # "running" | "stopped"
    attribution_window_s: float = DEFAULT_WINDOW_S
    click_kinds: tuple = DEFAULT_CLICK_KINDS
    created_at: float = 0.0
    stopped_at: float | None = None
    _cum: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._cum = list(np.cumsum([a.share for a in self.arms]))

    @property
    def running(self) -> bool:
        return self.status == "running"

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def assign(self, user_id: str) -> Arm:
        """The user's arm: a deterministic function of (experiment id, user id)."""
        u = unit_hash(f"{self.id}:{user_id}")
        for arm, cum in zip(self.arms, self._cum):
            if u < cum:
                return arm
        return self.arms[-1]  # shares sum to 1 within 1e-6: the last sliver goes to the last arm

    def to_dict(self) -> dict:
        return {"id": self.id, "mode": self.mode, "status": self.status, "arms": [a.to_dict() for a in self.arms],
                "attribution_window_s": self.attribution_window_s, "click_kinds": list(self.click_kinds),
                "created_at": self.created_at, "stopped_at": self.stopped_at}

    @classmethod
    def from_dict(cls, d: dict) -> Experiment:
        return cls(id=d["id"], mode=d["mode"], arms=[Arm(a["name"], float(a["share"]), a.get("model"))
                                                     for a in d["arms"]],
                   status=d["status"], attribution_window_s=float(d["attribution_window_s"]),
                   click_kinds=tuple(d["click_kinds"]), created_at=float(d["created_at"]),
                   stopped_at=d.get("stopped_at"))


def unit_hash(key: str) -> float:
    """A number in [0, 1) from SHA-256 of ``key`` (the first 64 bits): uniform, and the same
    on every machine and Python version (unlike ``hash()``, which is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0 ** 64


def check_arms(mode: str, arms: list[dict]) -> list[dict]:
    """Errors (FastAPI's 422 shape, ``loc`` under ``body``) for an experiment's arms; [] if fine.
    Shares may all be omitted (equal split) or all given (> 0, summing to 1 within 1e-6)."""
    errors = []

    def err(loc, msg):
        errors.append({"loc": ["body", *loc], "type": "value_error", "msg": msg})

    if mode not in ("ab", "interleave"):
        err(["mode"], f"mode must be 'ab' or 'interleave', got {mode!r}")
    if len(arms) < 2:
        err(["arms"], f"an experiment needs at least 2 arms, got {len(arms)}")
    if mode == "interleave" and len(arms) != 2:
        err(["arms"], f"interleaving compares exactly 2 arms, got {len(arms)}")
    seen: dict[str, int] = {}
    for k, a in enumerate(arms):
        if seen.setdefault(a["name"], k) != k:
            err(["arms", k, "name"], f"arm name {a['name']!r} appears more than once")
    shares = [a.get("share") for a in arms]
    given = [s is not None for s in shares]
    if any(given) and not all(given):
        for k, g in enumerate(given):
            if not g:
                err(["arms", k, "share"], "give every arm a share, or none (equal shares)")
    elif all(given) and arms:
        for k, s in enumerate(shares):
            if not (math.isfinite(s) and s > 0):
                err(["arms", k, "share"], f"share must be > 0, got {s!r}")
        total = sum(shares)
        if not errors and abs(total - 1.0) > SHARE_TOLERANCE:
            err(["arms"], f"shares must sum to 1 (within {SHARE_TOLERANCE:g}), got {total!r}")
    return errors


def equal_shares(arms: list[dict]) -> list[dict]:
    """Arms with ``share`` filled in (1/n each) when none was given."""
    if arms and all(a.get("share") is None for a in arms):
        return [{**a, "share": 1.0 / len(arms)} for a in arms]
    return arms


# -- interleaving ---------------------------------------------------------------------------
def team_draft(a: list, b: list, k: int, seed: str, names: tuple[str, str] = ("A", "B")) -> list[tuple]:
    """Team-draft interleaving of rankings ``a`` and ``b`` into at most ``k`` (item, team) pairs.

    Each round the team with fewer picks so far picks next (a fair coin decides when they
    are level), taking its highest-ranked item not already in the list; a team whose ranking
    is used up passes. So the teams' sizes differ by at most one while both rankings last,
    no item appears twice, and identical rankings still give k distinct items (split between
    the teams by the coins). The coins come from ``random.Random(seed)``: one exposure's seed
    replays its list exactly.
    """
    rng = random.Random(seed)
    out: list[tuple] = []
    shown: set = set()
    ia = ib = na = nb = 0
    while len(out) < k:
        while ia < len(a) and a[ia] in shown:
            ia += 1
        while ib < len(b) and b[ib] in shown:
            ib += 1
        left_a, left_b = ia < len(a), ib < len(b)
        if not (left_a or left_b):
            break
        pick_a = left_a and (not left_b or na < nb or (na == nb and rng.random() < 0.5))
        if pick_a:
            out.append((a[ia], names[0]))
            shown.add(a[ia])
            na += 1
        else:
            out.append((b[ib], names[1]))
            shown.add(b[ib])
            nb += 1
    return out


# -- attribution ----------------------------------------------------------------------------
def attribute(clicks: list[dict], exposures: list[dict], credited: set, windows: dict[str, float],
              kinds: dict[str, tuple]) -> list[dict]:
    """Attribution rows for ``clicks`` (dicts: event_id, user_id, item_id, ts, kind).

    ``exposures``: dicts with id, experiment_id, user_id, arm, items (list of item ids),
    teams (list, or None for A/B), ts — candidates from the store. ``credited``: (exposure id,
    item id) pairs already credited (updated in place). ``windows`` / ``kinds``: the running
    experiments' attribution windows and click kinds. Per experiment, a click goes to the
    user's latest exposure that showed the item and is at most the window older than the
    click; if that exposure's item was already credited the click adds nothing (a repeat).
    """
    by_user: dict[str, list[dict]] = {}
    for x in exposures:
        by_user.setdefault(x["user_id"], []).append(x)
    for xs in by_user.values():
        xs.sort(key=lambda x: (x["ts"], x["id"]), reverse=True)
    rows = []
    for c in sorted(clicks, key=lambda c: (c["ts"], c["event_id"])):
        done: set = set()  # experiments this click already went to
        for x in by_user.get(c["user_id"], ()):
            exp = x["experiment_id"]
            if exp in done or c["kind"] not in kinds.get(exp, ()):
                continue
            if not (x["ts"] <= c["ts"] <= x["ts"] + windows[exp]):
                continue
            try:
                where = x["items"].index(c["item_id"])
            except ValueError:
                continue
            done.add(exp)
            if (x["id"], c["item_id"]) in credited:
                continue
            credited.add((x["id"], c["item_id"]))
            rows.append({"experiment_id": exp, "exposure_id": x["id"], "user_id": c["user_id"],
                         "item_id": c["item_id"], "arm": x["teams"][where] if x.get("teams") else x["arm"],
                         "event_id": c["event_id"], "ts": c["ts"]})
    return rows


# -- statistics -----------------------------------------------------------------------------
def _norm_p(z: float) -> float:
    """Two-sided p-value of a standard normal statistic."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def _num(x: float) -> float | None:
    """JSON-safe: NaN/inf (too little data) become None."""
    return float(x) if x is not None and math.isfinite(x) else None


def ratio_stats(clicked: np.ndarray, shown: np.ndarray) -> tuple[float, float]:
    """CTR = Σ clicked / Σ shown over users, and its variance by the delta method.

    Users are the independent units (exposures of one user are correlated), so the CTR is a
    ratio of two per-user means, R = mean(c)/mean(n), and to first order
    Var(R) ≈ (s²_c − 2R·s_cn + R²·s²_n) / (N · mean(n)²), with sample (co)variances over
    the N users (ddof=1). With one exposure per user this is p(1−p)/(N−1), the binomial
    variance; with repeated exposures it is wider than the naive binomial, as it must be.
    Returns (nan, nan) for no users, (R, nan) for one.
    """
    c = np.asarray(clicked, np.float64)
    n = np.asarray(shown, np.float64)
    N = len(n)
    if N == 0 or n.sum() == 0:
        return math.nan, math.nan
    r = c.sum() / n.sum()
    if N < 2:
        return r, math.nan
    cov = np.cov(np.stack([c, n]), ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (N * n.mean() ** 2)
    if var <= 0:
        # every user has the same ratio (typically no click at all yet): the delta method says
        # "no uncertainty", which is false. Fall back to the Agresti–Coull variance of the
        # exposure counts, p~(1 − p~)/n~ — the Wilson interval's width — so 0 clicks in 3 lists
        # is not "CTR exactly 0" and cannot make a comparison significant on its own.
        n_tilde = n.sum() + Z95 ** 2
        p_tilde = (c.sum() + Z95 ** 2 / 2) / n_tilde
        var = p_tilde * (1 - p_tilde) / n_tilde
    return float(r), float(var)


def srm_check(users: list[int], shares: list[float]) -> dict:
    """Sample-ratio mismatch: χ² of the users per arm against the configured shares. A tiny
    p-value means assignment or logging is broken (users lost or double-counted in one arm),
    and then no other number of the report can be trusted."""
    from scipy.stats import chisquare

    total = sum(users)
    if total == 0 or len(users) < 2:
        return {"chi2": None, "p_value": None, "mismatch": False, "alpha": SRM_ALPHA}
    expected = np.asarray(shares, np.float64) / sum(shares) * total
    chi2, p = chisquare(np.asarray(users, np.float64), expected)
    return {"chi2": _num(chi2), "p_value": _num(p), "mismatch": bool(p < SRM_ALPHA), "alpha": SRM_ALPHA}


def ab_report(arms: list[Arm], per_exposure: list[tuple], alpha: float = ALPHA) -> dict:
    """The A/B report from one row per exposure: (user_id, arm name, attributed clicks).

    Per arm: users, exposures, clicks (attributed), clicked exposures, CTR = clicked
    exposures / exposures with a 95% delta-method interval over users (``ratio_stats``).
    Every later arm is compared with the first (control): difference in CTR, its 95%
    interval and a two-sided z-test p-value on the delta-method variances (the arms' users
    are independent, so the variances add). SRM: ``srm_check`` on the users per arm.
    """
    per_user: dict[tuple[str, str], list[int]] = {}
    for user, arm, n_clicks in per_exposure:
        u = per_user.setdefault((arm, user), [0, 0, 0])
        u[0] += 1
        u[1] += 1 if n_clicks > 0 else 0
        u[2] += int(n_clicks)
    return ab_report_from_users(arms, [(arm, user, *v) for (arm, user), v in per_user.items()], alpha)


def ab_report_from_users(arms: list[Arm], user_rows: list[tuple], alpha: float = ALPHA) -> dict:
    """:func:`ab_report` from one row per (arm, user): (arm name, user id, exposures, clicked
    exposures, clicks) — what the store aggregates in SQL, so a report never reads every
    exposure row."""
    per_user: dict[str, dict[str, list]] = {a.name: {} for a in arms}
    clicks = {a.name: 0 for a in arms}
    for arm, user, n_shown, n_clicked, n_clicks in user_rows:
        if arm not in per_user:
            continue
        per_user[arm][user] = [int(n_shown), int(n_clicked)]
        clicks[arm] += int(n_clicks)
    out_arms, stats = [], {}
    for a in arms:
        users = per_user[a.name]
        shown = np.array([v[0] for v in users.values()], np.float64)
        clicked = np.array([v[1] for v in users.values()], np.float64)
        r, var = ratio_stats(clicked, shown)
        se = math.sqrt(var) if math.isfinite(var) else math.nan
        stats[a.name] = (r, var, clicked, shown)
        out_arms.append({"name": a.name, "share": a.share, "model": a.model, "users": len(users),
                         "exposures": int(shown.sum()), "clicks": clicks[a.name],
                         "clicked_exposures": int(clicked.sum()), "ctr": _num(r),
                         "ctr_ci95": [_num(max(r - Z95 * se, 0.0)), _num(min(r + Z95 * se, 1.0))]})
    control = arms[0].name
    r0, v0, c0, n0 = stats[control]
    comparisons = []
    for a in arms[1:]:
        r1, v1, c1, n1 = stats[a.name]
        diff, se = r1 - r0, math.sqrt(v0 + v1) if math.isfinite(v0 + v1) else math.nan
        # the test uses the variance under H0 (both arms one population, as the classic
        # two-proportion z test pools p): the pooled users' per-user delta-method variance
        # scaled to each arm's size; the interval keeps the arms' own variances
        _, v_pool = ratio_stats(np.concatenate([c0, c1]), np.concatenate([n0, n1]))
        n_pool = len(n0) + len(n1)
        se0 = (math.sqrt(v_pool * n_pool * (1 / len(n0) + 1 / len(n1)))
               if len(n0) and len(n1) and math.isfinite(v_pool) else math.nan)
        if not math.isfinite(diff) or not math.isfinite(se0):
            p = math.nan
        elif se0 == 0:
            p = 1.0 if diff == 0 else 0.0
        else:
            p = _norm_p(diff / se0)
        comparisons.append({"arm": a.name, "control": control, "diff": _num(diff),
                            "diff_ci95": [_num(diff - Z95 * se), _num(diff + Z95 * se)],
                            "relative_lift": _num(diff / r0) if r0 else None,
                            "p_value": _num(p), "significant": bool(math.isfinite(p) and p < alpha)})
    srm = srm_check([x["users"] for x in out_arms], [a.share for a in arms])
    return {"mode": "ab", "alpha": alpha, "arms": out_arms, "comparisons": comparisons, "srm": srm,
            "users": sum(x["users"] for x in out_arms), "exposures": sum(x["exposures"] for x in out_arms),
            "verdict": _ab_verdict(comparisons, srm, alpha)}


def _ab_verdict(comparisons: list[dict], srm: dict, alpha: float) -> str:
    if srm["mismatch"]:
        return (f"sample-ratio mismatch (chi2 p = {srm['p_value']:.2g}): users are not split as configured; "
                "fix assignment or logging before reading the results")
    parts = []
    for c in comparisons:
        if c["p_value"] is None:
            parts.append(f"{c['arm']} vs {c['control']}: not enough data")
        elif c["significant"]:
            better = c["arm"] if c["diff"] > 0 else c["control"]
            parts.append(f"{better} has the higher CTR ({c['arm']} - {c['control']} = {c['diff']:+.4f}, "
                         f"p = {c['p_value']:.2g} < {alpha})")
        else:
            parts.append(f"no significant difference between {c['arm']} and {c['control']} "
                         f"(p = {c['p_value']:.2g} >= {alpha})")
    return "; ".join(parts)


def interleave_report(arms: list[Arm], per_exposure: list[tuple], alpha: float = ALPHA) -> dict:
    """The interleaving report from one row per exposure: (user_id, clicks of arm A's team,
    clicks of arm B's team).

    An exposure with clicks is a win for the team with more clicks, else a tie; exposures
    without clicks carry no preference and only count as exposures. Preference
    Δ = (wins_A − wins_B) / (wins_A + wins_B + ties), in [−1, 1] (> 0: A is preferred).
    p-value: a two-sided sign test (exact binomial, p = 1/2) on wins_A among the decided
    exposures, ties left out.
    """
    counts = {"users": len({u for u, _, _ in per_exposure}), "exposures": len(per_exposure),
              "clicks_a": sum(int(ca) for _, ca, _ in per_exposure),
              "clicks_b": sum(int(cb) for _, _, cb in per_exposure),
              "wins_a": sum(1 for _, ca, cb in per_exposure if ca > cb),
              "wins_b": sum(1 for _, ca, cb in per_exposure if cb > ca),
              "ties": sum(1 for _, ca, cb in per_exposure if ca == cb and ca > 0)}
    return interleave_report_from_counts(arms, counts, alpha)


def interleave_report_from_counts(arms: list[Arm], counts: dict, alpha: float = ALPHA) -> dict:
    """:func:`interleave_report` from the counts the store aggregates in SQL: users,
    exposures, wins_a, wins_b, ties, clicks_a, clicks_b."""
    from scipy.stats import binomtest

    a_name, b_name = arms[0].name, arms[1].name
    wins_a, wins_b, ties = int(counts["wins_a"]), int(counts["wins_b"]), int(counts["ties"])
    n_users, n_exposures = int(counts["users"]), int(counts["exposures"])
    decided = wins_a + wins_b
    p = binomtest(wins_a, decided, 0.5).pvalue if decided else math.nan
    denom = decided + ties
    delta = (wins_a - wins_b) / denom if denom else math.nan
    significant = bool(math.isfinite(p) and p < alpha)
    if not decided:
        verdict = "no exposure with a decided preference yet"
    elif significant:
        better = a_name if wins_a > wins_b else b_name
        verdict = f"{better} is preferred (delta = {delta:+.3f}, sign test p = {p:.2g} < {alpha})"
    else:
        verdict = f"no significant preference between {a_name} and {b_name} (sign test p = {p:.2g} >= {alpha})"
    return {"mode": "interleave", "alpha": alpha, "users": n_users, "exposures": n_exposures,
            "clicked_exposures": decided + ties,
            "arms": [{"name": a.name, "model": a.model, "wins": w, "clicks": int(c)}
                     for a, w, c in zip(arms, (wins_a, wins_b), (counts["clicks_a"], counts["clicks_b"]))],
            "wins": {a_name: wins_a, b_name: wins_b}, "ties": ties, "preference": _num(delta),
            "p_value": _num(p), "significant": significant, "verdict": verdict}
