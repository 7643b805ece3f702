"""Static (distilled) embeddings: a sentence vector is the mean of per-token vectors.

The cheapest rung of the cost ladder. :func:`distill_static` runs the transformer once
over every token of its vocabulary (model2vec's distillation), optionally reduces the
vectors with PCA, and saves one ``vocab x dim`` table; :class:`StaticEncoder` then
encodes a text by tokenising it and averaging rows of that table: no matrix products,
thousands of texts per second on one core, a few MiB on disk. The price is quality:
word order and context are gone, so these vectors are *not* a drop-in for MiniLM's
(no agreement with the source model is claimed; compare them on the task).

The saved folder is model2vec's own layout (``model.safetensors``, ``tokenizer.json``,
``config.json``) plus ``leanrec_encoder.json`` (kind ``"static"``). Encoding uses
``model2vec.StaticModel``, which imports numpy, tokenizers and safetensors but not torch;
distilling needs torch and transformers (they run the source model).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from leanrec.encoders.resolve import resolve_model, weights_fingerprint
from leanrec.encoders.saved import (
    FORMAT_VERSION,
    SavedFolderEncoder,
    discard_folder,
    file_sha256,
    new_build_folder,
    package_versions,
    publish_folder,
    write_config,
)

__all__ = ["StaticEncoder", "distill_static", "static_model_id"]


def static_model_id(name: str, fingerprint: str, *, pca_dims: int | None, layers: int | None) -> str:
    """The ``model_id`` of a distilled model (the table hash is appended by :func:`distill_static`)."""
    return f"static:{name}@{fingerprint}:pca={pca_dims if pca_dims else 'none'}:L={layers if layers else 'all'}"


def distill_static(
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    pca_dims: int | None = 256,
    layers: int | None = None,
) -> Path:
    """Distill ``model`` (a known name or local folder) into a static model in ``out_dir``.

    ``pca_dims``: reduce the token vectors to this many dimensions with PCA (``None``:
    keep the model's width; must not exceed it). ``layers``: distill from the first N
    layers only, as :class:`~leanrec.encoders.sbert.SentenceTransformerEncoder` does.
    Runs offline from the local files (the loaded model and tokenizer are handed to
    ``model2vec.distill.distill_from_model``, so model2vec never looks a name up on the
    hub). Costs one forward pass per vocabulary token, once; the result is cached.

    Built in a temporary folder and renamed into place; ``out_dir`` must not exist or be
    empty. Returns ``out_dir`` as a ``Path``.
    """
    from leanrec.encoders.sbert_load import (
        check_layers,
        load_sentence_transformer,
        prune_layers,
        transformer_num_layers,
    )

    resolved = resolve_model(model)
    layers = check_layers(layers, transformer_num_layers(resolved))
    if pca_dims is not None and (isinstance(pca_dims, bool) or not isinstance(pca_dims, (int, np.integer)) or pca_dims < 1):
        raise ValueError(f"pca_dims must be a positive integer or None, got {pca_dims!r}")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not an empty folder")

    fingerprint = weights_fingerprint(resolved.path)
    st_model = load_sentence_transformer(resolved)
    if layers is not None:
        prune_layers(st_model, layers)
    width = int(st_model[0].auto_model.config.hidden_size)
    if pca_dims is not None and pca_dims > width:
        raise ValueError(f"pca_dims={pca_dims} exceeds the model's width ({width}); use None to keep it")

    from model2vec.distill import distill_from_model

    with _silent_model2vec():
        static_model = distill_from_model(
            model=st_model[0].auto_model,
            tokenizer=st_model.tokenizer,
            device="cpu",
            pca_dims=None if pca_dims is None or pca_dims == width else int(pca_dims),
        )
    tmp = new_build_folder(out)
    try:
        with _silent_model2vec():
            static_model.save_pretrained(tmp)
        table_hash = file_sha256(tmp / "model.safetensors")
        dim = int(static_model.dim)
        pca = None if pca_dims is None or pca_dims == width else int(pca_dims)
        config: dict[str, Any] = {
            "kind": "static",
            "format_version": FORMAT_VERSION,
            "model_id": f"{static_model_id(resolved.name, fingerprint, pca_dims=pca, layers=layers)}:g={table_hash[:8]}",
            "source_model": resolved.name,
            "source_fingerprint": fingerprint,
            "precision": np.dtype(static_model.embedding.dtype).name,
            "layers": layers,
            "pca_dims": pca,
            "dim": dim,
            "vocab_size": int(static_model.embedding.shape[0]),
            "pooling": "mean",
            "normalize": True,
            "table_sha256": table_hash,
            "versions": package_versions("model2vec", "tokenizers", "torch", "transformers", "sentence-transformers"),
        }
        write_config(tmp, config)
        publish_folder(tmp, out)
    except BaseException:
        discard_folder(tmp)
        raise
    return out


class StaticEncoder(SavedFolderEncoder):
    """Mean of distilled token vectors from a folder written by :func:`distill_static`.

    Parameters
    ----------
    path:
        The saved folder.
    batch_size:
        Texts tokenised per call when ``encode`` gets none; also the ``progress`` step.

    Rows are L2-normalised in float32. A text none of whose tokens is in the table (only
    unknown characters) encodes to the zero vector, as the contract allows.
    """

    _kind = "static"
    _param_names = ("path", "batch_size")
    _default_batch_size = 1024

    def __init__(self, path: str, batch_size: int = 1024) -> None:
        self.path = path
        self.batch_size = batch_size

    def _load_runtime(self, folder: Path, config: dict[str, Any]) -> Any:
        from model2vec import StaticModel

        with _silent_model2vec():
            static_model = StaticModel.from_pretrained(folder, normalize=False)
        if int(static_model.dim) != int(config["dim"]):
            raise ValueError(f"{folder}: the table has width {static_model.dim}, but leanrec_encoder.json says dim={config['dim']}")
        return static_model

    def _encode_batch(self, runtime: Any, texts: list[str]) -> np.ndarray:
        vecs = runtime.encode(
            texts,
            batch_size=max(1, len(texts)),
            normalize=False,
            show_progress_bar=False,
            use_multiprocessing=False,
        )
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1)


@contextmanager
def _silent_model2vec() -> Iterator[None]:
    """No tqdm bars or info logs from model2vec's distillation: the library never prints.

    Patches the distillation's progress bar only if that module is already imported
    (importing it would import torch, which loading a static model must not do).
    """
    import logging
    import sys

    patched = []
    inference = sys.modules.get("model2vec.distill.inference")
    if inference is not None and hasattr(inference, "tqdm"):
        original = inference.tqdm

        def quiet_tqdm(*args: Any, **kwargs: Any) -> Any:
            kwargs["disable"] = True
            return original(*args, **kwargs)

        inference.tqdm = quiet_tqdm
        patched.append((inference, original))
    loggers = [logging.getLogger(name) for name in ("model2vec", "skeletoken")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for module, original in patched:
            module.tqdm = original
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


