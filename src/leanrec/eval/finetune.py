"""The encoder fine-tune with leanrec's internal validation wired in.

The training loop (:func:`leanrec.encoders.finetune.train_encoder`) and its cache
(:func:`leanrec.encoders.finetune.ensure_trained`) take the validation as an argument:
encoders know nothing of users. These two entry points give them
:class:`~leanrec.eval.validation.ValidationSet` (the warm protocol inside the data set),
which is what the CLI's ``train encoder``, the experiment's ``minilm-ft`` and the
benchmark use, and what every cached fine-tune on disk was trained with.
"""

from __future__ import annotations

import os
from pathlib import Path

from leanrec.encoders.finetune import ensure_trained, train_encoder
from leanrec.eval.validation import ValidationSet

__all__ = ["ensure_finetuned", "finetune_encoder"]


def finetune_encoder(dataset, out_dir: str | os.PathLike[str], **settings) -> Path:
    """Fine-tune on ``dataset``'s item pairs, early-stopped on :class:`ValidationSet`; save at ``out_dir``.

    ``settings`` are :func:`~leanrec.encoders.finetune.train.train_encoder`'s (``model``,
    ``time_budget_s``, ``max_epochs``, ``lr``, ``half_life``, ``seed``, ``resume``,
    ``progress``, ...). Returns ``out_dir`` as a ``Path``.
    """
    return train_encoder(dataset, out_dir, validation=ValidationSet, **settings)


def ensure_finetuned(dataset, **settings) -> Path:
    """The cached fine-tune of ``dataset`` with these settings (trained now if missing).

    ``settings`` are :func:`finetune_encoder`'s except ``out_dir`` and ``resume``; see
    :func:`~leanrec.encoders.finetune.cache.ensure_trained` for the folder and its key.
    """
    return ensure_trained(dataset, validation=ValidationSet, **settings)
