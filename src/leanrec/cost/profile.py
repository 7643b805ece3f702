"""The profiler behind ``leanrec cost profile``: what one pipeline configuration costs, measured.

For a :class:`~leanrec.cost.config.PipelineConfig` it measures, under one stated thread
budget: encoder load time, model bytes, encode throughput on short item texts and on
~150-word texts, single-text latency p50/p99, the share of the CPU's measured
matrix-multiply roofline the encoder reaches, vector bytes per item, index build time and
bytes, top-10 query latency p50/p99 and QPS, and the ML-100K quality it keeps (warm and cold
NDCG@10 through the index, see :mod:`leanrec.cost.quality`). Peak RSS is the process's, so
``leanrec cost bench`` runs each configuration in a fresh worker process.

The raw encoder is timed (never the embedding cache); the cache is only used to get the
ML-100K item vectors for the quality numbers, where it changes nothing but wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .config import PipelineConfig
from .measure import latency_profile, throughput

__all__ = ["build_encoder", "profile_encoder", "profile_index", "pipeline_vectors", "profile_quality",
           "profile_pipeline", "model_bytes", "token_counts"]

Progress = Callable[[str], None]


def build_encoder(cfg: PipelineConfig, fit_texts: Sequence[str] | None = None):
    """The raw (uncached) encoder a configuration names, fitted if it needs a corpus."""
    from ..encoders import load_encoder

    if cfg.backend == "tfidf":
        enc = load_encoder("tfidf")
        return enc.fit(list(fit_texts or []))
    return load_encoder(cfg.encoder, backend=cfg.backend, precision=cfg.precision, layers=cfg.layers,
                        threads=cfg.threads)


def _folder_bytes(path: Path, suffixes=(".onnx", ".safetensors", ".bin", ".npy", ".data")) -> int:
    return int(sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and p.suffix in suffixes))


def model_bytes(encoder) -> int:
    """Bytes of the encoder's weights as it holds them (dtype-aware for torch)."""
    inner = getattr(encoder, "encoder", encoder)  # unwrap a CachedEncoder
    st = getattr(inner, "load", None)
    if type(inner).__name__ == "SentenceTransformerEncoder" and st is not None:
        model = inner.load()
        return int(sum(p.numel() * p.element_size() for p in model.parameters()))
    if type(inner).__name__ == "TfidfEncoder":
        vec = getattr(inner, "vectorizer_", None)
        idf = getattr(vec, "idf_", None)
        return int(idf.nbytes) if idf is not None else 0
    path = getattr(inner, "path", None)
    if path is not None:
        return _folder_bytes(Path(path))
    raise TypeError(f"cannot tell the model bytes of {type(inner).__name__}")


def token_counts(texts: Sequence[str], max_length: int = 256) -> np.ndarray:
    """Tokens per text (with [CLS]/[SEP], truncated like MiniLM) from MiniLM's tokenizer."""
    from tokenizers import Tokenizer

    from ..encoders.resolve import resolve_model

    tok = Tokenizer.from_file(str(resolve_model("minilm").path / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return np.array([len(e.ids) for e in tok.encode_batch(list(texts))], np.int64)


def _flops_per_text(cfg: PipelineConfig, tokens: np.ndarray) -> float | None:
    """Useful FLOPs per text of a BERT-family encoder: linear layers, real tokens only.

    Padding and attention are not counted (~21 MFLOP per token for MiniLM-L6), so the
    roofline fraction is a conservative figure.
    """
    if cfg.backend in ("static", "tfidf"):
        return None
    import json

    from ..encoders.resolve import resolve_model
    from .roofline import bert_config_flops

    folder = resolve_model(cfg.encoder).path
    per_token = float(bert_config_flops(folder))
    if cfg.layers:
        per_token *= cfg.layers / int(json.loads((folder / "config.json").read_text())["num_hidden_layers"])
    return float(tokens.mean() * per_token)


def _sample_for_budget(enc, texts: list[str], batch_size: int, budget_s: float) -> list[str]:
    """The texts to time: all of them, or fewer when one pass would exceed ``budget_s``.

    A warm-up on a few texts estimates the rate; slow paths (bf16 emulated on a CPU
    without bf16 instructions runs ~1 GFLOP/s) are then timed on a smaller sample, never
    fewer than 8 texts (or one batch if smaller), so a ladder finishes. The number timed is reported with the rate.
    """
    warm = texts[: min(len(texts), 4)]
    t0 = time.perf_counter()
    enc.encode(warm, batch_size=batch_size)
    rate = len(warm) / max(time.perf_counter() - t0, 1e-9)
    n = int(min(len(texts), max(min(batch_size, 8), rate * budget_s)))
    return texts[:n]


def profile_encoder(cfg: PipelineConfig, short_texts: Sequence[str], long_texts: Sequence[str], *,
                    repeats: int = 3, latency_n: int = 200, roofline: bool = True,
                    pass_budget_s: float = 8.0, progress: Progress | None = None) -> dict:
    """Load time, model bytes, throughput (short and long texts), latency, roofline share."""
    from ..core.threads import thread_budget

    say = progress or (lambda _msg: None)
    out: dict = {"threads": cfg.threads, "batch_size": cfg.batch_size}
    with thread_budget(cfg.threads):
        say("load")
        t0 = time.perf_counter()
        enc = build_encoder(cfg, short_texts)
        enc.encode([short_texts[0]])
        out["load_s"] = time.perf_counter() - t0
        out["dim"] = int(enc.dim)
        out["model_id"] = enc.model_id
        out["model_bytes"] = model_bytes(enc)
        timed = {}
        for label, texts in (("short", list(short_texts)), ("long", list(long_texts))):
            say(f"throughput {label}")
            texts = timed[label] = _sample_for_budget(enc, texts, cfg.batch_size, pass_budget_s)
            out[f"throughput_{label}"] = throughput(
                lambda t=texts: enc.encode(t, batch_size=cfg.batch_size), len(texts), repeats=repeats)
        say("latency")
        pool = list(short_texts)
        out["latency_short"] = latency_profile(lambda i: enc.encode([pool[i % len(pool)]]), latency_n)
        if roofline and cfg.backend not in ("static", "tfidf"):
            say("roofline")
            out["roofline"] = _roofline_share(cfg, out, timed["short"], timed["long"])
    return out


def _roofline_share(cfg: PipelineConfig, prof: dict, short_texts, long_texts) -> dict:
    """Achieved useful GFLOP/s over the matmul rate measured now, same precision and threads."""
    from .roofline import roofline

    precision = cfg.precision if cfg.precision in ("fp32", "bf16", "int8") else "fp32"
    rates = roofline(threads=cfg.threads, precisions=(precision,))
    roof = float(rates["best"][precision])
    out = {"precision": precision, "matmul": rates["results"], "roof_gflops": roof}
    for label, texts in (("short", short_texts), ("long", long_texts)):
        tokens = token_counts(texts)
        per_text = _flops_per_text(cfg, tokens)
        achieved = prof[f"throughput_{label}"]["items_per_s"] * per_text / 1e9
        out[label] = {"mean_tokens": float(tokens.mean()), "mflop_per_text": per_text / 1e6,
                      "achieved_gflops": achieved, "fraction": achieved / roof if roof > 0 else None}
    return out


def pipeline_vectors(cfg: PipelineConfig, texts: Sequence[str]) -> np.ndarray:
    """Item vectors of ``texts`` under ``cfg``'s encoder, through the embedding cache."""
    from ..encoders import CachedEncoder, EmbeddingCache

    enc = build_encoder(cfg, texts)
    if cfg.backend != "tfidf":
        enc = CachedEncoder(enc, EmbeddingCache())
    return enc.encode(list(texts), batch_size=cfg.batch_size)


def _stored(cfg: PipelineConfig, vectors: np.ndarray):
    """(index to search, vectors profiles are built from, bytes per item) for a config."""
    from ..vectors import ExactIndex, make_codec, make_index

    if cfg.vectors != "fp32":
        if cfg.index != "exact":
            raise ValueError(f"config {cfg.name!r}: a vector codec ({cfg.vectors}) goes with the exact index; "
                             f"ANN indexes ({cfg.index}) choose their own storage")
        codec = make_codec(cfg.vectors).fit(vectors)
        codes = codec.encode(vectors)
        history = codec.decode(codes)
        if history.shape[1] != vectors.shape[1]:  # a projecting codec: profiles live in the input space
            history = vectors
        return ExactIndex(codec=make_codec(cfg.vectors)), history, float(codec.bytes_per_item)
    index = make_index(cfg.index)
    if cfg.index.startswith("binary-rescore") and "fp32" not in cfg.index:
        # the fp32 vectors are not kept; profiles come from the int8 rescoring store
        codec = make_codec("int8").fit(vectors)
        return index, codec.decode(codec.encode(vectors)), None
    return index, vectors, None


def profile_index(index, vectors: np.ndarray, queries: np.ndarray, *, exclude=None, k: int = 10,
                  latency_n: int = 500, threads: int = 1, exact_positions: np.ndarray | None = None) -> dict:
    """Build time and bytes, top-k latency p50/p99 (one query at a time), batch QPS, recall@k."""
    import faiss  # noqa: F401  (loaded before the budget is set, so the budget covers it)

    from ..vectors import ExactIndex, recall_at_k
    from ..core.threads import thread_budget

    with thread_budget(threads):
        t0 = time.perf_counter()
        index.build(vectors)
        build_s = time.perf_counter() - t0
        n_lat = min(latency_n, len(queries))
        ex = exclude if exclude is not None else None
        lat = latency_profile(
            lambda i: index.search(queries[i:i + 1], k, exclude=None if ex is None else [ex[i]]), n_lat)
        t0 = time.perf_counter()
        positions, _ = index.search(queries, k, exclude=ex)
        batch_s = time.perf_counter() - t0
        if exact_positions is None:
            exact_positions, _ = ExactIndex().build(vectors).search(queries, k, exclude=ex)
    n = len(vectors)
    ram = getattr(index, "first_stage_bytes_per_item", None)
    extra = {} if ram is None else {"ram_bytes_per_item": float(ram),
                                    "disk_bytes_per_item": float(index.rescore_bytes_per_item)}
    return {**extra, "name": getattr(index, "name", type(index).__name__), "n_items": int(n),
            "dim": int(vectors.shape[1]),
            "build_s": build_s, "index_bytes": int(index.nbytes), "bytes_per_item": index.nbytes / max(n, 1),
            "latency": lat, "qps_single": 1e3 / lat["mean_ms"] if lat["mean_ms"] > 0 else None,
            "qps_batch": len(queries) / batch_s if batch_s > 0 else None, "batch_queries": int(len(queries)),
            "recall@10": float(recall_at_k(positions, exact_positions, k=k)), "threads": threads}


def profile_quality(cfg: PipelineConfig, dataset, *, half_life: float | None | dict = 8.0,
                    splits: dict | None = None) -> dict:
    """Warm and cold test NDCG@10 of the content recommender through this config's index.

    ``half_life`` is one value or ``{"warm": h, "cold": h}`` (``leanrec cost bench`` tunes it
    once on validation with the reference encoder and passes it to every row).
    """
    from ..data.split import make_split
    from .quality import protocol_queries, rank_quality

    texts = list(dataset.items.texts)
    vectors = pipeline_vectors(cfg, texts)
    half_lives = half_life if isinstance(half_life, dict) else {"warm": half_life, "cold": half_life}
    out: dict = {"half_life": half_lives}
    for protocol in ("warm", "cold"):
        split = (splits or {}).get(protocol) or make_split(dataset, protocol)
        index, history, bpi = _stored(cfg, vectors)
        queries, exclude, targets, candidates = protocol_queries(split, history, half_lives[protocol])
        prof = profile_index(index, vectors[candidates], queries, exclude=exclude, threads=cfg.threads,
                             latency_n=300)
        positions, _ = index.search(queries, 10, exclude=exclude)
        q = rank_quality(protocol, positions, targets).as_dict()
        q["index"] = prof
        if bpi is not None:
            q["vector_bytes_per_item"] = bpi
        out[protocol] = q
    out["vector_bytes_per_item"] = out["warm"].get("vector_bytes_per_item", out["warm"]["index"]["bytes_per_item"])
    return out


def profile_pipeline(cfg: PipelineConfig, dataset, long_texts: Sequence[str], *, quality: bool = True,
                     short_n: int = 512, repeats: int = 3, latency_n: int = 200, half_life=8.0,
                     progress: Progress | None = None) -> dict:
    """Everything ``leanrec cost profile`` reports for one configuration, as a JSON-ready dict."""
    from .hardware import machine_info, peak_rss_bytes
    from ..core.threads import describe_threads

    t0 = time.perf_counter()
    texts = list(dataset.items.texts)
    short = texts[:short_n]
    result: dict = {"config": cfg.as_dict(), "describe": cfg.describe()}
    result["encoder"] = profile_encoder(cfg, short, list(long_texts), repeats=repeats, latency_n=latency_n,
                                        progress=progress)
    if quality:
        if progress:
            progress("quality")
        result["quality"] = profile_quality(cfg, dataset, half_life=half_life)
    result["threads"] = describe_threads()
    result["machine"] = machine_info()
    result["peak_rss_bytes"] = int(peak_rss_bytes())
    result["wall_s"] = time.perf_counter() - t0
    return result

