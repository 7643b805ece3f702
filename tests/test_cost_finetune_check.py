"""The cost checks of a fine-tuned encoder (:mod:`leanrec.cost.finetune_check`): the
training step at fp32 against bf16, and the bootstrap interval of the int8 / torch ratio.
(:func:`~leanrec.cost.finetune_check.compare_onnx_int8` itself runs on a fine-tuned folder,
so its test lives with the fine-tune's in ``tests/test_finetune.py``.)
"""

from __future__ import annotations

import numpy as np
import pytest

from leanrec.cost.finetune_check import _ratio_ci, time_training_steps
from leanrec.data.synth import make_dataset


@pytest.fixture(scope="module")
def ds():
    return make_dataset(n_users=100, n_items=60, events_per_user=(5, 10), seed=1)


def test_ratio_interval_is_the_bootstrap_of_per_user_sums():
    """The interval the benchmark published: 1000 resamples of users (seed 0), a user's
    targets together, ratio of sums (what the fine-tune module computed before
    :func:`leanrec.core.bootstrap.ratio_interval` became its one home)."""
    rng = np.random.default_rng(3)
    users = rng.integers(0, 40, 300)
    base = rng.random(300)
    other = base * rng.uniform(0.8, 1.1, 300)
    _, groups = np.unique(users, return_inverse=True)
    sums_base, sums_other = np.bincount(groups, weights=base), np.bincount(groups, weights=other)
    boot = np.random.default_rng(0).integers(0, len(sums_base), (1000, len(sums_base)))
    ratios = sums_other[boot].sum(1) / sums_base[boot].sum(1)
    want = [np.percentile(ratios, 2.5), np.percentile(ratios, 97.5)]
    assert _ratio_ci(other, base, users) == pytest.approx(want, rel=1e-12)


@pytest.mark.slow
def test_time_training_steps_measures_fp32_and_bf16_on_the_same_batches(ds):
    fp32 = time_training_steps(ds, precision="fp32", steps=2, batch_size=8, layers=1, seed=1)
    bf16 = time_training_steps(ds, precision="bf16", steps=2, batch_size=8, layers=1, seed=1)
    for r in (fp32, bf16):
        assert len(r["step_seconds"]) == 2 and r["median_step_s"] > 0 and np.isfinite(r["last_loss"])
    assert fp32["heldout_loss_before"] == bf16["heldout_loss_before"]  # same start, same held-out batch
    assert fp32["losses"][0] == pytest.approx(bf16["losses"][0], abs=0.1)  # same batch, reduced precision
    with pytest.raises(ValueError, match="precision"):
        time_training_steps(ds, precision="fp16")
