"""The Pareto report of a bench run: ``report.json``, ``report.md``, ``pareto.png``, ``report.html``.

Two trade-offs, each a scatter with its Pareto front (no other row is both cheaper and
better): encoder throughput (items/s, short texts) against the quality kept, and vector
bytes per item against the quality kept. "Quality kept" is the mean of warm and cold test
NDCG@10 relative to the torch fp32 reference of the same run. The HTML page embeds the PNG
and an interactive plotly version (plotly.js inlined, so it opens offline).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

__all__ = ["pareto_front", "quality_kept", "markdown_table", "write_report"]

COLUMNS = [
    ("name", "config", "{}"), ("items_per_s_short", "items/s short", "{:,.0f}"),
    ("items_per_s_long", "items/s 150 words", "{:,.1f}"), ("speedup_short", "× ref short", "{:.2f}"),
    ("speedup_long", "× ref long", "{:.2f}"), ("latency_p50_ms", "1-text p50 ms", "{:.2f}"),
    ("latency_p99_ms", "1-text p99 ms", "{:.2f}"), ("load_s", "load s", "{:.2f}"),
    ("model_mb", "model MB", "{:.1f}"), ("bytes_per_item", "B/item", "{:.0f}"),
    ("ram_bytes_per_item", "RAM B/item", "{:.0f}"),
    ("query_p50_ms", "query p50 ms", "{:.3f}"), ("query_p99_ms", "query p99 ms", "{:.3f}"),
    ("recall@10", "recall@10", "{:.3f}"), ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
    ("warm_ndcg10", "warm NDCG@10", "{:.4f}"), ("cold_ndcg10", "cold NDCG@10", "{:.4f}"),
    ("warm_vs_ref", "warm ÷ ref", "{:.3f}"), ("warm_vs_ref_ci", "95% CI", "ci"),
    ("cold_vs_ref", "cold ÷ ref", "{:.3f}"), ("cold_vs_ref_ci", "95% CI", "ci"),
    ("warm_vs_fp32", "warm ÷ fp32 vec", "{:.3f}"), ("warm_vs_fp32_ci", "95% CI", "ci"),
    ("cold_vs_fp32", "cold ÷ fp32 vec", "{:.3f}"), ("cold_vs_fp32_ci", "95% CI", "ci"),
    ("roofline_short", "roofline short", "{:.0%}"), ("roofline_long", "roofline long", "{:.0%}"),
]


def quality_kept(rec: dict) -> float | None:
    """Mean of warm and cold NDCG@10 relative to the reference row (or, in a ladder
    without the torch fp32 reference, relative to the same encoder's fp32 vectors)."""
    for keys in (("warm_vs_ref", "cold_vs_ref"), ("warm_vs_fp32", "cold_vs_fp32")):
        vals = [rec.get(k) for k in keys if rec.get(k) is not None]
        if vals:
            return sum(vals) / len(vals)
    return None


def pareto_front(points: list[tuple[float, float]], *, higher_x_better: bool) -> list[int]:
    """Indices of the non-dominated points (quality y is always better higher), by x."""
    idx = []
    for i, (x, y) in enumerate(points):
        dominated = False
        for j, (x2, y2) in enumerate(points):
            if j == i:
                continue
            better_x = x2 >= x if higher_x_better else x2 <= x
            strictly = (x2 != x) or (y2 != y)
            if better_x and y2 >= y and strictly:
                dominated = True
                break
        if not dominated:
            idx.append(i)
    return sorted(idx, key=lambda i: points[i][0])


def _fmt(value, spec: str) -> str:
    if value is None:
        return "—"
    if spec == "ci":
        return f"{value[0]:.2f}–{value[1]:.2f}"
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def markdown_table(summary: list[dict]) -> str:
    head = "| " + " | ".join(c[1] for c in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [head, sep]
    for rec in summary:
        if rec.get("error"):
            lines.append(f"| {rec['name']} | error: {rec['error']} |" + " |" * (len(COLUMNS) - 2))
            continue
        lines.append("| " + " | ".join(_fmt(rec.get(k), spec) for k, _, spec in COLUMNS) + " |")
    return "\n".join(lines)


def _charts(summary: list[dict]) -> list[dict]:
    """The two trade-offs as lists of (label, x, y) plus their Pareto fronts."""
    ok = [r for r in summary if not r.get("error") and quality_kept(r) is not None]
    enc = [r for r in ok if r.get("vectors") == "fp32" and r.get("index") == "exact" and r.get("items_per_s_short")]
    vec = [r for r in ok if r.get("ram_bytes_per_item")]
    charts = []
    for title, rows, key, xlabel, higher, logx in (
        ("Encoders: throughput vs quality kept", enc, "items_per_s_short", "items/s (short texts, log)", True, True),
        ("Vectors and indexes: RAM bytes per item vs quality kept", vec, "ram_bytes_per_item",
         "bytes per item in RAM (log)",
         False, True),
    ):
        pts = [(float(r[key]), float(quality_kept(r))) for r in rows]
        charts.append({"title": title, "labels": [r["name"] for r in rows], "points": pts, "xlabel": xlabel,
                       "front": pareto_front(pts, higher_x_better=higher), "logx": logx})
    return charts


def _png(charts: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(charts), figsize=(7 * len(charts), 5.2))
    for ax, ch in zip(axes if len(charts) > 1 else [axes], charts):
        xs = [p[0] for p in ch["points"]]
        ys = [p[1] for p in ch["points"]]
        ax.scatter(xs, ys, color="#4477aa", zorder=3)
        for label, x, y in zip(ch["labels"], xs, ys):
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        fx = [ch["points"][i][0] for i in ch["front"]]
        fy = [ch["points"][i][1] for i in ch["front"]]
        ax.step(fx, fy, where="post", color="#cc6677", label="Pareto front", zorder=2)
        if ch["logx"] and xs and min(xs) > 0:
            ax.set_xscale("log")
        ax.set_xlabel(ch["xlabel"])
        ax.set_ylabel("quality kept (NDCG@10 ÷ torch fp32, mean of warm and cold)")
        ax.set_title(ch["title"], fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _plotly_html(charts: list[dict]) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(charts), subplot_titles=[c["title"] for c in charts])
    for col, ch in enumerate(charts, start=1):
        xs = [p[0] for p in ch["points"]]
        ys = [p[1] for p in ch["points"]]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers+text", text=ch["labels"], textposition="top center",
                                 name=ch["title"].split(":")[0]), row=1, col=col)
        fig.add_trace(go.Scatter(x=[xs[i] for i in ch["front"]], y=[ys[i] for i in ch["front"]], mode="lines",
                                 line={"shape": "hv"}, name="Pareto front"), row=1, col=col)
        fig.update_xaxes(title_text=ch["xlabel"], type="log" if ch["logx"] else "linear", row=1, col=col)
        fig.update_yaxes(title_text="quality kept", row=1, col=col)
    fig.update_layout(height=560, width=1300)
    return fig.to_html(full_html=False, include_plotlyjs=True)


def write_report(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write every report file for a :func:`leanrec.cost.bench.run_ladder` result."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = result["summary"]
    charts = _charts(summary)
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "pareto.png",
             "html": out / "report.html"}
    paths["json"].write_text(json.dumps(result, indent=1, default=float))
    m = result.get("machine", {})
    flags = ", ".join(k for k, v in (m.get("flags") or {}).items() if v) if isinstance(m.get("flags"), dict) \
        else m.get("flags")
    header = (f"Machine: {m.get('cpu_model', '?')}, {m.get('logical_cores', '?')} logical cores; instruction "
              f"sets: {flags}. Protocol: {json.dumps(result.get('protocol', {}))}. Wall time "
              f"{result.get('wall_s', 0):.0f} s.")
    md = f"# leanrec cost ladder\n\n{header}\n\n{markdown_table(summary)}\n"
    paths["md"].write_text(md)
    png = _png(charts) if charts and any(c["points"] for c in charts) else b""
    if png:
        paths["png"].write_bytes(png)
    rows_html = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(k), spec))}</td>" for k, _, spec in COLUMNS) + "</tr>"
        for r in summary)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>leanrec cost ladder</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}} td:first-child{{text-align:left}}</style></head>
<body><h1>leanrec cost ladder</h1><p>{html.escape(header)}</p>
<h2>Quality versus cost (static)</h2>
{'<img alt="Pareto front" src="data:image/png;base64,' + base64.b64encode(png).decode() + '">' if png else ''}
<h2>Interactive</h2>{_plotly_html(charts) if charts else ''}
<h2>All rows</h2><table><tr>{''.join(f'<th>{html.escape(c[1])}</th>' for c in COLUMNS)}</tr>{rows_html}</table>
</body></html>"""
    paths["html"].write_text(page)
    return paths
