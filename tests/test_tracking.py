"""Experiment tracking: what a run writes, read back with TensorBoard's and MLflow's own readers."""

from __future__ import annotations

import pytest

from leanrec.core.tracking import MLflowTracker, NullTracker, TensorBoardTracker, make_tracker

EPOCHS = [{"epoch": 0, "valid_ndcg@10": 0.01, "seconds": 0.0},
          {"epoch": 1, "train_loss": 7.2, "valid_ndcg@10": 0.04, "seconds": 1.5, "cpu_seconds": 2.9},
          {"epoch": 2, "train_loss": 6.8, "valid_ndcg@10": float("nan"), "seconds": 3.0, "cpu_seconds": 5.8}]


def test_make_tracker_parses_the_option_and_refuses_the_rest():
    assert isinstance(make_tracker(None), NullTracker) and isinstance(make_tracker(""), NullTracker)
    for bad in ("tensorboard", "wandb:x", "mlflow:", "tensorboard:"):
        with pytest.raises(ValueError, match="tensorboard:FOLDER"):
            make_tracker(bad)


def test_tensorboard_event_files_hold_the_curve_and_the_final_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with make_tracker(f"tensorboard:{tmp_path}") as tracker:
        assert isinstance(tracker, TensorBoardTracker)
        tracker.start_run("warm/sasrec id", {"dim": 64, "lr": 0.001})
        log = tracker.epoch_logger("warm/sasrec id")
        for record in EPOCHS:
            log(record)
        tracker.log_final("warm/sasrec id", {"ndcg@10": 0.105, "n_users": 943, "flag": True}, prefix="test/")
    run = tmp_path / "warm_sasrec_id"
    acc = EventAccumulator(str(run)).Reload()
    curve = [(e.step, round(e.value, 6)) for e in acc.Scalars("train/valid_ndcg@10")]
    assert curve == [(0, 0.01), (1, 0.04)]  # the NaN epoch is not plotted
    assert [e.step for e in acc.Scalars("train/train_loss")] == [1, 2]
    assert acc.Scalars("test/ndcg@10")[0].value == pytest.approx(0.105)
    assert "test/flag" not in acc.Tags()["scalars"]


def test_mlflow_store_holds_params_steps_and_final_metrics(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    with make_tracker(f"mlflow:{tmp_path / 'mlruns'}") as tracker:
        assert isinstance(tracker, MLflowTracker)
        tracker.start_run("warm/sasrec-id", {"dim": 64})
        for record in EPOCHS:
            tracker.log_epoch("warm/sasrec-id", record)
        tracker.log_final("warm/sasrec-id", {"ndcg@10": 0.105}, prefix="test/")
    client = MlflowClient(tracking_uri=f"sqlite:///{(tmp_path / 'mlruns').resolve() / 'mlflow.db'}")
    exp = client.get_experiment_by_name("leanrec")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "warm_sasrec-id" and run.info.status == "FINISHED"
    assert run.data.params == {"dim": "64"}
    assert run.data.metrics["test/ndcg_at_10"] == pytest.approx(0.105)
    history = client.get_metric_history(run.info.run_id, "train/valid_ndcg_at_10")
    assert sorted((m.step, round(m.value, 6)) for m in history) == [(0, 0.01), (1, 0.04)]
