"""Index shards: one :func:`~leanrec.vectors.make_index` index per range of item partitions.

Why shards: one index over a large catalogue is built by one process and must fit in one
machine's memory; shards are built in parallel, one Dask task each, and a query's global
top-k is the best k of the shards' top-k lists (exact for the ``exact`` index; for
approximate ones each shard's recall applies). Shard ``s`` holds the item partitions
``s * partitions_per_shard ..`` of an :func:`~leanrec.scale.encode.encode_catalogue`
output and is saved to ``shard-{s:05d}/`` (the index's own ``save`` layout plus
``ids.npy``), written in a temporary folder and renamed, so a rerun skips finished shards.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    JobInputError,
    ProgressFn,
    config_hash,
    prepare_out_dir,
    read_manifest,
    run_partitions,
    write_manifest,
)

__all__ = ["build_index_shards", "search_shards"]

KIND = "leanrec-index-shards/1"


def _shard_done(folder: Path, rows: int) -> bool:
    ids = folder / "ids.npy"
    if not ids.is_file():
        return False
    try:
        return np.load(ids, mmap_mode="r").shape == (rows,)
    except (OSError, ValueError):
        return False


def build_shard(shard: dict[str, Any], vectors_dir: str, out_dir: str, index_spec: str, threads: int) -> dict:
    """Build and save one shard from its encode partitions; skip it when already saved."""
    from leanrec.core.threads import thread_budget
    from leanrec.vectors import make_index

    t0 = time.perf_counter()
    dest = Path(out_dir) / f"shard-{shard['index']:05d}"
    if _shard_done(dest, shard["rows"]):
        return {"index": shard["index"], "skipped": True, "seconds": 0.0}
    src = Path(vectors_dir)
    ids = np.concatenate([np.load(src / f) for f in shard["ids"]])
    vectors = np.concatenate([np.load(src / f) for f in shard["vectors"]])
    index = make_index(index_spec)
    with thread_budget(threads):
        index.build(vectors)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{time.time_ns():x}")
    try:
        index.save(tmp)
        np.save(tmp / "ids.npy", ids)  # last: marks the shard complete
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"index": shard["index"], "skipped": False, "seconds": time.perf_counter() - t0}


def build_index_shards(vectors_dir: str | os.PathLike, out_dir: str | os.PathLike, *, index: str = "exact",
                       partitions_per_shard: int = 1, threads: int = 1, client=None, retries: int = 2,
                       progress: ProgressFn | None = None) -> dict[str, Any]:
    """Build one ``index`` shard per ``partitions_per_shard`` encode partitions of ``vectors_dir``.

    ``client``: a Dask client, or None to build in this process. Returns the manifest
    (also ``out_dir/manifest.json``); idempotent like :func:`encode_catalogue`.
    """
    from leanrec.vectors import make_index

    t0 = time.perf_counter()
    if isinstance(partitions_per_shard, bool) or not isinstance(partitions_per_shard, int) or partitions_per_shard < 1:
        raise ValueError(f"partitions_per_shard must be a positive integer, got {partitions_per_shard!r}")
    make_index(index)  # a bad spec fails here
    vdir = Path(vectors_dir).expanduser().resolve()
    vman = read_manifest(vdir)
    if vman is None or not vman.get("complete"):
        raise JobInputError(f"{vdir} holds no finished `leanrec batch encode` output")
    parts = vman["partitions"]
    shards = []
    for s, lo in enumerate(range(0, len(parts), partitions_per_shard)):
        group = parts[lo:lo + partitions_per_shard]
        shards.append({"index": s, "partitions": [p["index"] for p in group], "rows": sum(p["rows"] for p in group),
                       "vectors": [p["vectors"] for p in group], "ids": [p["ids"] for p in group],
                       "label": f"shard {s} (partitions {group[0]['index']}-{group[-1]['index']})"})
    config = {"kind": KIND, "vectors": vman["config_hash"], "index": index,
              "partitions_per_shard": partitions_per_shard}
    chash = config_hash(config)
    out = Path(out_dir).expanduser()
    prepare_out_dir(out, KIND, chash)
    manifest = {"kind": KIND, "config_hash": chash, "config": config, "complete": False, "dim": vman["dim"],
                "shards": [{"index": s["index"], "folder": f"shard-{s['index']:05d}", "rows": s["rows"],
                            "partitions": s["partitions"]} for s in shards]}
    write_manifest(out, manifest)
    todo = [s for s in shards if not _shard_done(out / f"shard-{s['index']:05d}", s["rows"])]
    results = run_partitions(build_shard, todo, (str(vdir), str(out), index, threads), client=client,
                             retries=retries, progress=progress, key_prefix=f"leanrec-shard-{chash}")
    built = [r["index"] for r in results if not r["skipped"]]
    manifest["complete"] = True
    manifest["last_run"] = {"built": built, "skipped": sorted(set(s["index"] for s in shards) - set(built)),
                            "wall_s": round(time.perf_counter() - t0, 3), "distributed": client is not None}
    write_manifest(out, manifest)
    return manifest


def search_shards(shards_dir: str | os.PathLike, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Global top-``k`` ``(item ids int64[q, k], scores float32[q, k])`` over every shard.

    Each shard's top-k, merged by score (ties: lower shard, then the shard's own order);
    rows short of ``k`` items are padded with id ``-1`` and score ``-inf``.
    """
    from leanrec.vectors import load_index

    folder = Path(shards_dir).expanduser()
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("kind") != KIND or not manifest.get("complete"):
        raise FileNotFoundError(f"{folder} holds no finished index shards")
    queries = np.asarray(queries, np.float32)
    all_ids, all_scores = [], []
    for entry in manifest["shards"]:
        shard = folder / entry["folder"]
        ids = np.load(shard / "ids.npy")
        pos, sc = load_index(shard).search(queries, k)
        all_ids.append(np.where(pos >= 0, ids[np.maximum(pos, 0)], -1))
        all_scores.append(sc)
    ids, scores = np.concatenate(all_ids, axis=1), np.concatenate(all_scores, axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
