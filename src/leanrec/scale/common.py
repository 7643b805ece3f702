"""What the batch jobs share: atomic files, the manifest, and running partitions.

Idempotency rests on two rules. Every output file is written under a temporary name and
renamed into place (``os.replace`` is atomic on one filesystem), so a file that exists is
complete. And every job folder has a ``manifest.json`` holding a hash of everything that
determines the output (inputs, model, options): a rerun with the same hash keeps the valid
files and computes the rest; a different hash in the same folder is refused
(:class:`ConfigMismatchError`) rather than silently mixing two configurations.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ConfigMismatchError",
    "JobInputError",
    "PartitionFailedError",
    "ProgressFn",
    "atomic_write_bytes",
    "atomic_save_npy",
    "config_hash",
    "prepare_out_dir",
    "read_manifest",
    "run_partitions",
    "write_manifest",
]

MANIFEST = "manifest.json"
#: ``progress(done, total)``: partitions finished so far out of those this run computes.
ProgressFn = Callable[[int, int], None]


class ConfigMismatchError(ValueError):
    """The output folder holds results of a different configuration."""


class JobInputError(ValueError):
    """Bad input data (missing column, empty text, unknown item): not worth a retry."""


class PartitionFailedError(RuntimeError):
    """A partition still failed after its retries."""


def process_stats() -> dict[str, Any]:
    """This process's pid and resident memory now and at its peak (MB), reported by every
    task so that ``leanrec.cost.jobs`` can fit memory per worker from a measured run."""
    import resource

    try:
        with open("/proc/self/statm") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        rss = float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    peak = max(peak, rss) if rss == rss else peak  # the kernel's high-water mark can lag the current RSS
    return {"pid": os.getpid(), "rss_mb": round(rss, 1), "peak_rss_mb": round(peak, 1)}


def task_records(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-task measurements of a run's computed partitions (for the manifest's ``last_run``)."""
    keep = ("index", "rows", "users", "events", "seconds", "timings", "pid", "rss_mb", "peak_rss_mb",
            "rss_after_load_mb", "items_mb")
    return [{k: r[k] for k in keep if k in r} for r in results if not r.get("skipped")]


def config_hash(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able configuration."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one."""
    tmp = _tmp_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file and a rename."""
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def npy_matches(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Whether ``path`` is a readable ``.npy`` of exactly this shape and dtype (header only)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return False
    return arr.shape == tuple(shape) and arr.dtype == np.dtype(dtype)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when there is none."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigMismatchError(f"{path} is not a readable manifest ({exc}); "
                                  "remove the folder to start over") from None


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_bytes(folder / MANIFEST, json.dumps(manifest, indent=1, default=str).encode())


def prepare_out_dir(folder: Path, kind: str, chash: str) -> dict[str, Any] | None:
    """Create ``folder`` or check that its manifest is of this ``kind`` and config hash.

    Returns the existing manifest (None for a fresh folder). A folder with files but no
    manifest, or a manifest of another configuration, raises :class:`ConfigMismatchError`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(folder)
    if manifest is None:
        stray = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
        if stray:
            raise ConfigMismatchError(f"{folder} is not empty and has no {MANIFEST} ({', '.join(sorted(stray)[:3])}"
                                      f"{', ...' if len(stray) > 3 else ''}); use an empty or new folder")
        return None
    if manifest.get("kind") != kind or manifest.get("config_hash") != chash:
        raise ConfigMismatchError(
            f"{folder} holds a {manifest.get('kind')} output of another configuration (config hash "
            f"{manifest.get('config_hash')}, this run {chash}); use a new folder, or delete it to recompute")
    return manifest


def _describe(part: dict[str, Any]) -> str:
    return part.get("label") or f"partition {part['index']}"


def run_partitions(fn: Callable[..., dict[str, Any]], parts: Sequence[dict[str, Any]], args: tuple, *,
                   client=None, retries: int = 2, progress: ProgressFn | None = None,
                   key_prefix: str = "leanrec-part") -> list[dict[str, Any]]:
    """Run ``fn(part, *args)`` for every part; return the results in ``parts`` order.

    With a Dask ``client`` each part is one task submitted with ``retries`` (a worker that
    dies or a transient error reruns the partition elsewhere); without one, the parts run
    here one after the other, the single-process reference. ``fn`` reports bad input by
    returning ``{"error": message}`` instead of raising, so deterministic input errors are
    not retried; that message is raised here as :class:`JobInputError`. An exception that
    survives the retries raises :class:`PartitionFailedError` naming the partition; the
    other tasks are cancelled, their finished files stay for the next run.
    """
    total = len(parts)
    results: dict[int, dict[str, Any]] = {}
    if progress is not None:
        progress(0, total)

    def finish(i: int, res: dict[str, Any]) -> None:
        if res.get("error"):
            raise JobInputError(res["error"])
        results[i] = res
        if progress is not None:
            progress(len(results), total)

    if client is None:
        for i, part in enumerate(parts):
            try:
                res = fn(part, *args)
            except Exception as exc:
                raise PartitionFailedError(f"{_describe(part)} failed: {type(exc).__name__}: {exc}") from exc
            finish(i, res)
        return [results[i] for i in range(total)]

    from distributed import as_completed

    stamp = f"{time.time_ns():x}"
    futures = [client.submit(fn, part, *args, retries=retries, pure=False,
                             key=f"{key_prefix}-{part['index']:05d}-{stamp}") for part in parts]
    index_of = {f.key: i for i, f in enumerate(futures)}
    try:
        for fut in as_completed(futures, loop=client.loop):
            i = index_of[fut.key]
            try:
                res = fut.result()
            except Exception as exc:
                raise PartitionFailedError(f"{_describe(parts[i])} failed after {retries + 1} attempts: "
                                           f"{type(exc).__name__}: {exc}") from exc
            finish(i, res)
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
    return [results[i] for i in range(total)]
