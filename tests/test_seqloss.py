"""The next-item losses: the full softmax as the training loop computed it, the sampled one
against it (equal when the sample is the catalogue), logQ by hand, masks, determinism."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from leanrec.models.seqloss import (
    full_cross_entropy,
    logq_correction,
    sample_negatives,
    sampled_cross_entropy,
    sampling_probs,
    seen_mask,
)

N_ITEMS, DIM = 40, 8


def _batch(seed=0, windows=3, per_window=4):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(N_ITEMS, DIM, generator=g, dtype=torch.float64)
    states = torch.randn(windows * per_window, DIM, generator=g, dtype=torch.float64)
    targets = torch.randint(0, N_ITEMS, (windows * per_window,), generator=g)
    seen = [torch.randint(0, N_ITEMS, (6,), generator=g).numpy() for _ in range(windows)]
    rows = torch.arange(windows).repeat_interleave(per_window)
    return states, table, targets, seen, rows


def _dense(seen):
    mask = torch.zeros(len(seen), N_ITEMS, dtype=torch.bool)
    for r, s in enumerate(seen):
        mask[r, torch.from_numpy(s)] = True
    return mask


def _train_formula(states, table, targets, seen, rows):
    """SequentialRecommender._train's loss as it was written before seqloss existed."""
    logits = (states @ table.T).float()
    mask = _dense(seen)[rows]
    mask[torch.arange(len(targets)), targets] = False
    return F.cross_entropy(logits.masked_fill(mask, float("-inf")), targets)


def test_full_is_the_training_loops_formula():
    states, table, targets, seen, rows = _batch()
    expected = _train_formula(states, table, targets, seen, rows)
    assert torch.allclose(full_cross_entropy(states, table, targets, _dense(seen), mask_rows=rows), expected)
    assert torch.allclose(full_cross_entropy(states, table, targets, seen_mask(seen, N_ITEMS), mask_rows=rows),
                          expected)
    plain = F.cross_entropy((states @ table.T).float(), targets)
    assert torch.allclose(full_cross_entropy(states, table, targets), plain)
    assert not torch.allclose(plain, expected)  # the mask matters in this batch


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("logq", [True, False])
def test_sampled_equals_full_when_the_sample_is_the_catalogue(masked, logq):
    states, table, targets, seen, rows = _batch(seed=1)
    every_item_once = torch.randperm(N_ITEMS, generator=torch.Generator().manual_seed(5))
    uniform = torch.full((N_ITEMS,), 1.0 / N_ITEMS)
    kw = {"mask": seen_mask(seen, N_ITEMS), "mask_rows": rows} if masked else {}
    grads = []
    for loss_fn in (lambda s, t: full_cross_entropy(s, t, targets, **kw),
                    lambda s, t: sampled_cross_entropy(s, t, targets, uniform, negatives=every_item_once,
                                                       logq=logq, **kw)):
        s, t = states.clone().requires_grad_(), table.clone().requires_grad_()
        loss = loss_fn(s, t)
        loss.backward()
        grads.append((loss.detach(), s.grad, t.grad))
    (lf, sf, tf), (ls, ss, ts) = grads
    assert torch.allclose(lf, ls, rtol=1e-5, atol=1e-6)
    assert torch.allclose(sf, ss, rtol=1e-5, atol=1e-6) and torch.allclose(tf, ts, rtol=1e-5, atol=1e-6)


def test_non_uniform_correction_breaks_the_equivalence():
    states, table, targets, _, _ = _batch(seed=2)
    q = sampling_probs(np.arange(N_ITEMS) * 3.0, alpha=1.0)
    every = torch.arange(N_ITEMS)
    full = full_cross_entropy(states, table, targets)
    assert torch.allclose(sampled_cross_entropy(states, table, targets, q, negatives=every, logq=False), full)
    assert not torch.allclose(sampled_cross_entropy(states, table, targets, q, negatives=every), full)


def _tiny():
    table = torch.tensor([[1.0], [2.0], [0.0]])
    states = torch.tensor([[1.0]])
    return states, table, torch.tensor([0]), torch.tensor([0.5, 0.25, 0.25])


def test_logq_by_hand():
    # logits o = (1, 2, 0); K = 3 negatives (1, 2, 1); K q = (1.5, 0.75, 0.75)
    # corrected: target 1 - ln 1.5, negatives 2 - ln .75, 0 - ln .75, 2 - ln .75
    # loss = ln(e/1.5 + 2 e^2/.75 + 1/.75) - (1 - ln 1.5) = ln(22.849671 / 1.812188) = 2.534402
    states, table, target, q = _tiny()
    negatives = torch.tensor([1, 2, 1])
    loss = sampled_cross_entropy(states, table, target, q, negatives=negatives)
    assert loss.item() == pytest.approx(2.534402, abs=1e-5)
    closed = math.log(math.e / 1.5 + 2 * math.e ** 2 / 0.75 + 1 / 0.75) - (1 - math.log(1.5))
    assert loss.item() == pytest.approx(closed, rel=1e-6)
    # without the correction: ln(e + 2 e^2 + 1) - 1
    plain = sampled_cross_entropy(states, table, target, q, negatives=negatives, logq=False)
    assert plain.item() == pytest.approx(1.917576, abs=1e-5)
    assert logq_correction(q, 3).tolist() == pytest.approx([-math.log(1.5), -math.log(0.75), -math.log(0.75)])


def test_constant_factors_cancel():
    """Scaling q shifts every candidate's corrected logit alike (as K does): the loss is unchanged."""
    states, table, targets, _, _ = _batch(seed=3)
    q = sampling_probs(np.arange(N_ITEMS) % 7, alpha=0.75)
    neg = sample_negatives(q, 25, torch.Generator().manual_seed(0))
    base = sampled_cross_entropy(states, table, targets, q, negatives=neg)
    assert torch.allclose(sampled_cross_entropy(states, table, targets, q * 7.0, negatives=neg), base)
    shift = logq_correction(q, 50) - logq_correction(q, 25)
    assert torch.allclose(shift, torch.full_like(shift, -math.log(2)))


def test_accidental_hits_and_seen_items_are_masked():
    states, table, target, q = _tiny()
    uniform = torch.full((3,), 1 / 3)
    # negative 0 is the target itself: only item 1 competes -> ln(1 + e)
    hit = sampled_cross_entropy(states, table, target, uniform, negatives=torch.tensor([0, 1]), logq=False)
    assert hit.item() == pytest.approx(math.log(1 + math.e), abs=1e-6)
    # item 1 seen: only item 2 (logit 0) competes -> ln(1 + e^-1); dense and sparse masks agree
    dense = torch.tensor([[False, True, False]])
    for mask in (dense, seen_mask([np.array([1])], 3)):
        loss = sampled_cross_entropy(states, table, target, q, negatives=torch.tensor([1, 2, 1]), mask=mask,
                                     logq=False)
        assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # a mask never excludes the row's own target
    own = torch.tensor([[True, False, False]])
    assert torch.allclose(full_cross_entropy(states, table, target, own), full_cross_entropy(states, table, target))


def test_sparse_and_dense_masks_agree_with_repeated_negatives():
    states, table, targets, seen, rows = _batch(seed=4)
    q = sampling_probs(np.arange(N_ITEMS), alpha=1.0)
    neg = sample_negatives(q, 60, torch.Generator().manual_seed(1))
    assert len(torch.unique(neg)) < len(neg)  # repeats, so the column lookup is exercised
    a = sampled_cross_entropy(states, table, targets, q, negatives=neg, mask=_dense(seen), mask_rows=rows)
    b = sampled_cross_entropy(states, table, targets, q, negatives=neg, mask=seen_mask(seen, N_ITEMS), mask_rows=rows)
    assert torch.allclose(a, b)
    assert torch.equal(seen_mask(seen, N_ITEMS).to_dense(), _dense(seen))
    # a caller's own sparse tensor, uncoalesced, with a duplicate pair
    r = np.concatenate([np.full(len(s), k) for k, s in enumerate(seen)] + [[0]])
    i = np.concatenate(list(seen) + [seen[0][:1]])
    raw = torch.sparse_coo_tensor(torch.from_numpy(np.stack([r, i])), torch.ones(len(i), dtype=torch.bool),
                                  (len(seen), N_ITEMS), check_invariants=True)
    c = sampled_cross_entropy(states, table, targets, q, negatives=neg, mask=raw, mask_rows=rows)
    assert torch.allclose(a, c)


def test_generator_makes_it_deterministic_and_gradient_sparse():
    states, table, targets, _, _ = _batch(seed=5)
    q = sampling_probs(np.ones(N_ITEMS), alpha=0.0)
    one = sampled_cross_entropy(states, table, targets, q, 8, generator=torch.Generator().manual_seed(7))
    two = sampled_cross_entropy(states, table, targets, q, 8, generator=torch.Generator().manual_seed(7))
    other = sampled_cross_entropy(states, table, targets, q, 8, generator=torch.Generator().manual_seed(8))
    assert torch.equal(one, two) and not torch.equal(one, other)
    t = table.clone().requires_grad_()
    neg = sample_negatives(q, 8, torch.Generator().manual_seed(7))
    sampled_cross_entropy(states, t, targets, q, negatives=neg).backward()
    touched = torch.zeros(N_ITEMS, dtype=torch.bool)
    touched[targets] = True
    touched[neg] = True
    assert (t.grad[~touched] == 0).all() and (t.grad[touched].abs().sum(1) > 0).any()


def test_sampling_probs():
    q = sampling_probs([0, 1, 3], alpha=1.0)
    assert q.tolist() == pytest.approx([1 / 7, 2 / 7, 4 / 7])
    assert sampling_probs([0, 1, 3], alpha=0.0).tolist() == pytest.approx([1 / 3] * 3)
    with pytest.raises(ValueError, match="counts"):
        sampling_probs([-1, 2])
    with pytest.raises(ValueError, match="alpha"):
        sampling_probs([1, 2], alpha=-1)


def test_bad_inputs_name_the_field():
    states, table, target, q = _tiny()
    with pytest.raises(ValueError, match="exactly one"):
        sampled_cross_entropy(states, table, target, q)
    with pytest.raises(ValueError, match="exactly one"):
        sampled_cross_entropy(states, table, target, q, 2, negatives=torch.tensor([1]))
    with pytest.raises(ValueError, match="q must be finite and > 0"):
        sampled_cross_entropy(states, table, target, torch.tensor([0.5, 0.5, 0.0]), 2)
    with pytest.raises(ValueError, match="num_negatives"):
        sampled_cross_entropy(states, table, target, q, 0)
    with pytest.raises(ValueError, match="negatives must be"):
        sampled_cross_entropy(states, table, target, q, negatives=torch.tensor([3]))
    with pytest.raises(ValueError, match="targets must be item positions"):
        full_cross_entropy(states, table, torch.tensor([3]))
    with pytest.raises(ValueError, match="share the dimension"):
        full_cross_entropy(torch.ones(1, 2), table, target)
    with pytest.raises(ValueError, match="mask has 2 rows"):
        full_cross_entropy(states, table, target, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask_rows"):
        full_cross_entropy(states, table, target, torch.zeros(2, 3, dtype=torch.bool), mask_rows=torch.tensor([2]))
    with pytest.raises(ValueError, match="seen item positions"):
        seen_mask([np.array([5])], 3)
