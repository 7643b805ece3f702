"""Dask batch jobs (leanrec.scale): a real 2-process LocalCluster on 127.0.0.1 gives the same
vectors and top-k as the single-process run, reruns skip finished partitions, a failing
partition is retried, and bad input is reported by file and row."""

import os

import numpy as np
import pandas as pd
import pytest

from leanrec.data.interactions import generate_events
from leanrec.data.products import generate_products, write_products
from leanrec.data.history import decay_weights
from leanrec.scale import (
    ConfigMismatchError,
    EncoderSpec,
    PartitionFailedError,
    SchedulerUnreachableError,
    build_index_shards,
    connect,
    encode_catalogue,
    load_recommendations,
    load_vectors,
    recommend_all,
    search_shards,
)
from leanrec.scale.common import JobInputError

N_ITEMS = 600
HASH = "leanrec.scale.testing:hash_encoder"


def spec(**options):
    return EncoderSpec(HASH, options={"dim": 32, **options})


@pytest.fixture(scope="module")
def client():
    with connect(None, workers=2, threads_per_worker=1) as c:
        assert all(addr.startswith("tcp://127.0.0.1:") for addr in c.scheduler_info()["workers"])
        assert c.scheduler.address.startswith("tcp://127.0.0.1:")
        yield c


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    items = write_products(root / "items.parquet", N_ITEMS, chunk_size=200)  # 3 row groups
    events = generate_events(generate_products(N_ITEMS), 120, (5, 25), seed=1)
    events.to_parquet(root / "events.parquet")
    return root, items, root / "events.parquet", events


def test_unreachable_scheduler_names_the_address():
    with pytest.raises(SchedulerUnreachableError, match="127.0.0.1:9"):
        with connect("tcp://127.0.0.1:9", timeout=1):
            pass


def test_encode_distributed_equals_single_process(client, data, tmp_path):
    _, items, _, _ = data
    ref = encode_catalogue(items, tmp_path / "ref", encoder=spec(), partition_rows=150, codec="int8")
    dist = encode_catalogue(items, tmp_path / "dist", encoder=spec(), partition_rows=150, codec="int8",
                            client=client)
    assert dist["config_hash"] == ref["config_hash"]
    assert len(dist["partitions"]) == 4 and dist["last_run"]["encoded"] == [0, 1, 2, 3]
    ids_r, vec_r = load_vectors(tmp_path / "ref")
    ids_d, vec_d = load_vectors(tmp_path / "dist")
    assert np.array_equal(ids_r, np.arange(N_ITEMS)) and np.array_equal(ids_d, ids_r)
    assert vec_d.dtype == np.float32 and vec_d.shape == (N_ITEMS, 32)
    assert vec_d.tobytes() == vec_r.tobytes()  # bitwise
    assert load_vectors(tmp_path / "dist", codec="int8")[1].tobytes() == \
        load_vectors(tmp_path / "ref", codec="int8")[1].tobytes()
    # The encoder is built once per worker process, not once per partition.
    counts = client.run(lambda: __import__("leanrec.scale.encode", fromlist=["_"]).load_counts())
    assert all(c.get(repr(spec()), 0) <= 1 for c in counts.values())
    # Each worker process runs inside the thread budget (1 thread per worker here).
    assert set(client.run(lambda: os.environ.get("OMP_NUM_THREADS")).values()) == {"1"}


def test_folder_of_parts_equals_one_file(client, data, tmp_path):
    _, items, _, _ = data
    df = pd.read_parquet(items)
    (tmp_path / "in").mkdir()
    df.iloc[:250].to_parquet(tmp_path / "in" / "a.parquet")
    df.iloc[250:].to_parquet(tmp_path / "in" / "b.parquet")
    m = encode_catalogue(tmp_path / "in", tmp_path / "out", encoder=spec(), partition_rows=200, client=client)
    assert [(p["file"], p["rows"]) for p in m["partitions"]] == [("a.parquet", 200), ("a.parquet", 50),
                                                                  ("b.parquet", 200), ("b.parquet", 150)]
    encode_catalogue(items, tmp_path / "one", encoder=spec(), partition_rows=200)
    assert load_vectors(tmp_path / "out")[1].tobytes() == load_vectors(tmp_path / "one")[1].tobytes()


def test_rerun_skips_written_partitions(client, data, tmp_path):
    _, items, _, _ = data
    out = tmp_path / "v"
    encode_catalogue(items, out, encoder=spec(), partition_rows=150, client=client)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.npy")}
    again = encode_catalogue(items, out, encoder=spec(), partition_rows=150, client=client)
    assert again["last_run"]["encoded"] == [] and again["last_run"]["skipped"] == [0, 1, 2, 3]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.npy")} == stamps
    # A lost or truncated partition is the only one recomputed.
    (out / "part-00002.npy").unlink()
    (out / "part-00001.npy").write_bytes(b"garbage")
    third = encode_catalogue(items, out, encoder=spec(), partition_rows=150, client=client)
    assert third["last_run"]["encoded"] == [1, 2]
    assert (out / "part-00000.npy").stat().st_mtime_ns == stamps["part-00000.npy"]
    # Another configuration in the same folder is refused, not mixed in.
    with pytest.raises(ConfigMismatchError, match="another configuration"):
        encode_catalogue(items, out, encoder=spec(), partition_rows=100)
    with pytest.raises(ConfigMismatchError):
        encode_catalogue(items, out, encoder=spec(dim=16), partition_rows=150)


def test_failed_partition_is_retried(client, data, tmp_path):
    _, items, _, _ = data
    texts = pd.read_parquet(items)["title"].tolist()
    marker = tmp_path / "failed-once"
    flaky = spec(fail_on_text=texts[400], fail_once_marker=str(marker))
    m = encode_catalogue(items, tmp_path / "v", encoder=flaky, partition_rows=150, client=client, retries=2)
    assert marker.exists()  # the first attempt on partition 2 did fail
    assert m["complete"] and m["last_run"]["encoded"] == [0, 1, 2, 3]
    encode_catalogue(items, tmp_path / "ref", encoder=spec(), partition_rows=150)
    assert load_vectors(tmp_path / "v")[1].tobytes() == load_vectors(tmp_path / "ref")[1].tobytes()


def test_partition_failing_every_time_is_named(client, data, tmp_path):
    _, items, _, _ = data
    texts = pd.read_parquet(items)["title"].tolist()
    broken = spec(fail_on_text=texts[160])
    with pytest.raises(PartitionFailedError, match=r"partition 1 \(items.parquet rows 150-299\) failed after 2"):
        encode_catalogue(items, tmp_path / "v", encoder=broken, partition_rows=150, client=client, retries=1)
    # The partitions that succeeded are kept for the next run.
    assert (tmp_path / "v" / "part-00000.npy").is_file()


def test_bad_input_names_file_and_row(client, data, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        encode_catalogue(tmp_path / "nope.parquet", tmp_path / "v", encoder=spec())
    df = generate_products(50)
    df.loc[37, "title"] = "  "
    df.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(JobInputError, match=r"bad.parquet row 37 \(item_id 37\): empty or missing title"):
        encode_catalogue(tmp_path / "bad.parquet", tmp_path / "v2", encoder=spec(), partition_rows=20, client=client)
    df.drop(columns="title").to_parquet(tmp_path / "notitle.parquet")
    with pytest.raises(JobInputError, match="notitle.parquet lacks column"):
        encode_catalogue(tmp_path / "notitle.parquet", tmp_path / "v3", encoder=spec())


def _reference_topk(ids, V, events, k, half_life):
    """ContentRecommender's formula, brute force over the whole catalogue."""
    pos = pd.Index(ids).get_indexer(events["item_id"])
    ev = events.assign(pos=pos).sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    rows = []
    for user, g in ev.groupby("user_id", sort=True):
        seq = g["pos"].to_numpy()
        w = decay_weights(len(seq), half_life)
        u = ((w @ V[seq]) / w.sum()).astype(np.float32)
        scores = V.astype(np.float64) @ u.astype(np.float64)
        scores[np.unique(seq)] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        rows += [(user, r + 1, ids[p], scores[p]) for r, p in enumerate(top)]
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score"])


def test_recommend_all_distributed_equals_single_process(client, data, tmp_path):
    _, items, events_path, events = data
    encode_catalogue(items, tmp_path / "v", encoder=spec(), partition_rows=150)
    ref = recommend_all(tmp_path / "v", events_path, tmp_path / "ref", k=7, partition_users=25)
    dist = recommend_all(tmp_path / "v", events_path, tmp_path / "dist", k=7, partition_users=25, client=client)
    assert dist["config_hash"] == ref["config_hash"]
    assert len(dist["partitions"]) == 5 and dist["last_run"]["computed"] == [0, 1, 2, 3, 4]
    a, b = load_recommendations(tmp_path / "ref"), load_recommendations(tmp_path / "dist")
    pd.testing.assert_frame_equal(a, b, check_exact=True)  # bitwise, scores included
    assert len(b) == 120 * 7 and b["user_id"].nunique() == 120
    expect = _reference_topk(*load_vectors(tmp_path / "v"), events, 7, 8.0)
    assert np.array_equal(b["item_id"].to_numpy(), expect["item_id"].to_numpy())
    np.testing.assert_allclose(b["score"], expect["score"], atol=1e-6)
    seen = set(zip(events["user_id"], events["item_id"]))
    assert not any((u, i) in seen for u, i in zip(b["user_id"], b["item_id"]))
    # Rerun: nothing recomputed, files untouched.
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "dist").glob("part-*.parquet")}
    again = recommend_all(tmp_path / "v", events_path, tmp_path / "dist", k=7, partition_users=25, client=client)
    assert again["last_run"]["computed"] == []
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "dist").glob("part-*.parquet")} == stamps
    with pytest.raises(ConfigMismatchError):
        recommend_all(tmp_path / "v", events_path, tmp_path / "dist", k=5, partition_users=25)


def test_recommend_all_unknown_item_is_named(client, data, tmp_path):
    _, items, _, events = data
    encode_catalogue(items, tmp_path / "v", encoder=spec(), partition_rows=300)
    bad = events.copy()
    bad.loc[5, "item_id"] = 99_999
    bad.to_parquet(tmp_path / "ev.parquet")
    with pytest.raises(JobInputError, match=r"item_id 99999 \(user \d+\) is not in the catalogue"):
        recommend_all(tmp_path / "v", tmp_path / "ev.parquet", tmp_path / "r", client=client)


def test_cli_batch_encode_and_recommend_on_a_scheduler(client, data, tmp_path):
    from typer.testing import CliRunner

    from leanrec.cli import app

    _, items, events_path, _ = data
    runner = CliRunner()
    address = client.scheduler.address
    res = runner.invoke(app, ["batch", "encode", str(items), "--out", str(tmp_path / "v"), "--encoder", HASH,
                              "--scheduler", address, "--partition-rows", "200"])
    assert res.exit_code == 0, res.output
    assert "600 items x 32 dims" in res.output and "3 partitions encoded" in res.output
    res = runner.invoke(app, ["batch", "recommend", str(tmp_path / "v"), str(events_path), "--out", str(tmp_path / "r"),
                              "-k", "3", "--scheduler", address, "--partition-users", "50"])
    assert res.exit_code == 0, res.output
    assert "top-3 for 120 users" in res.output
    assert len(load_recommendations(tmp_path / "r")) == 360
    # an old spelling (hidden for one release; OUT positional): says the new one, runs the same job
    res = runner.invoke(app, ["index-shards", str(tmp_path / "v"), str(tmp_path / "s"), "--scheduler", address])
    assert res.exit_code == 0, res.output
    assert res.stderr.startswith("`leanrec index-shards` is now `leanrec batch index`")
    assert "3 exact shards" in res.output and (tmp_path / "s" / "manifest.json").is_file()
    res = runner.invoke(app, ["batch", "encode", str(items), "--out", str(tmp_path / "v"), "--encoder", HASH,
                              "--scheduler", "tcp://127.0.0.1:9", "--timeout", "1"])
    assert res.exit_code == 1 and "127.0.0.1:9" in res.output
    assert os.listdir(tmp_path / "v")


@pytest.mark.parametrize("index", ["exact", "hnsw16"])
def test_index_shards_distributed_equal_single_process(client, data, tmp_path, index):
    _, items, _, _ = data
    encode_catalogue(items, tmp_path / "v", encoder=spec(), partition_rows=100)
    ref = build_index_shards(tmp_path / "v", tmp_path / "ref", index=index, partitions_per_shard=2)
    assert ref["last_run"]["built"] == [0, 1, 2] and not ref["last_run"]["distributed"]
    dist = build_index_shards(tmp_path / "v", tmp_path / "dist", index=index, partitions_per_shard=2, client=client)
    assert len(dist["shards"]) == 3 and dist["last_run"]["built"] == [0, 1, 2]
    ids, V = load_vectors(tmp_path / "v")
    q = V[[3, 250, 599]] + V[[10, 20, 30]]
    got_ids, got_scores = search_shards(tmp_path / "dist", q, 5)
    ref_ids, ref_scores = search_shards(tmp_path / "ref", q, 5)
    assert np.array_equal(got_ids, ref_ids) and got_scores.tobytes() == ref_scores.tobytes()
    if index == "exact":
        full = q.astype(np.float64) @ V.T.astype(np.float64)
        assert np.array_equal(got_ids, ids[np.argsort(-full, axis=1, kind="stable")[:, :5]])
    again = build_index_shards(tmp_path / "v", tmp_path / "dist", index=index, partitions_per_shard=2, client=client)
    assert again["last_run"]["built"] == []
