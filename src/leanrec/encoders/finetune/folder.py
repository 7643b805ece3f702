"""What a fine-tune leaves on disk: the record file, the checkpoint, the data fingerprint.

A fine-tuned folder is a plain sentence-transformers folder plus ``leanrec_finetune.json``
(the training record). While training, ``<folder>/checkpoint/state.ckpt`` holds everything
needed to go on; it is replaced atomically, and the finished folder is published with a
rename, so a reader never sees half of either.

These names and the data fingerprint are part of the cache key of every fine-tuned folder
already on disk (:mod:`leanrec.encoders.finetune.cache`): changing them would force a
re-train (~15 min a protocol on ML-100K) for every user.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

__all__ = ["CHECKPOINT_DIR", "CHECKPOINT_FILE", "FINETUNE_VERSION", "RECORD_FILENAME", "clone_state", "data_key",
           "publish", "read_checkpoint", "write_checkpoint"]

#: Bumped when the training procedure changes, so cached fine-tunes are rebuilt.
FINETUNE_VERSION = 1
RECORD_FILENAME = "leanrec_finetune.json"
CHECKPOINT_DIR = "checkpoint"
# ".ckpt" is not a suffix weights_fingerprint hashes, so a kept checkpoint does not change
# the folder's fingerprint (nor cost a hash of its few hundred MiB).
CHECKPOINT_FILE = "state.ckpt"


def data_key(dataset) -> str:
    """sha256 of the event log (user, item, timestamp) and the item texts."""
    h = hashlib.sha256()
    ev = dataset.events.frame
    for col in ("user_id", "item_id"):
        h.update(col.encode())
        h.update("\x1f".join(map(str, ev[col].tolist())).encode())
    h.update(np.ascontiguousarray(ev["timestamp"].to_numpy(np.float64)).tobytes())
    h.update("\x1f".join(map(str, dataset.items.ids.tolist())).encode())
    h.update("\x1e".join(dataset.items.texts).encode())
    return h.hexdigest()


def write_checkpoint(folder: Path, state: dict) -> None:
    """Replace ``folder/state.ckpt`` atomically (write a temporary file, then rename)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (CHECKPOINT_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, folder / CHECKPOINT_FILE)


def read_checkpoint(folder: Path) -> dict | None:
    """The checkpoint in ``folder``, or None when there is none."""
    import torch

    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def clone_state(module) -> dict:
    """A copy of ``module``'s weights that later training steps do not change."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def publish(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out``, replacing what training left there."""
    if out.exists():
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
