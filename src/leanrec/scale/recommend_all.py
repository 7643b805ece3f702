"""Top-k recommendations for every user of an event log, one Dask task per user partition.

The model is :class:`~leanrec.models.content.ContentRecommender`'s: a user's vector is the
time-decayed mean of the vectors of the items in their history (ordered by timestamp, then
item id; :meth:`~leanrec.models.content.ContentScorer.queries`), scored by inner product against
every item, items already seen excluded. Users are split into partitions of
``partition_users`` consecutive user ids, so a task reads only its users' events
(a Parquet filter on ``user_id``) and writes ``part-{k:05d}.parquet`` with columns
``user_id, rank, item_id, score`` (rank 1 = best).

Item vectors and the index are loaded once per worker process from ``vectors_dir`` (a
module-level cache keyed by the folder, its config hash and the index spec) rather than
shipped with every task: that needs a filesystem the workers share with the driver, which
a batch job writing Parquet outputs needs anyway.

Results equal the single-process run bitwise with the ``exact`` index: both run the same
partition function on the same partitions, and a user's scores come from the same matrix
product shapes. Approximate indexes (``hnsw``...) built with several threads need not
return identical neighbours on every worker.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    JobInputError,
    ProgressFn,
    config_hash,
    prepare_out_dir,
    process_stats,
    read_manifest,
    run_partitions,
    task_records,
    write_manifest,
)

__all__ = ["load_recommendations", "recommend_all", "recommend_partition"]

KIND = "leanrec-recommend-all/1"
EVENT_COLUMNS = ("user_id", "item_id", "timestamp")
_META_KEY = b"leanrec_config_hash"

_ITEMS: dict[tuple, tuple] = {}
_ITEMS_LOCK = threading.Lock()
LOAD_COUNTS: dict[str, int] = {}
LOAD_MB: dict[tuple, float] = {}  # resident memory the item load added, per key (for the planner)


def _items(vectors_dir: str, vectors_hash: str, index_spec: str, threads: int):
    """``(item ids, vectors, id -> position Index, built index)``, built once per process."""
    key = (vectors_dir, vectors_hash, index_spec, threads)
    with _ITEMS_LOCK:
        hit = _ITEMS.get(key)
        if hit is None:
            import pandas as pd

            from leanrec.core.threads import thread_budget
            from leanrec.vectors import make_index

            from .encode import load_vectors

            _ITEMS.clear()  # one catalogue per worker: at 1M x 256 dims it is ~1 GiB, plus the index
            before = process_stats()["rss_mb"]
            ids, vectors = load_vectors(vectors_dir)
            with thread_budget(threads):
                index = make_index(index_spec).build(vectors)
            own = getattr(index, "data_", None)
            if isinstance(own, np.ndarray) and own.dtype == vectors.dtype and own.shape == vectors.shape:
                vectors = own  # the exact index keeps an equal float32 copy: one matrix per worker, not two
            hit = (ids, vectors, pd.Index(ids), index)
            _ITEMS[key] = hit
            LOAD_MB[key] = process_stats()["rss_mb"] - before
            LOAD_COUNTS[repr(key)] = LOAD_COUNTS.get(repr(key), 0) + 1
        return hit


def _valid_output(path: Path, chash: str) -> bool:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path).metadata or {}
    except Exception:
        return False
    return meta.get(_META_KEY) == chash.encode()


def recommend_partition(part: dict[str, Any], vectors_dir: str, vectors_hash: str, events_path: str,
                        out_dir: str, chash: str, k: int, half_life: float | None, index_spec: str,
                        threads: int) -> dict[str, Any]:
    """Score one user partition and write its Parquet file; skip it when already written."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from leanrec.core.threads import thread_budget
    from leanrec.models.content import ContentScorer

    from .common import _tmp_name

    t0 = time.perf_counter()
    dest = Path(out_dir) / f"part-{part['index']:05d}.parquet"
    if _valid_output(dest, chash):
        return {"index": part["index"], "skipped": True, "users": part["users"], "seconds": 0.0}
    loads = sum(LOAD_COUNTS.values())
    ids, vectors, id_index, index = _items(vectors_dir, vectors_hash, index_spec, threads)
    t_load = time.perf_counter()
    after_load = process_stats()["rss_mb"]
    loaded = sum(LOAD_COUNTS.values()) > loads  # this task loaded the items (first on its worker)
    ev = pd.read_parquet(events_path, columns=list(EVENT_COLUMNS),
                         filters=[("user_id", ">=", part["lo"]), ("user_id", "<=", part["hi"])])
    if ev["timestamp"].isna().any():
        return {"error": f"{events_path}: user {ev.loc[ev['timestamp'].isna(), 'user_id'].tolist()[0]!r} has an event "
                         "without a timestamp"}
    ev = ev.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    pos = id_index.get_indexer(ev["item_id"].to_numpy())
    if (pos < 0).any():
        first = int(np.flatnonzero(pos < 0)[0])
        bad, user = ev["item_id"].tolist()[first], ev["user_id"].tolist()[first]
        return {"error": f"{events_path}: item_id {bad!r} (user {user!r}) is not in "
                         f"the catalogue encoded in {vectors_dir}"}
    t_read = time.perf_counter()
    users, starts = np.unique(ev["user_id"].to_numpy(), return_index=True)
    bounds = np.append(starts, len(ev))
    sequences = [pos[bounds[u]:bounds[u + 1]] for u in range(len(users))]
    U = ContentScorer([], [], half_life=half_life).queries(sequences, vectors)  # the content model's queries
    seen = [np.unique(seq) for seq in sequences]
    t_prof = time.perf_counter()
    with thread_budget(threads):
        top, scores = index.search(U, k, exclude=seen) if len(users) else (np.zeros((0, k), np.int64),
                                                                            np.zeros((0, k), np.float32))
    t_search = time.perf_counter()
    ok = top >= 0
    table = pa.table({
        "user_id": np.repeat(users, k).reshape(-1, k)[ok].astype(np.int64),
        "rank": np.broadcast_to(np.arange(1, k + 1, dtype=np.int16), top.shape)[ok],
        "item_id": ids[np.where(ok, top, 0)][ok],
        "score": scores[ok].astype(np.float32),
    }).replace_schema_metadata({_META_KEY: chash.encode()})
    tmp = _tmp_name(dest)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    t_end = time.perf_counter()
    return {"index": part["index"], "skipped": False, "users": int(len(users)), "rows": table.num_rows,
            "events": int(len(ev)), "seconds": t_end - t0,
            "timings": {"load_s": t_load - t0, "read_s": t_read - t_load, "profile_s": t_prof - t_read,
                        "search_s": t_search - t_prof, "write_s": t_end - t_search},
            "rss_after_load_mb": after_load, **process_stats(),
            **({"items_mb": LOAD_MB[(vectors_dir, vectors_hash, index_spec, threads)]} if loaded else {})}


def _user_partitions(events_path: Path, partition_users: int) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        names = pq.ParquetDataset(events_path).schema.names
        table = pq.read_table(events_path, columns=["user_id"]) if "user_id" in names else None
    except Exception as exc:
        raise JobInputError(f"{events_path} is not a readable Parquet event log: {exc}") from None
    missing = [c for c in EVENT_COLUMNS if c not in names]
    if missing:
        raise JobInputError(f"{events_path} lacks column(s) {', '.join(missing)} (has {', '.join(names)})")
    users = np.unique(table.column("user_id").to_numpy())
    parts = []
    for lo in range(0, len(users), partition_users):
        chunk = users[lo:lo + partition_users]
        k = len(parts)
        parts.append({"index": k, "lo": int(chunk[0]), "hi": int(chunk[-1]), "users": int(len(chunk)),
                      "label": f"user partition {k} (user_id {int(chunk[0])}-{int(chunk[-1])})"})
    return parts


def recommend_all(vectors_dir: str | os.PathLike, events_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                  k: int = 10, half_life: float | None = 8.0, index: str = "exact", partition_users: int = 10_000,
                  threads: int = 1, client=None, retries: int = 2,
                  progress: ProgressFn | None = None) -> dict[str, Any]:
    """Write the top ``k`` unseen items of every user in ``events_path`` to ``out_dir``.

    ``vectors_dir``: a finished :func:`~leanrec.scale.encode.encode_catalogue` output.
    ``events_path``: Parquet with ``user_id`` (integer), ``item_id`` (catalogue ids) and
    ``timestamp``. ``half_life`` in events (None: plain mean), as ContentRecommender.
    ``index``: a :func:`~leanrec.vectors.make_index` spec. ``client``: a Dask client, or
    None to run in this process. Returns the manifest (also ``out_dir/manifest.json``);
    a rerun of the same configuration recomputes only missing partitions, a different
    one in the same folder raises :class:`~leanrec.scale.common.ConfigMismatchError`.
    An event whose item is not in the catalogue raises
    :class:`~leanrec.scale.common.JobInputError` naming it.
    """
    t0 = time.perf_counter()
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if isinstance(partition_users, bool) or not isinstance(partition_users, int) or partition_users < 1:
        raise ValueError(f"partition_users must be a positive integer, got {partition_users!r}")
    from leanrec.vectors import make_index

    make_index(index)  # a bad spec fails here, not on every worker
    vdir = Path(vectors_dir).expanduser().resolve()
    vman = read_manifest(vdir)
    if vman is None or not str(vman.get("kind", "")).startswith("leanrec-vectors"):
        raise FileNotFoundError(f"{vdir} holds no `leanrec batch encode` output (no manifest.json)")
    if not vman.get("complete"):
        raise JobInputError(f"{vdir} is an unfinished encode run; run `leanrec batch encode` again to complete it")
    events = Path(events_path).expanduser().resolve()
    if not events.exists():
        raise FileNotFoundError(f"events file {events} does not exist")
    parts = _user_partitions(events, partition_users)
    config = {"kind": KIND, "vectors": vman["config_hash"], "events": {"name": events.name, "bytes": _size(events)},
              "k": k, "half_life": half_life, "index": index, "partition_users": partition_users}
    chash = config_hash(config)
    out = Path(out_dir).expanduser()
    prepare_out_dir(out, KIND, chash)
    manifest = {"kind": KIND, "config_hash": chash, "config": config, "complete": False,
                "users": sum(p["users"] for p in parts), "n_items": int(vman["rows"]),
                "partitions": [{**{key: p[key] for key in ("index", "lo", "hi", "users")},
                                "file": f"part-{p['index']:05d}.parquet"} for p in parts]}
    write_manifest(out, manifest)
    todo = [p for p in parts if not _valid_output(out / f"part-{p['index']:05d}.parquet", chash)]
    args = (str(vdir), vman["config_hash"], str(events), str(out), chash, k, half_life, index, threads)
    results = run_partitions(recommend_partition, todo, args, client=client, retries=retries, progress=progress,
                             key_prefix=f"leanrec-recommend-{chash}")
    computed = [r["index"] for r in results if not r["skipped"]]
    manifest["complete"] = True
    manifest["last_run"] = {"computed": computed,
                            "skipped": sorted(set(p["index"] for p in parts) - set(computed)),
                            "wall_s": round(time.perf_counter() - t0, 3), "distributed": client is not None,
                            "tasks": task_records(results)}
    write_manifest(out, manifest)
    return manifest


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def load_recommendations(out_dir: str | os.PathLike):
    """All partitions of a finished :func:`recommend_all` as one DataFrame (user, rank order)."""
    import pandas as pd

    folder = Path(out_dir).expanduser()
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("kind") != KIND or not manifest.get("complete"):
        raise FileNotFoundError(f"{folder} holds no finished recommend-all output")
    frames = [pd.read_parquet(folder / p["file"]) for p in manifest["partitions"]]
    if not frames:
        return pd.DataFrame({"user_id": [], "rank": [], "item_id": [], "score": []})
    return pd.concat(frames, ignore_index=True)
