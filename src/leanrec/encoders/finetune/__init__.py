"""Contrastive fine-tuning of the sentence model on item pairs mined from interactions.

Why: a pretrained sentence model places items by what their texts *say*; users consume
items by taste. Items a user consumed close together in their history are a free signal
of "these go together", so we fine-tune the encoder to put such pairs near each other:

* **pairs** (:func:`~leanrec.encoders.finetune.pairs.mine_pairs`): for each user's events
  in (timestamp, item) order, the pairs ``(seq[t], seq[t+d])`` for ``1 <= d <= window``,
  repeat pairs of one item dropped;
* **loss**: MultipleNegativesRankingLoss (in-batch negatives: each pair's partner is the
  positive, every other pair's items are negatives), symmetric (anchor->positive and
  back), scale 20 (temperature 0.05) as in sentence-transformers, **with the
  sampling-bias ("logQ") correction**: the in-batch negatives are the other pairs' items,
  so an item turns up as a negative in proportion to its popularity Q(j), and plain MNRL
  learns a popularity-free, PMI-like similarity. Subtracting log Q(j) from item j's logit
  during training (Yi et al., RecSys 2019) makes the similarity track P(j | i) instead,
  popularity included — what the content recommender needs. Measured on ML-100K's warm
  training set (1-layer MiniLM proxy, 150 steps of 64 pairs, internal validation
  NDCG@10 from 0.018 frozen): plain MNRL 0.021 (lr 2e-4; 0.013 at 1e-3), corrected
  0.041 / 0.048 / 0.056 at lr 2e-4 / 5e-4 / 1e-3;
* **batches** never hold one item twice (a duplicate would be a false negative), built
  deterministically by :func:`~leanrec.encoders.finetune.pairs.no_duplicate_batches`;
* **internal validation** for early stopping, given to the training loop (encoders know
  nothing of users or ranking metrics): leanrec's is
  :class:`leanrec.eval.validation.ValidationSet`, the warm protocol *inside* the data set
  we are given (``make_split(dataset, "warm")``): pairs come only from ``.train_valid``;
  after every epoch (and for the frozen model, epoch 0) the current model encodes every
  item text and the content recommender's user vectors (time-decayed means,
  :func:`~leanrec.data.history.decay_weights`) rank all items for each user's last
  event (``.test``), seen items excluded, with :func:`leanrec.eval.evaluate`. The best
  epoch's weights are kept; training stops after ``patience`` epochs without
  improvement, ``max_epochs``, or when ``time_budget_s`` is spent (checked after every
  batch).

The result is a plain sentence-transformers folder plus ``leanrec_finetune.json`` (the
training record), so ``load_encoder(folder)`` and ``load_encoder(folder, backend="onnx",
precision="int8")`` take it by path.

**Checkpoints and resume.** After every epoch (and when the budget stops training mid-epoch)
``out_dir/checkpoint/state.ckpt`` is replaced atomically with everything needed to go on:
weights, optimizer state, the torch RNG state, epoch and step, history and the best
weights so far. ``resume=True`` continues from it and ends with exactly the weights of an
uninterrupted run (the per-epoch pair sample and batch order are functions of the seed
and epoch, the learning rate a function of the global step). The checkpoint is deleted
when training ends for any reason but the time budget (then it is kept, in the published
folder, so a run with a larger budget can go on).

Measured on ML-100K (``benchmarks/finetune_encoder.py``, MiniLM, one thread of a 2-core
AMD EPYC, defaults: 6 epochs of 2048 pairs, ~4.3 s per step of 64 pairs): the fine-tune
on each protocol's training set takes ~850 s wall; internal validation NDCG@10 goes from
0.0125 to 0.058 (warm training set) and 0.0132 to 0.033 (cold), and the content
recommender's NDCG@10 on the protocols' own validation targets from 0.013 to 0.039 (warm)
and 0.055 to 0.111 (cold items, never seen in training). bf16 autocast is 17x slower per
step on this CPU (no AVX512-BF16/AMX) at the same loss.

Deterministic for a seed and thread count (torch's CPU kernels are deterministic on a
fixed number of threads). The library never prints; ``progress`` gets dicts.

Modules: :mod:`.pairs` (pair mining, batches), :mod:`.loss`, :mod:`.model` (loading,
encoding), :mod:`.train` (the loop: :func:`train_encoder`), :mod:`.folder` (record,
checkpoint, data fingerprint), :mod:`.cache` (cache key, :func:`ensure_trained`). With
leanrec's validation wired in: :func:`leanrec.eval.finetune.finetune_encoder` and
:func:`leanrec.eval.finetune.ensure_finetuned`. What a fine-tuned folder costs to serve
(ONNX int8 against torch) and to train (bf16 against fp32):
:mod:`leanrec.cost.finetune_check`.
"""

from __future__ import annotations

from leanrec.encoders.finetune.cache import ensure_trained, finetune_key, finetuned_path
from leanrec.encoders.finetune.folder import CHECKPOINT_DIR, FINETUNE_VERSION, RECORD_FILENAME
from leanrec.encoders.finetune.loss import SCALE, TRAINING_PRECISIONS, mnrl_loss
from leanrec.encoders.finetune.pairs import epoch_batches, mine_pairs, no_duplicate_batches
from leanrec.encoders.finetune.train import ONNX_INT8_SCHEME, Validation, ValidationFactory, train_encoder

__all__ = [
    "CHECKPOINT_DIR",
    "FINETUNE_VERSION",
    "ONNX_INT8_SCHEME",
    "RECORD_FILENAME",
    "SCALE",
    "TRAINING_PRECISIONS",
    "Validation",
    "ValidationFactory",
    "ensure_trained",
    "epoch_batches",
    "finetune_key",
    "finetuned_path",
    "mine_pairs",
    "mnrl_loss",
    "no_duplicate_batches",
    "train_encoder",
]
