"""The batch-job planner (leanrec.cost.jobs): a finished job's manifest is its profile, the
laws give hand-computable predictions, and at the profiled size the prediction is the run."""

import pytest

from leanrec.cost.jobs import job_profile, predict_job
from leanrec.data.interactions import generate_events
from leanrec.data.products import generate_products, write_products
from leanrec.scale import EncoderSpec, encode_catalogue, recommend_all

HASH = EncoderSpec("leanrec.scale.testing:hash_encoder", options={"dim": 16})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs")
    items = write_products(root / "items.parquet", 500, chunk_size=250)
    enc = encode_catalogue(items, root / "vectors", encoder=HASH, client=None, partition_rows=100)
    generate_events(generate_products(500), 60, (3, 9), seed=2).to_parquet(root / "events.parquet")
    rec = recommend_all(root / "vectors", root / "events.parquet", root / "recs", k=5, partition_users=25)
    return enc, rec


def test_manifests_carry_per_task_measurements(runs):
    enc, rec = runs
    tasks = enc["last_run"]["tasks"]
    assert len(tasks) == 5 and all(t["rows"] == 100 for t in tasks)
    assert set(tasks[0]["timings"]) == {"read_s", "load_s", "encode_s", "write_s"}
    assert all(t["peak_rss_mb"] >= t["rss_after_load_mb"] > 0 for t in tasks)
    rt = rec["last_run"]["tasks"]
    assert sum(t["users"] for t in rt) == rec["users"] == 60 and rec["n_items"] == 500
    assert set(rt[0]["timings"]) == {"load_s", "read_s", "profile_s", "search_s", "write_s"}
    # only the task that loaded the items says what they cost (a fresh folder: loaded once here)
    loaders = [t for t in rt if "items_mb" in t]
    assert len(loaders) == 1 and loaders[0]["timings"]["load_s"] > 0


def test_prediction_at_the_profiled_size_is_the_profiled_run(runs):
    enc, rec = runs
    for manifest in runs:
        prof = job_profile(manifest, workers=1, start_s=0.0, idle_rss_mb=100.0)
        same = predict_job(prof, prof["n_items"], prof.get("n_users"))
        assert same["wall_s"] == pytest.approx(prof["wall_s"])
        assert same["peak_rss_mb_per_worker"] == pytest.approx(prof["peak_rss_mb"])
        bigger = predict_job(prof, prof["n_items"] * 10, prof.get("n_users"))
        assert bigger["wall_s"] > same["wall_s"]


def _encode_profile(**over):
    p = {"job": "encode", "workers": 2, "start_s": 2.0, "load_s": 1.0, "wall_s": 0.0, "partitions": 2,
         "idle_rss_mb": 150.0, "peak_rss_mb": 400.0, "rss_after_load_mb": 300.0, "n_items": 2000,
         "partition_rows": 1000, "rows_per_partition": 1000.0, "task_s_per_item": 1e-3, "overhead_s": 0.5}
    return p | over


def test_encode_law_by_hand():
    pred = predict_job(_encode_profile(), 10_000)
    # 10 partitions over 2 workers = 5 rounds of 1000 items x 1 ms, + start 2 + load 1 + overhead 0.5
    assert pred["wall_s"] == pytest.approx(2 + 1 + 5 * 1.0 + 0.5)
    assert pred["peak_rss_mb_per_worker"] == pytest.approx(400.0)  # partition-bound, not catalogue-bound
    small = predict_job(_encode_profile(), 500)  # one partition of 500 rows: half the working set
    assert small["peak_rss_mb_per_worker"] == pytest.approx(300 + 100 * 0.5)
    odd = predict_job(_encode_profile(), 5000)  # 5 partitions -> 3 rounds on 2 workers
    assert odd["wall_s"] == pytest.approx(2 + 1 + 3 * 1.0 + 0.5)


def test_recommend_all_law_by_hand():
    prof = {"job": "recommend-all", "workers": 2, "start_s": 2.0, "load_s": 4.0, "wall_s": 0.0, "partitions": 2,
            "idle_rss_mb": 150.0, "peak_rss_mb": 700.0, "items_mb": 400.0, "n_items": 100_000, "n_users": 20_000,
            "partition_users": 10_000, "users_per_partition": 10_000.0, "scan_s_per_user_item": 1e-8,
            "other_s_per_user": 1e-4, "overhead_s": 1.0}
    pred = predict_job(prof, 1_000_000, 100_000)
    per_part = 10_000 * (1e-8 * 1_000_000 + 1e-4)  # 101 s
    assert pred["wall_s"] == pytest.approx(2 + 4 * 10 + 5 * per_part + 1.0)
    assert pred["peak_rss_mb_per_worker"] == pytest.approx(700 + 400 * 9)
    assert pred["n_users"] == 100_000


def test_bad_profiles_are_refused(runs):
    enc, _ = runs
    with pytest.raises(ValueError, match="no task measurements"):
        job_profile({**enc, "last_run": {"wall_s": 1.0, "tasks": []}}, workers=1, start_s=0, idle_rss_mb=1)
    with pytest.raises(ValueError, match="not a leanrec.scale job manifest"):
        job_profile({**enc, "kind": "other"}, workers=1, start_s=0, idle_rss_mb=1)
    with pytest.raises(ValueError, match="job must be one of"):
        predict_job({"job": "train"}, 10)
    with pytest.raises(ValueError, match="n_items must be >= 1"):
        predict_job(_encode_profile(), 0)


def test_cli_batch_plan_reads_a_finished_run(runs, tmp_path):
    from typer.testing import CliRunner

    from leanrec.cli import app
    from leanrec.scale.common import write_manifest

    enc, _ = runs
    write_manifest(tmp_path, enc)
    result = CliRunner().invoke(app, ["batch", "plan", str(tmp_path), "--items", "5000"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "encode at 5,000 items on 1 worker(s), from the run at 500 items" in said
    assert "wall time" in said and "peak RSS" in said
    bad = CliRunner().invoke(app, ["batch", "plan", str(tmp_path / "none"), "--items", "5000"])
    assert bad.exit_code == 2 and "noneholdsno" in bad.output.replace("│", "").replace("\n", "").replace(" ", "")
