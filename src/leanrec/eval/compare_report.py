"""Write an A/B comparison to disk: ``compare.json`` (everything) and ``compare.html``.

Why a self-contained HTML file: the report is meant to be attached to a pull request or
mailed; with the plot embedded as a base64 PNG it opens anywhere, offline, as one file.
The plot shows what the table cannot: the distribution of per-user differences of the
primary metric (mostly exact zeros — users both sides rank alike), every metric's
difference with its interval against zero and, for seeded configurations, each seed's
mean of the primary metric (the observations the seed-level test is run on).

Which test decided is always spelled out (``decided_by``): Welch's t over per-seed means
for seeded configurations with several seeds, else the per-user paired test. For the
former a second table gives the user-paired analysis of the seed-averaged runs, labelled
instance-level / secondary so that nobody reads it as the verdict.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from .abtest import seed_average
from .compare_run import CompareResult


def columns(alpha: float = 0.05, level: str = "users") -> tuple[str, ...]:
    """Header of the report table (the interval's level follows alpha; at the seed level the
    means are over seeds, the interval and p are Welch's and n counts seeds)."""
    if level == "seeds":
        return ("metric", "A (seed mean)", "B (seed mean)", "diff (B−A)", f"{1 - alpha:.0%} CI (Welch)",
                "p (Welch)", "Holm p", "seeds A + B", "verdict")
    return ("metric", "A", "B", "diff (B−A)", f"{1 - alpha:.0%} CI", "p", "Holm p", "n users", "verdict")


def fmt(x, spec: str = ".4f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _row(name: str, m: dict, primary: str, n: str) -> list[str]:
    label = f"{name} (primary)" if name == primary else name
    ci = "–" if m["ci_low"] is None else f"[{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]"
    return [label, fmt(m["mean_a"]), fmt(m["mean_b"]), fmt(m["diff"], "+.4f"), ci,
            fmt_p(m["p_value"]), fmt_p(m["p_holm"]), n, m["verdict"]]


def _n_users(m: dict) -> str:
    return f"{m['n_users']}" + (f" (−{m['n_dropped']} NaN)" if m["n_dropped"] else "")


def table_rows(comparison: dict) -> list[list[str]]:
    """The deciding test's table as strings, one row per metric, primary first (shared with
    the CLI); use :func:`columns` with ``comparison["level"]`` as its header."""
    seeds = comparison.get("level") == "seeds"
    n_seeds = f"{comparison.get('n_seeds_a', 1)} + {comparison.get('n_seeds_b', 1)}"
    return [_row(name, m, comparison["primary"], n_seeds if seeds else _n_users(m))
            for name, m in comparison["metrics"].items()]


def user_paired_rows(comparison: dict) -> list[list[str]]:
    """Seed level only: the secondary, instance-level user-paired table (per-user metric
    averaged over each side's seeds); header ``columns(alpha)``. Empty at other levels."""
    if comparison.get("level") != "seeds":
        return []
    return [_row(name, m["user_paired"], comparison["primary"], _n_users(m["user_paired"]))
            for name, m in comparison["metrics"].items() if m.get("user_paired")]


def seed_rows(report: dict) -> list[list[str]]:
    """One row per side: model, seeds, n and each seed's mean of the primary metric."""
    primary = report["comparison"]["primary"]
    out = []
    for label in ("A", "B"):
        side = report[label.lower()]
        means = [r["test"].get(primary) for r in side["runs"]]
        out.append([label, side["config"]["name"], side["config"]["model"],
                    "yes" if side["seeded"] else "no (fitted once)", ", ".join(map(str, side["seeds"])),
                    str(side["n_seeds"]), ", ".join(fmt(x) for x in means)])
    return out


SEED_COLUMNS = ("side", "name", "model", "seeded", "seeds", "n", "per-seed test mean (primary)")


def _plot_png(result: CompareResult) -> str:
    """Base64 PNG: histogram of per-user primary-metric differences + CI bars per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comp = result.comparison
    a = seed_average([r.run.test.per_user for r in result.runs_a], comp.primary)
    b = seed_average([r.run.test.per_user for r in result.runs_b], comp.primary)
    keep = np.isfinite(a) & np.isfinite(b)
    d = (b - a)[keep]
    seeds = comp.level == "seeds"
    fig, axes = plt.subplots(1, 3 if seeds else 2, figsize=(14 if seeds else 10, 3.6))
    left, right = axes[0], axes[1]
    left.hist(d, bins=41, color="#4c72b0")
    left.axvline(0, color="black", lw=0.8)
    averaged = " (seed-averaged)" if seeds else ""
    left.set_title(f"per-user {comp.primary} difference (B − A){averaged}\n"
                   f"{int((d == 0).sum())} of {len(d)} users exactly 0")
    left.set_yscale("log")
    left.set_xlabel("B − A")
    names = list(comp.metrics)
    y = np.arange(len(names))[::-1]
    for yi, name in zip(y, names):
        m = comp.metrics[name]
        color = "#2a9d3f" if m.verdict == "B better" else "#c0392b" if m.verdict == "A better" else "#555555"
        right.plot([m.ci_low, m.ci_high], [yi, yi], color=color, lw=3)
        right.plot([m.diff], [yi], "o", color=color)
    right.axvline(0, color="black", lw=0.8)
    right.set_yticks(y, names)
    right.set_title(f"mean difference and {1 - comp.alpha:.0%} {'Welch' if seeds else 'bootstrap'} CI")
    if seeds:
        m = comp.metrics[comp.primary]
        for x, (label, values) in enumerate((("A", m.seed_means_a), ("B", m.seed_means_b))):
            axes[2].plot([x] * len(values), values, "o", alpha=0.8, label=label)
            axes[2].plot([x - 0.2, x + 0.2], [np.mean(values)] * 2, color="black", lw=1.5)
        axes[2].set_xticks([0, 1], ["A", "B"])
        axes[2].set_xlim(-0.6, 1.6)
        axes[2].set_title(f"per-seed test {comp.primary} (the test's observations)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table(header, rows) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(result: CompareResult, report: dict) -> str:
    comp = report["comparison"]
    esc = html.escape
    main = _table(columns(comp["alpha"], comp["level"]), table_rows(comp))
    paired = user_paired_rows(comp)
    secondary = ("<h2>Instance-level / user-paired (secondary, does not decide)</h2><p>Each user's metric averaged "
                 f"over the side's seeds, {esc(comp['test'])} test and paired bootstrap over users: it says whether "
                 "<em>these trained instances</em> differ on these users, not whether the configurations do.</p>"
                 + _table(columns(comp["alpha"]), paired)) if paired else ""
    a, b = report["a"]["config"], report["b"]["config"]
    sides = "".join(
        f"<tr><th>{label}</th><td>{esc(c['name'])}</td><td>{esc(c['model'])}</td><td>{esc(json.dumps(c['params']))}"
        f"</td><td>{esc(c['path'])}</td></tr>" for label, c in (("A", a), ("B", b)))
    split = report["split"]
    pm = comp["metrics"][comp["primary"]]
    decided = (f"Decided by: <strong>{esc(comp['decided_by'])}</strong> on {esc(comp['primary'])}, "
               f"p = {fmt_p(pm['p_value'])}, {1 - comp['alpha']:.0%} CI of B − A "
               + ("–" if pm["ci_low"] is None else f"[{pm['ci_low']:+.4f}, {pm['ci_high']:+.4f}]")
               + (f", {fmt(pm['df'], '.1f')} degrees of freedom" if comp["level"] == "seeds" else "") + ".")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>leanrec compare: {esc(a['name'])} vs {esc(b['name'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}</style></head><body>
<h1>{esc(a['name'])} (A) vs {esc(b['name'])} (B): <em>{esc(report['verdict'])}</em></h1>
<p>Data set {esc(str(report['dataset']['name']))}, {esc(split['protocol'])} protocol, {split['test_users']} test users;
primary metric {esc(comp['primary'])}; α = {comp['alpha']}; user-paired {esc(comp['test'])} test with {comp['n_boot']}
paired bootstrap resamples (seed {comp['seed']}). Secondary metrics' p-values are Holm-adjusted.</p>
<p>{decided}</p>
<table><tr><th></th><th>name</th><th>model</th><th>params</th><th>config</th></tr>{sides}</table>
{_table(SEED_COLUMNS, seed_rows(report))}
{main}
{secondary}
{"".join(f"<p><strong>Note:</strong> {esc(n)}</p>" for n in report["notes"])}
<img alt="per-user differences and confidence intervals" src="data:image/png;base64,{_plot_png(result)}">
<p>Wall time {report['wall_seconds']} s; leanrec {esc(str(report['versions'].get('leanrec')))}, numpy
{esc(str(report['versions'].get('numpy')))}, scipy {esc(str(report['versions'].get('scipy')))}, python
{esc(str(report['versions'].get('python')))}.</p>
</body></html>
"""


def _json_default(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def _no_nan(value):
    """JSON has no NaN: replace float NaN anywhere in the report with None."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_report(result: CompareResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``compare.json`` and ``compare.html`` under ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = _no_nan(result.to_dict())
    json_path, html_path = out / "compare.json", out / "compare.html"
    json_path.write_text(json.dumps(report, indent=2, default=_json_default, allow_nan=False))
    html_path.write_text(render_html(result, report))
    return json_path, html_path
