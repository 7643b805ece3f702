"""The synthetic product catalogue: deterministic, realistic in shape, streamable."""

import numpy as np
import pandas as pd
import pytest

from leanrec.data.product_vocab import CATEGORIES
from leanrec.data.products import BLOCK, generate_products, item_text, iter_products, write_products


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = generate_products(500, seed=7)
    b = generate_products(500, seed=7)
    pd.testing.assert_frame_equal(a, b)
    c = generate_products(500, seed=8)
    assert (a["title"] != c["title"]).mean() > 0.9


def test_columns_and_dtypes():
    df = generate_products(300, start_id=10)
    assert list(df.columns) == ["item_id", "title", "category", "brand", "price"]
    assert df["item_id"].dtype == np.int64
    assert df["item_id"].tolist() == list(range(10, 310))
    assert df["price"].dtype == np.float64 and (df["price"] > 0).all()
    for col in ("title", "category", "brand"):
        assert all(isinstance(v, str) and v for v in df[col])
    with_desc = generate_products(5, description_words=40)
    assert list(with_desc.columns) == ["item_id", "title", "description", "category", "brand", "price"]


def test_empty_catalogue_keeps_the_schema():
    df = generate_products(0, description_words=20)
    assert len(df) == 0
    assert list(df.columns) == ["item_id", "title", "description", "category", "brand", "price"]
    assert df["item_id"].dtype == np.int64 and df["price"].dtype == np.float64


def test_categories_are_many_and_skewed():
    assert len(CATEGORIES) >= 30
    df = generate_products(20_000, seed=1)
    counts = df["category"].value_counts()
    assert counts.size >= 30
    assert counts.iloc[0] > 10 * counts.iloc[-1]  # Zipf-like, not uniform
    top = df[df["category"] == counts.index[0]]["brand"].value_counts()
    assert top.iloc[0] > 3 * top.iloc[-1]


def test_titles_share_vocabulary_within_a_category_and_are_mostly_distinct():
    df = generate_products(5_000, seed=2)
    assert df["title"].nunique() / len(df) > 0.99

    def vocab(cat):
        return {w for t in df.loc[df["category"] == cat, "title"] for w in t.split()}

    cats = df["category"].value_counts().index[:3]
    assert len(vocab(cats[0]) & vocab(cats[1])) < 0.1 * len(vocab(cats[0]))


def test_long_descriptions_are_about_the_requested_length():
    df = generate_products(400, seed=3, description_words=150)
    words = df["description"].str.split().str.len()
    assert 130 <= words.mean() <= 170
    assert words.min() > 90
    assert all(d.endswith((".", "!", "?")) for d in df["description"])
    short = generate_products(100, seed=3, description_words=30)["description"].str.split().str.len()
    assert 20 <= short.mean() <= 42


def test_streaming_chunks_equal_one_shot_generation():
    n = BLOCK + 1_500  # crosses a block boundary
    whole = generate_products(n, seed=5, description_words=25)
    chunks = list(iter_products(n, 3_000, seed=5, description_words=25))
    assert [len(c) for c in chunks] == [3_000, 3_000, 3_000, n - 9_000]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)
    # start_id extends the catalogue rather than repeating it
    tail = generate_products(100, seed=5, description_words=25, start_id=BLOCK - 50)
    pd.testing.assert_frame_equal(tail, whole.iloc[BLOCK - 50:BLOCK + 50].reset_index(drop=True))


def test_write_and_read_round_trip(tmp_path):
    seen = []
    path = write_products(tmp_path / "sub" / "items.parquet", 2_500, seed=4, description_words=20,
                          chunk_size=1_000, progress=seen.append)
    assert seen == [1_000, 1_000, 500]
    back = pd.read_parquet(path)
    expected = generate_products(2_500, seed=4, description_words=20)
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    assert back["item_id"].dtype == np.int64
    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).metadata.num_row_groups == 3


def test_item_text():
    df = generate_products(3, description_words=20)
    texts = item_text(df)
    assert texts[0] == f"{df['title'][0]}. {df['description'][0]}"
    assert item_text(df.drop(columns="description")) == df["title"].tolist()
    with pytest.raises(ValueError, match="title"):
        item_text(df.drop(columns="title"))


@pytest.mark.parametrize("kwargs, name", [
    ({"n": -1}, "n"), ({"n": 1.5}, "n"), ({"n": 5, "seed": -3}, "seed"), ({"n": 5, "seed": "x"}, "seed"),
    ({"n": 5, "description_words": 0}, "description_words"), ({"n": 5, "start_id": -1}, "start_id"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        generate_products(**kwargs)


def test_bad_chunk_size(tmp_path):
    with pytest.raises(ValueError, match="chunk_size"):
        next(iter_products(10, 0))
    with pytest.raises(ValueError, match="chunk_size"):
        write_products(tmp_path / "x.parquet", 10, chunk_size=-5)
    assert not (tmp_path / "x.parquet").exists()
