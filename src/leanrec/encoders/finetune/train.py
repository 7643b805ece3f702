"""The fine-tune's training loop: early stopping, time budget, checkpoint and resume.

The method, and what it measured, is in :mod:`leanrec.encoders.finetune`. The loop scores
every epoch on a validation it is *given* (``validation``): judging an encoder by what it
recommends needs users and a full-ranking evaluation, which live above the encoders
(:class:`leanrec.eval.validation.ValidationSet` is the one leanrec uses, wired in by
:func:`leanrec.eval.finetune.finetune_encoder`).

Deterministic for a seed and thread count (torch's CPU kernels are deterministic on a
fixed number of threads). The library never prints; ``progress`` gets dicts.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from leanrec.encoders.finetune.folder import (
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    FINETUNE_VERSION,
    RECORD_FILENAME,
    clone_state,
    data_key,
    publish,
    read_checkpoint,
    write_checkpoint,
)
from leanrec.encoders.finetune.loss import SCALE, batch_loss, check_training_precision
from leanrec.encoders.finetune.model import encode_items, load_trainable
from leanrec.encoders.finetune.pairs import epoch_batches, epoch_rng, mine_pairs, sampling_log_q

__all__ = ["ONNX_INT8_SCHEME", "Progress", "Validation", "ValidationFactory", "check_float", "check_int",
           "train_encoder"]

#: Share of the nominal number of steps spent warming the learning rate up.
WARMUP = 0.1
#: The int8 scheme (:data:`~leanrec.encoders.onnx_quantize.INT8_SCHEMES`) a fine-tuned folder
#: asks its ONNX int8 exports to use (its ``leanrec_export.json``). Measured on the ML-100K
#: fine-tunes (``benchmarks/results/finetune_encoder.md``): s8 keeps 0.996 of the torch
#: model's NDCG@10 over each user's last 10 events (95% interval from 0.982) on both
#: protocols and is the fastest and smallest; the other schemes move vectors closer to
#: torch but gave no measurable NDCG@10.
ONNX_INT8_SCHEME = "s8"
#: Settings that may differ between a checkpoint and the run resuming it.
_RESUMABLE_CHANGES = ("time_budget_s", "threads")

# The clock the time budget reads; a module attribute so tests can make it deterministic.
_now = time.perf_counter

Progress = Callable[[dict], None]


class Validation(Protocol):
    """What the training loop needs of its validation."""

    #: the data set the training pairs are mined from (the validation targets are not in it)
    train: Any

    def ndcg(self, item_vectors: np.ndarray) -> float:
        """The score of item vectors (``float32[n_items, d]``, unit rows): higher is better."""

    def describe(self) -> dict:
        """What the training record says of the validation (protocol, sizes)."""


#: Builds the validation of a data set: ``validation(dataset, half_life)``, ``half_life``
#: being that of the user vectors it scores with (events; None = plain mean).
ValidationFactory = Callable[[Any, "float | None"], Validation]


def train_encoder(dataset, out_dir: str | os.PathLike[str], *, validation: ValidationFactory,
                  model: str = "minilm", time_budget_s: float = 1200.0, max_epochs: int = 6,
                  pairs_per_epoch: int = 2048, batch_size: int = 64, lr: float = 5e-4, weight_decay: float = 0.01,
                  window: int = 3, half_life: float | None = 8.0, patience: int = 2, layers: int | None = None,
                  train_embeddings: bool = False, symmetric: bool = True, logq_correction: bool = True,
                  onnx_int8_scheme: str | None = ONNX_INT8_SCHEME, seed: int = 42,
                  threads: int | None = 1, precision: str = "fp32", resume: bool = False,
                  progress: Progress | None = None) -> Path:
    """Fine-tune ``model`` on item pairs mined from ``dataset``; save the best epoch at ``out_dir``.

    See :mod:`leanrec.encoders.finetune` for the method. ``validation(dataset,
    half_life)`` builds the validation (:class:`Validation`): the pairs are mined from its
    ``.train``, and after every epoch (and for the frozen model, epoch 0) every item text is
    encoded and scored with its ``.ndcg``. Options: ``pairs_per_epoch`` pairs (drawn from
    the mined pool per epoch) in batches of ``batch_size`` pairs; AdamW with ``lr`` (linear
    warm-up over the first 10% of the ``max_epochs`` steps, then linear decay) and
    ``weight_decay``; ``window`` for :func:`~leanrec.encoders.finetune.pairs.mine_pairs`;
    ``half_life`` (given to ``validation``) of the validation's user vectors (events; None =
    plain mean); ``layers``: keep only the first N transformer
    layers (a cheaper model, e.g. for tests); ``train_embeddings``: also train the token
    embedding table (off: cheaper steps, and tokens of items never seen in training keep
    their pretrained vectors); ``symmetric``: the loss in both directions;
    ``logq_correction``: the sampling-bias correction (:mod:`leanrec.encoders.finetune`);
    ``onnx_int8_scheme``: written to the folder's ``leanrec_export.json`` so that
    ``load_encoder(folder, backend="onnx", precision="int8")`` quantises it that way
    (None: no hint, the export's default);
    ``precision="bf16"``: bf16 autocast around the forward pass (weights and optimizer
    stay fp32); ``threads``: ``torch.set_num_threads`` (process-wide; None leaves it).

    ``out_dir`` must not exist or be empty, unless ``resume=True``: then a checkpoint in
    it is continued (its settings must match these, except ``time_budget_s`` and
    ``threads``), and training starts afresh when there is none. ``time_budget_s`` counts
    the whole training (validations included) across resumed runs.

    ``progress`` gets dicts: ``{"event": "epoch_start", "epoch", "steps", "max_epochs"}``,
    ``{"event": "step", "epoch", "step", "steps", "loss", "seconds"}`` after every batch,
    ``{"event": "validate", "epoch"}`` before and ``{"event": "epoch", **record}`` after each
    validation (the record has epoch, train_loss, valid_ndcg10, seconds; epoch 0 = the
    frozen model). Exceptions it raises propagate (the last checkpoint stays usable).

    Returns ``out_dir`` as a ``Path``: a sentence-transformers folder with
    ``leanrec_finetune.json``.
    """
    import torch

    from leanrec.encoders.onnx_quantize import EXPORT_HINTS_FILENAME, INT8_SCHEMES
    from leanrec.encoders.resolve import resolve_model, weights_fingerprint
    from leanrec.encoders.sbert_load import check_layers, quiet_transformers, transformer_num_layers

    precision = check_training_precision(precision)
    time_budget_s = check_float("time_budget_s", time_budget_s)
    max_epochs = check_int("max_epochs", max_epochs, 1)
    pairs_per_epoch = check_int("pairs_per_epoch", pairs_per_epoch, 2)
    batch_size = check_int("batch_size", batch_size, 2)
    lr = check_float("lr", lr)
    weight_decay = check_float("weight_decay", weight_decay, positive=False)
    window = check_int("window", window, 1)
    patience = check_int("patience", patience, 1)
    seed = check_int("seed", seed, 0)
    if half_life is not None:
        half_life = check_float("half_life", half_life)
    if threads is not None:
        threads = check_int("threads", threads, 1)
    if onnx_int8_scheme is not None and onnx_int8_scheme not in INT8_SCHEMES:
        raise ValueError(f"onnx_int8_scheme must be None or one of {', '.join(map(repr, INT8_SCHEMES))}, "
                         f"got {onnx_int8_scheme!r}")
    resolved = resolve_model(model)
    layers = check_layers(layers, transformer_num_layers(resolved))
    out = Path(out_dir).expanduser()
    ckpt_dir = out / CHECKPOINT_DIR
    ckpt = None
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if resume:
        ckpt = read_checkpoint(ckpt_dir)
        if ckpt is None and out.exists() and any(out.iterdir()):
            done = (out / RECORD_FILENAME).is_file()
            raise FileExistsError(
                f"{out} holds {'a finished fine-tune' if done else 'files but no checkpoint'}: nothing to resume; "
                "delete it or choose another folder")
    elif out.exists() and any(out.iterdir()):
        hint = " (it holds a checkpoint: pass resume=True to continue it)" if (ckpt_dir / CHECKPOINT_FILE).is_file() \
            else ""
        raise FileExistsError(f"{out} exists and is not empty{hint}")

    texts = list(dataset.items.texts)
    valid = validation(dataset, half_life)
    pool = mine_pairs(valid.train, window)
    if len(pool) < 2:
        raise ValueError(f"only {len(pool)} item pair(s) mined from the data set (window={window}): too few to train")
    if not any(len(b) >= 2 for b in epoch_batches(pool, 1, pairs_per_epoch=pairs_per_epoch, batch_size=batch_size,
                                                  seed=seed)):
        raise ValueError("no batch of two or more pairs without a repeated item: the data set is too small")
    log_q = sampling_log_q(pool, dataset.n_items) if logq_correction else None
    fingerprint = weights_fingerprint(resolved.path)
    config = {
        "finetune_version": FINETUNE_VERSION, "base_model": resolved.name, "base_fingerprint": fingerprint,
        "data_key": data_key(dataset), "time_budget_s": time_budget_s, "max_epochs": max_epochs,
        "pairs_per_epoch": pairs_per_epoch, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "window": window, "half_life": half_life, "patience": patience, "layers": layers,
        "train_embeddings": bool(train_embeddings), "symmetric": bool(symmetric),
        "logq_correction": bool(logq_correction), "onnx_int8_scheme": onnx_int8_scheme, "seed": seed,
        "threads": threads, "precision": precision, "scale": SCALE, "warmup": WARMUP,
    }
    if ckpt is not None:
        old = dict(ckpt["config"])
        diff = sorted(k for k in set(old) | set(config) if k not in _RESUMABLE_CHANGES and old.get(k) != config.get(k))
        if diff:
            raise ValueError("the checkpoint in " f"{ckpt_dir} was made with other settings: "
                             + ", ".join(f"{k}={old.get(k)!r} (now {config.get(k)!r})" for k in diff))

    if threads:
        torch.set_num_threads(threads)
    wall0, cpu0 = _now(), time.process_time()
    prior_wall = float(ckpt["train_s"]) if ckpt else 0.0
    prior_cpu = float(ckpt["cpu_s"]) if ckpt else 0.0

    def elapsed() -> float:
        return prior_wall + (_now() - wall0)

    def emit(event: dict) -> None:
        if progress:
            progress(event)

    st = load_trainable(resolved, layers, train_embeddings=train_embeddings)
    params = [p for p in st.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    nominal_steps = max_epochs * max(1, math.ceil(min(pairs_per_epoch, len(pool)) / batch_size))

    if ckpt is not None:
        st.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        epoch, step, global_step = int(ckpt["epoch"]), int(ckpt["step"]), int(ckpt["global_step"])
        epoch_losses = list(ckpt["epoch_losses"])
        history = list(ckpt["history"])
        best_score, best_epoch, bad_epochs = float(ckpt["best_score"]), int(ckpt["best_epoch"]), int(ckpt["bad_epochs"])
        best_state = ckpt["best_state"]
        rng_state = ckpt["torch_rng"]
        resumes = int(ckpt["resumes"]) + 1
        stopped = ckpt.get("stopped") or None
        if stopped == "time_budget":
            stopped = None  # a larger budget may go on
    else:
        emit({"event": "validate", "epoch": 0})
        score = valid.ndcg(encode_items(st, texts))
        history = [{"epoch": 0, "train_loss": None, "valid_ndcg10": score, "steps": 0, "seconds": elapsed()}]
        emit({"event": "epoch", **history[0]})
        best_score, best_epoch, bad_epochs = score, 0, 0
        best_state = clone_state(st)
        epoch, step, global_step, epoch_losses, rng_state = 1, 0, 0, [], None
        resumes, stopped = 0, None

    def state(**extra) -> dict:
        return {"config": config, "epoch": epoch, "step": step, "global_step": global_step,
                "epoch_losses": list(epoch_losses), "history": list(history), "best_score": best_score,
                "best_epoch": best_epoch, "bad_epochs": bad_epochs, "best_state": best_state,
                "model": st.state_dict(), "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                "train_s": elapsed(), "cpu_s": prior_cpu + time.process_time() - cpu0, "resumes": resumes,
                "stopped": extra.get("stopped", "")}

    partial = None
    while stopped is None and epoch <= max_epochs:
        batches = epoch_batches(pool, epoch, pairs_per_epoch=pairs_per_epoch, batch_size=batch_size, seed=seed)
        if step == 0:
            torch.manual_seed(int(epoch_rng(seed, epoch).integers(2**62)))  # dropout draws of this epoch
        else:
            torch.set_rng_state(rng_state)
        emit({"event": "epoch_start", "epoch": epoch, "steps": len(batches), "max_epochs": max_epochs,
              "step": step})
        st.train()
        while step < len(batches):
            if elapsed() > time_budget_s:
                stopped = "time_budget"
                break
            pairs = batches[step]
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(global_step, lr, nominal_steps)
            loss = batch_loss(st, texts, pairs, precision=precision, symmetric=symmetric, log_q=log_q)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_losses.append(float(loss.detach()))
            step += 1
            global_step += 1
            emit({"event": "step", "epoch": epoch, "step": step, "steps": len(batches), "loss": epoch_losses[-1],
                  "seconds": elapsed()})
        if stopped == "time_budget":  # mid-epoch: checkpoint the training state, then judge these weights
            write_checkpoint(ckpt_dir, state(stopped="time_budget"))
            if step == 0:
                break  # nothing trained since the last validation
            emit({"event": "validate", "epoch": epoch})
            score = valid.ndcg(encode_items(st, texts))
            partial = {"epoch": epoch, "train_loss": float(np.mean(epoch_losses)), "valid_ndcg10": score,
                       "steps": step, "seconds": elapsed(), "partial": True}
            emit({"event": "epoch", **partial})
            if score > best_score:
                best_score, best_epoch, best_state = score, epoch, clone_state(st)
            break
        emit({"event": "validate", "epoch": epoch})
        score = valid.ndcg(encode_items(st, texts))
        record = {"epoch": epoch, "train_loss": float(np.mean(epoch_losses)) if epoch_losses else None,
                  "valid_ndcg10": score, "steps": step, "seconds": elapsed()}
        history.append(record)
        if score > best_score:
            best_score, best_epoch, bad_epochs, best_state = score, epoch, 0, clone_state(st)
        else:
            bad_epochs += 1
        if bad_epochs >= patience:
            stopped = "early_stop"
        elif epoch >= max_epochs:
            stopped = "max_epochs"
        elif elapsed() > time_budget_s:
            stopped = "time_budget"
        epoch, step, epoch_losses = epoch + 1, 0, []
        write_checkpoint(ckpt_dir, state(stopped=stopped or ""))
        emit({"event": "epoch", **record})
    if stopped is None:
        stopped = "max_epochs"

    st.load_state_dict(best_state)
    st.eval()
    train_s, cpu_s = elapsed(), prior_cpu + time.process_time() - cpu0
    import sentence_transformers
    import transformers

    record = {
        **config,
        "dataset": getattr(dataset, "name", None), "n_events": len(dataset.events),
        "n_items": int(dataset.n_items), "n_pairs_mined": len(pool),
        "validation": valid.describe(),
        "history": history + ([partial] if partial else []),
        "best_epoch": best_epoch, "best_valid_ndcg10": best_score, "frozen_valid_ndcg10": history[0]["valid_ndcg10"],
        "stopped": stopped, "train_s": train_s, "cpu_s": cpu_s, "resumes": resumes,
        "checkpoint_kept": stopped == "time_budget",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentence-transformers": sentence_transformers.__version__},
    }
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        with quiet_transformers():  # transformers' "Writing model shards" bar: the library never prints
            st.save(str(tmp))
        (tmp / RECORD_FILENAME).write_text(json.dumps(record, indent=1))
        if onnx_int8_scheme is not None:
            (tmp / EXPORT_HINTS_FILENAME).write_text(json.dumps({"int8_scheme": onnx_int8_scheme}))
        if stopped == "time_budget" and (ckpt_dir / CHECKPOINT_FILE).is_file():
            (tmp / CHECKPOINT_DIR).mkdir()
            os.replace(ckpt_dir / CHECKPOINT_FILE, tmp / CHECKPOINT_DIR / CHECKPOINT_FILE)
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _lr_at(step: int, base_lr: float, total: int) -> float:
    """Linear warm-up over the first WARMUP share of ``total`` steps, then linear decay to 0."""
    warm = max(1, int(WARMUP * total))
    if step < warm:
        return base_lr * (step + 1) / warm
    return base_lr * max(0.0, (total - step) / max(1, total - warm))


def check_int(name: str, value: object, low: int) -> int:
    """``value`` as an int if it is an integer >= ``low`` (not a bool), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_float(name: str, value: object, *, positive: bool = True) -> float:
    """``value`` as a float if it is a finite number (> 0 with ``positive``), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
        math.isfinite(float(value)) and (float(value) > 0 if positive else True)
    ):
        raise ValueError(f"{name} must be a finite number{' > 0' if positive else ''}, got {value!r}")
    return float(value)
