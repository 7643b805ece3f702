"""Encode a product catalogue into item vectors, one Dask task per Parquet partition.

Partitions are fixed row ranges (``partition_rows``) of each input file, in sorted file
order, so the same inputs and options always give the same partitions, on a cluster or in
one process. A task reads only the row groups its range overlaps, encodes ``item_text`` of
those rows and writes ``part-{k:05d}.ids.npy`` (int64 item ids) then ``part-{k:05d}.npy``
(float32 vectors); the vectors file, renamed into place last, marks the partition done.

The encoder is loaded once per worker process, not per partition: :func:`worker_encoder`
keeps a module-level cache keyed by the :class:`EncoderSpec` (a worker process imports
this module once; its tasks share it). Encoding runs inside
:func:`~leanrec.core.threads.thread_budget` with the spec's ``threads`` (ONNX Runtime and
torch also get it at load time), so two workers on two cores do not oversubscribe them.

A compressed copy (``codec="int8"``, ``"pq64"``...) is a second pass: the codec is fitted
on the driver on the first ``codec_sample`` vectors (partition order, so deterministic),
saved, and each partition's codes are written to ``codec-<spec>/part-{k:05d}.npy``.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    JobInputError,
    ProgressFn,
    atomic_save_npy,
    config_hash,
    npy_matches,
    prepare_out_dir,
    process_stats,
    read_manifest,
    run_partitions,
    task_records,
    write_manifest,
)

__all__ = ["EncoderSpec", "encode_catalogue", "list_partitions", "load_vectors", "worker_encoder"]

KIND = "leanrec-vectors/1"
DEFAULT_PARTITION_ROWS = 50_000


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder every worker builds: what :func:`leanrec.encoders.load_encoder` takes.

    ``name``: ``"minilm"``, a model or saved-encoder folder, or ``"package.module:factory"``
    (a function called with ``options`` as keyword arguments and returning an encoder;
    it must be importable on the workers). ``threads``: the thread budget of one task.
    A plain value object, so it pickles to workers and keys their encoder cache.
    """

    name: str
    backend: str = "torch"
    precision: str = "fp32"
    threads: int = 1
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.options, dict):
            object.__setattr__(self, "options", tuple(sorted(self.options.items())))
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")
        if str(self.name).strip().lower() == "tfidf":
            raise ValueError("tfidf learns its vocabulary from the whole catalogue, so it cannot encode "
                             "partitions independently; use a pretrained encoder (minilm, static, ONNX folder)")

    @property
    def is_factory(self) -> bool:
        name = self.name
        return ":" in name and not Path(name).expanduser().exists() and not re.match(r"^[A-Za-z]:[\\/]", name)

    def load(self):
        """Build the encoder (slow: loads weights); use :func:`worker_encoder` for the cached one."""
        if self.is_factory:
            module, _, attr = self.name.partition(":")
            return getattr(importlib.import_module(module), attr)(**dict(self.options))
        from leanrec.encoders import load_encoder

        kwargs = dict(self.options)
        name = self.name
        if Path(name).expanduser().is_dir():
            from leanrec.encoders import is_saved_encoder

            if is_saved_encoder(Path(name).expanduser()):  # the folder fixes backend and precision
                return load_encoder(name, threads=self.threads, **kwargs)
        threads = None if self.backend == "static" else self.threads
        return load_encoder(name, backend=self.backend, precision=self.precision, threads=threads, **kwargs)


_ENCODERS: dict[EncoderSpec, Any] = {}
_ENCODERS_LOCK = threading.Lock()
#: How many times this process built each spec's encoder (tests check it stays at 1).
LOAD_COUNTS: dict[str, int] = {}


def worker_encoder(spec: EncoderSpec):
    """The encoder for ``spec``, built on first use in this process and kept for its lifetime."""
    with _ENCODERS_LOCK:
        enc = _ENCODERS.get(spec)
        if enc is None:
            from leanrec.core.threads import thread_budget

            with thread_budget(spec.threads):
                enc = spec.load()
            _ENCODERS[spec] = enc
            LOAD_COUNTS[repr(spec)] = LOAD_COUNTS.get(repr(spec), 0) + 1
        return enc


def load_counts() -> dict[str, int]:
    """A copy of :data:`LOAD_COUNTS` (for ``client.run`` in tests and benchmarks)."""
    return dict(LOAD_COUNTS)


# -- inputs ---------------------------------------------------------------------------------
def list_partitions(items_path: str | os.PathLike, partition_rows: int = DEFAULT_PARTITION_ROWS
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(partitions, files)``: fixed row ranges over the Parquet input(s), and a fingerprint per file.

    Reads only Parquet footers. A file without ``item_id`` or ``title`` raises
    :class:`JobInputError` naming it.
    """
    import pyarrow.parquet as pq

    from leanrec.data.formats import parquet_files

    if isinstance(partition_rows, bool) or not isinstance(partition_rows, int) or partition_rows < 1:
        raise ValueError(f"partition_rows must be a positive integer, got {partition_rows!r}")
    root = Path(items_path).expanduser()
    parts: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    for path in parquet_files(root):
        try:
            meta = pq.ParquetFile(path)
        except Exception as exc:
            raise JobInputError(f"{path} is not a readable Parquet file: {exc}") from None
        names = set(meta.schema_arrow.names)
        missing = {"item_id", "title"} - names
        if missing:
            raise JobInputError(f"{path} lacks column(s) {', '.join(sorted(missing))} (has {', '.join(sorted(names))})")
        n = meta.metadata.num_rows
        rel = str(path.relative_to(root)) if root.is_dir() else path.name
        files.append({"file": rel, "bytes": path.stat().st_size, "rows": n})
        for lo in range(0, n, partition_rows):
            hi = min(lo + partition_rows, n)
            k = len(parts)
            parts.append({"index": k, "path": str(path.resolve()), "file": rel, "start": lo, "stop": hi,
                          "rows": hi - lo, "label": f"partition {k} ({rel} rows {lo}-{hi - 1})"})
    return parts, files


def read_partition(part: dict[str, Any]):
    """The rows ``[start, stop)`` of the part's file, reading only the row groups they touch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(part["path"])
    columns = [c for c in ("item_id", "title", "description") if c in pf.schema_arrow.names]
    offsets = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
    groups = [i for i in range(pf.num_row_groups) if offsets[i] < part["stop"] and offsets[i + 1] > part["start"]]
    if not groups:
        return pa.table({c: [] for c in columns}).to_pandas()
    table = pf.read_row_groups(groups, columns=columns)
    first = int(offsets[groups[0]])
    return table.slice(part["start"] - first, part["stop"] - part["start"]).to_pandas()


def _texts(df, part: dict[str, Any]) -> list[str]:
    from leanrec.data.products import item_text

    titles = df["title"]
    bad = titles.isna() | (titles.astype(str).str.strip() == "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise JobInputError(f"{part['file']} row {part['start'] + i} (item_id {df['item_id'].tolist()[i]!r}): "
                         "empty or missing title, nothing to encode")
    if df["item_id"].isna().any():
        i = int(np.flatnonzero(df["item_id"].isna().to_numpy())[0])
        raise JobInputError(f"{part['file']} row {part['start'] + i}: missing item_id")
    return item_text(df)


def _part_paths(out_dir: Path, k: int) -> tuple[Path, Path]:
    return out_dir / f"part-{k:05d}.npy", out_dir / f"part-{k:05d}.ids.npy"


def _part_done(out_dir: Path, part: dict[str, Any], dim: int) -> bool:
    vec, ids = _part_paths(out_dir, part["index"])
    return npy_matches(vec, (part["rows"], dim), np.float32) and npy_matches(ids, (part["rows"],), np.int64)


def encode_partition(part: dict[str, Any], out_dir: str, spec: EncoderSpec, dim: int,
                     batch_size: int | None = None) -> dict[str, Any]:
    """Encode one partition into its two files; skip it when they are already valid.

    Runs on a worker (or in-process for the reference). Returns ``{"index", "rows",
    "skipped", "seconds"}``, or ``{"error": ...}`` for bad input (see
    :func:`~leanrec.scale.common.run_partitions`).
    """
    from leanrec.core.threads import thread_budget

    out = Path(out_dir)
    t0 = time.perf_counter()
    if _part_done(out, part, dim):
        return {"index": part["index"], "rows": part["rows"], "skipped": True, "seconds": 0.0}
    try:
        df = read_partition(part)
        texts = _texts(df, part)
    except JobInputError as exc:
        return {"error": str(exc)}
    ids = df["item_id"].to_numpy().astype(np.int64)
    t_read = time.perf_counter()
    encoder = worker_encoder(spec)
    t_load = time.perf_counter()
    after_load = process_stats()["rss_mb"]
    with thread_budget(spec.threads):
        vectors = encoder.encode(texts, batch_size=batch_size) if batch_size else encoder.encode(texts)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (len(texts), dim):
        raise RuntimeError(f"encoder returned shape {vectors.shape} for {len(texts)} texts, expected dim {dim}")
    vec_path, ids_path = _part_paths(out, part["index"])
    t_enc = time.perf_counter()
    atomic_save_npy(ids_path, ids)
    atomic_save_npy(vec_path, vectors)  # last: its presence marks the partition done
    t_end = time.perf_counter()
    return {"index": part["index"], "rows": len(ids), "skipped": False, "seconds": t_end - t0,
            "timings": {"read_s": t_read - t0, "load_s": t_load - t_read, "encode_s": t_enc - t_load,
                        "write_s": t_end - t_enc}, "rss_after_load_mb": after_load, **process_stats()}


def compress_partition(part: dict[str, Any], out_dir: str, codec_dir: str, codec) -> dict[str, Any]:
    """Write the codec's codes of one partition's vectors (skipped when already there)."""
    vec_path, _ = _part_paths(Path(out_dir), part["index"])
    dest = Path(codec_dir) / f"part-{part['index']:05d}.npy"
    shape = (part["rows"], codec.code_width)
    if npy_matches(dest, shape, codec.code_dtype):
        return {"index": part["index"], "rows": part["rows"], "skipped": True}
    codes = codec.encode(np.load(vec_path))
    atomic_save_npy(dest, np.ascontiguousarray(codes))
    return {"index": part["index"], "rows": part["rows"], "skipped": False}


def _codec_folder_name(spec: str) -> str:
    return "codec-" + re.sub(r"[^a-z0-9._]+", "_", spec.strip().lower())


def encode_catalogue(items_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                     encoder: EncoderSpec | str = "minilm", backend: str = "torch", precision: str = "fp32",
                     threads: int = 1, codec: str | None = None, codec_sample: int = 100_000,
                     partition_rows: int = DEFAULT_PARTITION_ROWS, batch_size: int | None = None,
                     client=None, retries: int = 2, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Encode every item of ``items_path`` (a Parquet file or a folder of them) into ``out_dir``.

    ``encoder``: an :class:`EncoderSpec`, or a name combined with ``backend``,
    ``precision`` and ``threads``. ``client``: a Dask client (see :func:`connect`); None
    runs in this process. ``progress(done, total)`` follows the partitions computed in
    this run (skipped ones are not counted). Returns the manifest (also written to
    ``out_dir/manifest.json``); its ``last_run`` lists the partitions encoded and skipped.

    ``out_dir`` must be new, empty or hold an earlier run of the same configuration (same
    input files by name, size and rows; same encoder ``model_id``; same
    ``partition_rows``): then only missing partitions are encoded. Anything else raises
    :class:`~leanrec.scale.common.ConfigMismatchError`. ``threads`` and ``batch_size`` are
    not part of the configuration (they change speed, not vectors, for the encoders here).
    """
    t0 = time.perf_counter()
    spec = encoder if isinstance(encoder, EncoderSpec) else EncoderSpec(
        str(encoder), backend=backend, precision=precision, threads=threads)
    parts, files = list_partitions(items_path, partition_rows)
    # Load once here: it checks the spec before any task runs, builds an ONNX export or
    # static distillation once instead of racing on every worker, and gives model_id/dim.
    enc = worker_encoder(spec)
    dim = int(enc.dim)
    config = {"kind": KIND, "model_id": enc.model_id, "dim": dim, "partition_rows": partition_rows,
              "files": files, "spec": {"name": spec.name, "backend": spec.backend, "precision": spec.precision,
                                       "options": [list(o) for o in spec.options]}}
    chash = config_hash(config)
    out = Path(out_dir).expanduser()
    old = prepare_out_dir(out, KIND, chash)
    manifest = {"kind": KIND, "config_hash": chash, "config": config, "dim": dim,
                "rows": sum(p["rows"] for p in parts), "complete": False,
                "partitions": [{"index": p["index"], "file": p["file"], "start": p["start"], "stop": p["stop"],
                                "rows": p["rows"], "vectors": _part_paths(out, p["index"])[0].name,
                                "ids": _part_paths(out, p["index"])[1].name} for p in parts],
                "codecs": (old or {}).get("codecs", {})}
    write_manifest(out, manifest)
    todo = [p for p in parts if not _part_done(out, p, dim)]
    results = run_partitions(encode_partition, todo, (str(out), spec, dim, batch_size), client=client,
                             retries=retries, progress=progress, key_prefix=f"leanrec-encode-{chash}")
    encoded = [r["index"] for r in results if not r["skipped"]]
    skipped = sorted(set(p["index"] for p in parts) - set(encoded))
    if codec:
        manifest["codecs"][codec] = _compress(out, parts, codec, codec_sample, client, retries)
    manifest["complete"] = True
    manifest["last_run"] = {"encoded": encoded, "skipped": skipped, "wall_s": round(time.perf_counter() - t0, 3),
                            "distributed": client is not None,
                            "encode_s": round(sum(r.get("seconds", 0.0) for r in results), 3),
                            "tasks": task_records(results)}
    write_manifest(out, manifest)
    return manifest


def _compress(out: Path, parts: list[dict[str, Any]], spec: str, sample: int, client, retries: int) -> dict:
    from leanrec.vectors import load_codec, make_codec

    folder = out / _codec_folder_name(spec)
    codec_path = folder / "codec"
    if (codec_path / "codec.json").is_file():
        fitted = load_codec(codec_path)
    else:
        chunks, n = [], 0
        for p in parts:  # the first `sample` rows in partition order: same on every run
            if n >= sample:
                break
            v = np.load(_part_paths(out, p["index"])[0])[: sample - n]
            chunks.append(v)
            n += len(v)
        fitted = make_codec(spec).fit(np.concatenate(chunks))
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".codec-tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        fitted.save(tmp)
        os.replace(tmp, codec_path)  # whole fitted codec or none
    arg = client.scatter(fitted, broadcast=True) if client is not None else fitted
    run_partitions(compress_partition, parts, (str(out), str(folder), arg), client=client, retries=retries,
                   key_prefix=f"leanrec-compress-{folder.name}")
    return {"folder": folder.name, "codec": fitted.name, "sample_rows": min(sample, sum(p["rows"] for p in parts)),
            "bytes_per_item": int(fitted.bytes_per_item)}


def load_vectors(out_dir: str | os.PathLike, *, codec: str | None = None, mmap: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(item_ids int64[n], vectors float32[n, d])`` of a finished :func:`encode_catalogue`.

    ``codec``: return that compressed copy's codes instead of the vectors.
    """
    folder = Path(out_dir).expanduser()
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("kind") != KIND:
        raise FileNotFoundError(f"{folder} holds no encode_catalogue output ({folder / 'manifest.json'} missing)")
    if not manifest.get("complete"):
        raise ValueError(f"{folder} is an unfinished encode run; run `leanrec batch encode` again to complete it")
    parts = manifest["partitions"]
    ids = [np.load(folder / p["ids"]) for p in parts]
    if codec is None:
        vecs = [np.load(folder / p["vectors"], mmap_mode="r" if mmap else None) for p in parts]
    else:
        entry = manifest["codecs"].get(codec)
        if entry is None:
            raise KeyError(f"{folder} has no {codec!r} codes; it has {', '.join(manifest['codecs']) or 'none'}")
        vecs = [np.load(folder / entry["folder"] / f"part-{p['index']:05d}.npy") for p in parts]
    dim = manifest["dim"]
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    return np.concatenate(ids), np.concatenate(vecs)

