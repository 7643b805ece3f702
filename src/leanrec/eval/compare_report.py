"""Write an A/B comparison to disk: ``compare.json`` (everything) and ``compare.html``.

Why a self-contained HTML file: the report is meant to be attached to a pull request or
mailed; with the plot embedded as a base64 PNG it opens anywhere, offline, as one file.
The plot shows what the table cannot: the distribution of per-user differences of the
primary metric (mostly exact zeros — users both sides rank alike) and every metric's
difference with its bootstrap interval against zero.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from .compare import CompareResult


def columns(alpha: float = 0.05) -> tuple[str, ...]:
    """Header of the report table (the interval's level follows alpha)."""
    return ("metric", "A", "B", "diff (B−A)", f"{1 - alpha:.0%} CI", "p", "Holm p", "n users", "verdict")


def fmt(x, spec: str = ".4f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def table_rows(comparison: dict) -> list[list[str]]:
    """The report table as strings, one row per metric, primary first (shared with the CLI)."""
    rows = []
    for name, m in comparison["metrics"].items():
        n = f"{m['n_users']}" + (f" (−{m['n_dropped']} NaN)" if m["n_dropped"] else "")
        label = f"{name} (primary)" if name == comparison["primary"] else name
        ci = "–" if m["ci_low"] is None else f"[{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]"
        rows.append([label, fmt(m["mean_a"]), fmt(m["mean_b"]), fmt(m["diff"], "+.4f"), ci,
                     fmt_p(m["p_value"]), fmt_p(m["p_holm"]), n, m["verdict"]])
    return rows


def _plot_png(result: CompareResult) -> str:
    """Base64 PNG: histogram of per-user primary-metric differences + CI bars per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comp = result.comparison
    a = np.asarray(result.a.run.test.per_user[comp.primary], float)
    b = np.asarray(result.b.run.test.per_user[comp.primary], float)
    keep = np.isfinite(a) & np.isfinite(b)
    d = (b - a)[keep]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.hist(d, bins=41, color="#4c72b0")
    left.axvline(0, color="black", lw=0.8)
    left.set_title(f"per-user {comp.primary} difference (B − A)\n{int((d == 0).sum())} of {len(d)} users exactly 0")
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
    right.set_title(f"mean difference and {1 - comp.alpha:.0%} bootstrap CI")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_html(result: CompareResult, report: dict) -> str:
    comp = report["comparison"]
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in columns(comp["alpha"]))
    body = "".join("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in table_rows(comp))
    a, b = report["a"]["config"], report["b"]["config"]
    sides = "".join(
        f"<tr><th>{label}</th><td>{esc(c['name'])}</td><td>{esc(c['model'])}</td><td>{esc(json.dumps(c['params']))}"
        f"</td><td>{c['seed']}</td><td>{esc(c['path'])}</td></tr>" for label, c in (("A", a), ("B", b)))
    split = report["split"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>leanrec compare: {esc(a['name'])} vs {esc(b['name'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}</style></head><body>
<h1>{esc(a['name'])} (A) vs {esc(b['name'])} (B): <em>{esc(report['verdict'])}</em></h1>
<p>Data set {esc(str(report['dataset']['name']))}, {esc(split['protocol'])} protocol, {split['test_users']} test users;
primary metric {esc(comp['primary'])}; {esc(comp['test'])} test at α = {comp['alpha']}; {comp['n_boot']} paired bootstrap
resamples (seed {comp['seed']}). Secondary metrics' p-values are Holm-adjusted.</p>
<table><tr><th></th><th>name</th><th>model</th><th>params</th><th>seed</th><th>config</th></tr>{sides}</table>
<table><tr>{head}</tr>{body}</table>
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
