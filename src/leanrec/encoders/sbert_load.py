"""Load a local sentence-transformer offline and silently, and prune its layers.

Why this module exists: the torch encoder (:mod:`leanrec.encoders.sbert`), the ONNX
export, the static and layer distillations and the fine-tune all load the same local
model the same way, and the ``layers`` option must mean the same blocks everywhere (so
that, e.g., a pruned ONNX graph is exactly the pruned torch model). These helpers are
that one way. They import torch and sentence-transformers only when called, and never
scikit-learn, so checking ``layers`` against a model's depth stays cheap.

Loading passes ``local_files_only=True`` and sets ``HF_HUB_OFFLINE=1`` (unless the caller
already set it) as a second guard against a download or a hang on an unreachable hub.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from leanrec.encoders.resolve import ResolvedModel

__all__ = [
    "check_layers",
    "layer_list",
    "load_sentence_transformer",
    "prune_layers",
    "quiet_transformers",
    "transformer_num_layers",
]


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers while loading: the library never prints.

    Covers the "Loading weights" tqdm bar and the "LOAD REPORT" table that transformers 5
    logs as a warning (for MiniLM it only says the unused ``position_ids`` buffer was
    skipped). Both switches are process-global, so the previous state is restored.
    """
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - sentence-transformers depends on transformers
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if was_enabled:
            hf_logging.enable_progress_bar()


def _transformer_folder(resolved: ResolvedModel) -> Path:
    """Folder of the Transformer module (``""`` for MiniLM, ``0_Transformer`` in older layouts)."""
    try:
        modules = json.loads((resolved.path / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return resolved.path
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith(".Transformer"):
            return resolved.path / str(module.get("path", ""))
    return resolved.path


def transformer_num_layers(resolved: ResolvedModel) -> int | None:
    """Depth of the model from its ``config.json`` (no loading), or None if not stated there."""
    try:
        config = json.loads((_transformer_folder(resolved) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        value = config.get(key) if isinstance(config, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_layers(layers: object, available: int | None) -> int | None:
    """Validate ``layers`` (None or 1 <= N <= available); return None when N is the full depth.

    Keeping every layer is the unpruned model, so it maps to None: same vectors, same
    ``model_id``, same embedding-cache entries.
    """
    if layers is None:
        return None
    if isinstance(layers, bool) or not isinstance(layers, (int, np.integer)):
        raise ValueError(f"layers must be a positive integer or None, got {layers!r}")
    n = int(layers)
    if n < 1 or (available is not None and n > available):
        bound = f"{available}" if available is not None else "the model's depth"
        raise ValueError(f"layers must be between 1 and {bound} (the model's number of layers), got {n}")
    return None if n == available else n


def layer_list(auto_model: Any) -> Any:
    """The ``ModuleList`` of transformer blocks in a BERT-family model."""
    for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
        obj = auto_model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "__len__") and hasattr(obj, "__getitem__"):
            return path, obj
    raise ValueError(
        f"cannot prune layers of a {type(auto_model).__name__}: no encoder.layer / transformer.layer "
        "list found (layer pruning supports BERT-family models)"
    )


def prune_layers(st_model: Any, layers: int) -> Any:
    """Keep only the first ``layers`` transformer blocks of a loaded ``SentenceTransformer``.

    Drops the later blocks in place (the embedding layer and pooling are kept) and updates
    the config so that anything sized from ``num_hidden_layers`` agrees. Returns the model.
    """
    import torch

    auto_model = st_model[0].auto_model
    path, blocks = layer_list(auto_model)
    if not 1 <= layers <= len(blocks):
        raise ValueError(f"layers must be between 1 and {len(blocks)} (the model's number of layers), got {layers}")
    parent = auto_model
    *head, last = path.split(".")
    for part in head:
        parent = getattr(parent, part)
    setattr(parent, last, torch.nn.ModuleList(list(blocks)[:layers]))
    config = auto_model.config
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        if hasattr(config, key):
            setattr(config, key, int(layers))
    return st_model


def load_sentence_transformer(
    resolved: ResolvedModel, *, device: str = "cpu", attn_implementation: str | None = None
) -> Any:
    """Load a local model with sentence-transformers, offline and silently.

    ``attn_implementation="eager"`` is what the ONNX export needs (see
    :mod:`leanrec.encoders.onnx_export`); ``None`` keeps the transformers default (SDPA).
    """
    # Belt and braces: local_files_only already keeps the load local, but some code
    # paths (tokenizer extras, model cards) consult the hub flag directly.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    kwargs: dict[str, Any] = {}
    if attn_implementation is not None:
        kwargs["model_kwargs"] = {"attn_implementation": attn_implementation}
    with quiet_transformers():
        st_model = SentenceTransformer(str(resolved.path), device=device, local_files_only=True, **kwargs)
    st_model.eval()
    return st_model
