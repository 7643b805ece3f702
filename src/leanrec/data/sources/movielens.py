"""MovieLens-100K: fetch, verify, cache and load.

MovieLens may not be redistributed, so leanrec never ships it: ``fetch_ml100k`` downloads
the official zip from GroupLens, or, where that host cannot be reached, takes the copy that
RecBole's wheel carries (``pip download --no-deps recbole==1.2.1``, files under
``recbole/dataset_example/ml-100k/``). Whatever the source, the data is verified twice:

1. the raw files against known checksums (GroupLens zip MD5, RecBole files' SHA-256);
2. the parsed interactions against a *canonical fingerprint* (SHA-256 of the sorted
   ``user, item, rating, timestamp`` rows), so both sources provably give the same events.

The verified, normalised tables are cached as Parquet under the user's cache folder
(``leanrec.paths.cache_dir() / "datasets/ml-100k"``) with a manifest; later loads read
those and touch no network.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ...paths import cache_dir
from ..schema import Dataset, Events, Items

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GROUPLENS_ZIP_MD5 = "0e33842e24a9c977be4e0107933c0723"
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_PREFIX = "recbole/dataset_example/ml-100k/"
RECBOLE_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}
# SHA-256 of the sorted "user\titem\trating\ttimestamp\n" rows of the 100,000 ratings.
EVENTS_FINGERPRINT = "6cfffb52c89b05fbc3afb75f6912eeda04c81c2add0dc58e773a0ef6c8adb160"
N_USERS, N_ITEMS, N_EVENTS = 943, 1682, 100_000
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
CACHE_VERSION = 1


class DataFetchError(RuntimeError):
    """No source could provide a verified copy of the data set."""


def dataset_dir() -> Path:
    return cache_dir() / "datasets" / "ml-100k"


def item_text(title: str, year: float | None, genres: list[str]) -> str:
    """"Toy Story (1995). Genres: Animation, Children's, Comedy" — the text every encoder sees."""
    head = title if year is None or np.isnan(year) else f"{title} ({int(year)})"
    named = [g for g in genres if g != "unknown"]
    return f"{head}. Genres: {', '.join(named)}" if named else head


def events_fingerprint(events: pd.DataFrame) -> str:
    """SHA-256 of the canonical, sorted (user, item, rating, timestamp) rows."""
    df = events[["user_id", "item_id", "value", "timestamp"]].astype("int64")
    df = df.sort_values(["user_id", "item_id", "timestamp", "value"])
    text = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in df.itertuples(index=False))
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- parsing the two sources
def _parse_grouplens(zip_bytes: bytes) -> tuple[pd.DataFrame, pd.DataFrame]:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        data = zf.read("ml-100k/u.data").decode("latin-1")
        item = zf.read("ml-100k/u.item").decode("latin-1")
    events = pd.read_csv(io.StringIO(data), sep="\t", header=None,
                         names=["user_id", "item_id", "value", "timestamp"])
    rows = []
    for line in item.splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        raw_title = parts[1].strip()
        m = re.match(r"^(.*?)\s*\((\d{4})\)\s*$", raw_title)
        title, year = (m.group(1), float(m.group(2))) if m else (raw_title, np.nan)
        if np.isnan(year) and re.search(r"\d{4}$", parts[2]):
            year = float(parts[2][-4:])
        flags = [int(x) for x in parts[5:5 + len(GENRES)]]
        rows.append({"item_id": int(parts[0]), "title": title or "unknown", "year": year,
                     "genres": [g for g, f in zip(GENRES, flags) if f]})
    return pd.DataFrame(rows), events


def _parse_recbole(inter: bytes, item: bytes) -> tuple[pd.DataFrame, pd.DataFrame]:
    events = pd.read_csv(io.BytesIO(inter), sep="\t")
    events.columns = ["user_id", "item_id", "value", "timestamp"]
    raw = pd.read_csv(io.BytesIO(item), sep="\t", dtype=str, keep_default_na=False)
    raw.columns = ["item_id", "title", "year", "genres"]
    items = pd.DataFrame({
        "item_id": raw["item_id"].astype("int64"),
        "title": raw["title"].replace({"unkonwn": "unknown"}),
        "year": pd.to_numeric(raw["year"], errors="coerce"),
        "genres": raw["genres"].str.split(),
    })
    return items, events


def _to_dataset(items: pd.DataFrame, events: pd.DataFrame, meta: dict) -> Dataset:
    items = items.copy()
    items["text"] = [item_text(t, y, g) for t, y, g in zip(items["title"], items["year"], items["genres"])]
    ev = events.copy()
    ev["kind"] = "rating"
    return Dataset(
        Items.from_frame(items, text_fields=("title",), categorical_fields=("genres",), numeric_fields=("year",)),
        Events.from_frame(ev),
        name="ml-100k",
        meta={**meta, "verb": "watched"},
    )


def _verify(ds: Dataset, source: str) -> None:
    s = ds.summary()
    counts = (s["n_users"], s["n_items"], s["n_events"])
    if counts != (N_USERS, N_ITEMS, N_EVENTS):
        raise DataFetchError(f"{source}: expected {N_USERS} users, {N_ITEMS} items, {N_EVENTS} events; got {counts}")
    got = events_fingerprint(ds.events.frame)
    if got != EVENTS_FINGERPRINT:
        raise DataFetchError(f"{source}: interactions fingerprint {got} != expected {EVENTS_FINGERPRINT}")


# ---------------------------------------------------------------- the two sources
def _from_grouplens(timeout: float) -> tuple[Dataset, dict]:
    with urllib.request.urlopen(GROUPLENS_URL, timeout=timeout) as resp:  # noqa: S310 (fixed https URL)
        payload = resp.read()
    md5 = hashlib.md5(payload).hexdigest()
    if md5 != GROUPLENS_ZIP_MD5:
        raise DataFetchError(f"GroupLens zip MD5 {md5} != expected {GROUPLENS_ZIP_MD5}")
    items, events = _parse_grouplens(payload)
    return _to_dataset(items, events, {}), {"source": "grouplens", "url": GROUPLENS_URL, "md5": md5}


def _recbole_files_from_wheel(wheel: Path) -> dict[str, bytes]:
    out = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in RECBOLE_SHA256:
            out[name] = zf.read(RECBOLE_PREFIX + name)
    return out


def _from_recbole(timeout: float, wheel: Path | None = None) -> tuple[Dataset, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", "-d", tmp, RECBOLE_REQUIREMENT]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 120))
            wheels = sorted(Path(tmp).glob("recbole-*.whl"))
            if proc.returncode != 0 or not wheels:
                raise DataFetchError(f"pip download {RECBOLE_REQUIREMENT} failed: {proc.stderr.strip()[-500:]}")
            wheel = wheels[0]
        files = _recbole_files_from_wheel(wheel)
    sums = {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()}
    for name, expected in RECBOLE_SHA256.items():
        if sums[name] != expected:
            raise DataFetchError(f"RecBole {name} SHA-256 {sums[name]} != expected {expected}")
    items, events = _parse_recbole(files["ml-100k.inter"], files["ml-100k.item"])
    return _to_dataset(items, events, {}), {"source": "recbole", "requirement": RECBOLE_REQUIREMENT, "sha256": sums}


# ---------------------------------------------------------------- public API
def fetch_ml100k(source: str = "auto", *, force: bool = False, timeout: float = 20.0,
                 wheel: str | Path | None = None) -> Path:
    """Make sure a verified copy is cached and return its folder.

    ``source``: ``auto`` (GroupLens, then RecBole), ``grouplens`` or ``recbole``.
    ``wheel``: a RecBole wheel already on disk (skips ``pip download``).
    Raises :class:`DataFetchError` listing why every source failed.
    """
    folder = dataset_dir()
    if not force and _manifest_ok(folder):
        return folder
    attempts = {"grouplens": lambda: _from_grouplens(timeout),
                "recbole": lambda: _from_recbole(timeout, Path(wheel) if wheel else None)}
    order = ["grouplens", "recbole"] if source == "auto" else [source]
    if wheel is not None and source == "auto":
        order = ["recbole"]
    errors = []
    for name in order:
        if name not in attempts:
            raise ValueError(f"unknown source {name!r}; choose auto, grouplens or recbole")
        try:
            ds, provenance = attempts[name]()
            _verify(ds, name)
        except Exception as exc:  # noqa: BLE001 — every failure is reported below
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        _write_cache(folder, ds, provenance)
        return folder
    raise DataFetchError("could not fetch a verified MovieLens-100K copy:\n  " + "\n  ".join(errors))


def load_ml100k(*, fetch: bool = True, **fetch_kwargs) -> Dataset:
    """The cached, verified data set (fetching it first if needed and allowed)."""
    folder = dataset_dir()
    if not _manifest_ok(folder):
        if not fetch:
            raise DataFetchError(f"MovieLens-100K is not cached under {folder}; run `leanrec data fetch ml-100k`")
        fetch_ml100k(**fetch_kwargs)
    manifest = json.loads((folder / "manifest.json").read_text())
    items = pd.read_parquet(folder / "items.parquet")
    items["genres"] = items["genres"].map(list)
    events = pd.read_parquet(folder / "events.parquet")
    return Dataset(
        Items.from_frame(items, text_fields=("title",), categorical_fields=("genres",), numeric_fields=("year",)),
        Events.from_frame(events),
        name="ml-100k",
        meta={"source": manifest["source"], "verb": "watched"},
    )


def _write_cache(folder: Path, ds: Dataset, provenance: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ds.items.frame.to_parquet(folder / "items.parquet", index=False)
    ds.events.frame.to_parquet(folder / "events.parquet", index=False)
    manifest = {
        **provenance,
        "cache_version": CACHE_VERSION,
        "events_fingerprint": EVENTS_FINGERPRINT,
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in ("items.parquet", "events.parquet")},
    }
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(folder / "manifest.json")  # written last: a cache without it is never trusted


def _manifest_ok(folder: Path) -> bool:
    """The cache is trusted only if the manifest exists and the cached files still match it."""
    path = folder / "manifest.json"
    if not path.exists():
        return False
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("cache_version") != CACHE_VERSION:
            return False
        return all(
            (folder / name).exists() and hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
            for name, digest in manifest["files"].items()
        )
    except (ValueError, KeyError, OSError):
        return False
