"""Export a local sentence-transformer to an ONNX folder that serves without torch.

:func:`export_onnx` writes ``model.onnx``, ``tokenizer.json`` and ``leanrec_encoder.json``
(see :mod:`leanrec.encoders.onnx_runtime` for the reader). The graph takes
``input_ids`` and ``attention_mask`` (int64, dynamic batch and sequence axes) and returns
``sentence_embedding``: the transformer, mean pooling over the attention mask (or CLS
pooling, if that is the model's pooling) and L2 normalisation are all inside the graph,
so a runtime needs no pooling code and the check (:mod:`leanrec.encoders.onnx_check`)
covers everything but tokenisation, which it covers too by running the saved folder end
to end.

What makes a naive export of MiniLM silently wrong, and what we do instead:

* **The tokenizer file** (the one we measured). MiniLM's shipped ``tokenizer.json`` pads
  every text to 128 tokens and truncates at 128, while sentence-transformers truncates
  at ``max_seq_length`` (256) and pads to the batch's longest. Serving with the file as
  shipped gives cosine 0.93-0.96 to torch on texts longer than 128 tokens (1.0 on short
  ones, so a check on titles alone passes). We save the loaded model's own tokenizer with
  the sentence-transformers settings.
* **SDPA attention.** Depending on the transformers version, the SDPA path chooses its
  masking from the example input at trace time (e.g. no mask when the example has no
  padding) and the traced graph keeps that choice. With transformers 5.3 / torch 2.13 an
  SDPA trace happened to be correct in our test, but we do not rely on it: we load with
  ``attn_implementation="eager"``, whose additive mask is plain tensor arithmetic, and
  trace with a padded example batch.
* **Fixed shapes.** Without dynamic axes the example's batch and length are baked in.
* **token_type_ids.** The graph creates the all-zero segment ids itself (what a single
  sentence gets), so the runtime cannot feed mismatched ones.
* **The exporter.** torch 2.13's default (``dynamo=True``) needs ``onnxscript``, which
  leanrec does not depend on; the TorchScript exporter (``dynamo=False``) handles BERT.

Then the export is **checked**: the saved folder encodes short titles, long texts (some
beyond ``max_seq_length``) in padded batches, and each vector is compared with the torch
float32 model's (:mod:`leanrec.encoders.onnx_check`). fp32 must reach cosine >= 0.999 on
every text or the export raises; int8 (``onnxruntime.quantization.quantize_dynamic``,
per-channel int8 weights: :mod:`leanrec.encoders.onnx_quantize`) records its
minimum and mean cosine in ``leanrec_encoder.json`` and raises only below a sanity floor
that catches a broken graph, not a lossy one.

Measured on all-MiniLM-L6-v2 (2-core Zen3, one thread): export takes ~10 s (most of it
loading and tracing), fp32 agrees to cosine >= 0.9999999, int8 to mean 0.990 / min 0.983.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leanrec.encoders.backends import ONNX_PRECISIONS, check_precision
from leanrec.encoders.onnx_check import (
    CHECK_TEXTS,
    check_against_torch,
    torch_reference,
)
from leanrec.encoders.onnx_quantize import INT8_SCHEMES, int8_scheme_hint, quantize_int8
from leanrec.encoders.resolve import resolve_model, weights_fingerprint
from leanrec.encoders.saved import (
    FORMAT_VERSION,
    discard_folder,
    file_sha256,
    new_build_folder,
    package_versions,
    publish_folder,
    write_config,
)
from leanrec.encoders.sbert_load import (
    check_layers,
    layer_list,
    load_sentence_transformer,
    prune_layers,
    quiet_transformers,
    transformer_num_layers,
)

__all__ = ["ONNX_PRECISIONS", "export_onnx", "onnx_model_id"]


def onnx_model_id(name: str, fingerprint: str, *, precision: str, layers: int | None, max_seq_length: int) -> str:
    """The ``model_id`` of an ONNX export (the graph hash is appended by :func:`export_onnx`)."""
    return f"onnx:{name}@{fingerprint}:msl={max_seq_length}:p={precision}:L={layers if layers else 'all'}"


def export_onnx(
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    precision: str = "fp32",
    layers: int | None = None,
    max_seq_length: int | None = None,
    opset: int = 17,
    check_texts: Sequence[str] | None = None,
    int8_scheme: str | None = None,
) -> Path:
    """Export ``model`` (a known name or local sentence-transformers folder) to ``out_dir``.

    ``precision``: ``"fp32"`` or ``"int8"`` (dynamic quantisation of the weights; smaller
    file, faster matmuls on CPUs with int8 dot-product instructions). ``layers``: keep only
    the first N transformer layers, as :class:`~leanrec.encoders.sbert.SentenceTransformerEncoder`
    does. ``max_seq_length``: ``None`` uses the model's own (256 for MiniLM).
    ``check_texts``: texts for the agreement check (default :data:`CHECK_TEXTS`).
    ``int8_scheme``: one of :data:`INT8_SCHEMES` (int8 only); ``None``: the model folder's
    :data:`EXPORT_HINTS_FILENAME` hint if it has one, else ``"s8"``.

    The folder is built next to ``out_dir`` and renamed into place only after the check
    passes, so ``out_dir`` is either absent or complete. ``out_dir`` must not exist or be
    empty (``FileExistsError`` otherwise). Returns ``out_dir`` as a ``Path``.
    """
    precision = check_precision(precision, ONNX_PRECISIONS)
    resolved = resolve_model(model)
    if int8_scheme is not None and precision != "int8":
        raise ValueError(f"int8_scheme applies to precision='int8' only, not {precision!r}")
    if precision == "int8":
        int8_scheme = int8_scheme or int8_scheme_hint(resolved.path) or "s8"
        if int8_scheme not in INT8_SCHEMES:
            raise ValueError(f"int8_scheme must be one of {', '.join(map(repr, INT8_SCHEMES))}, got {int8_scheme!r}")
    layers = check_layers(layers, transformer_num_layers(resolved))
    if max_seq_length is not None and (
        isinstance(max_seq_length, bool) or not isinstance(max_seq_length, (int, np.integer)) or max_seq_length < 1
    ):
        raise ValueError(f"max_seq_length must be a positive integer or None, got {max_seq_length!r}")
    texts = list(CHECK_TEXTS if check_texts is None else check_texts)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("check_texts must be a non-empty list of non-empty strings")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not an empty folder")


    fingerprint = weights_fingerprint(resolved.path)
    st_model = load_sentence_transformer(resolved, attn_implementation="eager")
    if max_seq_length is not None:
        st_model.max_seq_length = int(max_seq_length)
    if layers is not None:
        prune_layers(st_model, layers)
    msl = int(st_model.max_seq_length)
    pooling = _pooling_mode(st_model)
    dim = int(st_model[0].auto_model.config.hidden_size)

    reference = torch_reference(st_model, texts)

    tmp = new_build_folder(out)
    try:
        _export_graph(st_model, pooling, tmp / "model.onnx", opset=opset)
        if precision == "int8":
            quantize_int8(tmp / "model.onnx", int8_scheme or "s8")
        tokenizer = _fast_tokenizer(st_model, msl)
        tokenizer.save(str(tmp / "tokenizer.json"))

        graph_hash = file_sha256(tmp / "model.onnx")[:8]
        config: dict[str, Any] = {
            "kind": "onnx",
            "format_version": FORMAT_VERSION,
            "model_id": f"{onnx_model_id(resolved.name, fingerprint, precision=precision, layers=layers, max_seq_length=msl)}:g={graph_hash}",
            "source_model": resolved.name,
            "source_fingerprint": fingerprint,
            "precision": precision,
            "layers": layers,
            "num_layers": len(_blocks(st_model)),
            "max_seq_length": msl,
            "dim": dim,
            "pooling": pooling,
            "normalize": True,
            "files": {"model": "model.onnx", "tokenizer": "tokenizer.json"},
            "inputs": ["input_ids", "attention_mask"],
            "output": "sentence_embedding",
            # int8 quantises activations per session.run (one scale for the whole batch),
            # so a text's vector would depend on its batch-mates; one text per run keeps
            # vectors a function of the text alone, at ~25% speed cost measured on MiniLM.
            "per_text_inference": precision == "int8",
            **({"int8_scheme": int8_scheme} if precision == "int8" else {}),
            "opset": int(opset),
            "graph_sha256": file_sha256(tmp / "model.onnx"),
            "versions": package_versions("onnxruntime", "onnx", "torch", "transformers", "sentence-transformers", "tokenizers"),
        }
        write_config(tmp, config)

        check = check_against_torch(tmp, texts, reference, precision=precision, name=resolved.name, out=out)
        config["check"] = check
        write_config(tmp, config)
        publish_folder(tmp, out)
    except BaseException:
        discard_folder(tmp)
        raise
    return out


def _blocks(st_model: Any) -> Any:
    return layer_list(st_model[0].auto_model)[1]


def _pooling_mode(st_model: Any) -> str:
    """The model's pooling as ``"mean"`` or ``"cls"``; refuse anything we would get wrong."""
    modules = list(st_model)
    kinds = [type(m).__name__ for m in modules]
    if not kinds or kinds[0] != "Transformer" or len(kinds) < 2 or kinds[1] != "Pooling" or any(
        k != "Normalize" for k in kinds[2:]
    ):
        raise ValueError(
            f"ONNX export supports Transformer -> Pooling [-> Normalize] models; this one is {' -> '.join(kinds)}"
        )
    pool = modules[1]
    mode = getattr(pool, "pooling_mode", None)
    if mode is None:  # older sentence-transformers: one flag per mode
        flags = {k: getattr(pool, f"pooling_mode_{k}", False) for k in ("mean_tokens", "cls_token", "max_tokens")}
        mode = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max"}.get(
            next((k for k, v in flags.items() if v), ""), ""
        )
    mode = str(getattr(mode, "value", mode)).lower()
    if mode not in ("mean", "cls"):
        raise ValueError(f"ONNX export supports mean or CLS pooling, not {mode!r}")
    return mode


def _export_graph(st_model: Any, pooling: str, path: Path, *, opset: int) -> None:
    import inspect

    import torch

    auto_model = st_model[0].auto_model.float().eval()
    if getattr(auto_model.config, "_attn_implementation", "eager") != "eager":
        raise RuntimeError("internal error: the model must be loaded with eager attention for export")
    takes_token_types = "token_type_ids" in inspect.signature(auto_model.forward).parameters

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = auto_model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            kwargs = {"token_type_ids": torch.zeros_like(input_ids)} if takes_token_types else {}
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return pooled / pooled.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12)

    # A padded example batch (lengths differ), so no trace-time shortcut for "no padding"
    # can be taken; dynamic axes keep batch and length free.
    tokenizer = st_model.tokenizer
    example = tokenizer(
        ["a short example", "a somewhat longer example sentence with more tokens in it"],
        padding=True,
        return_tensors="pt",
    )
    args = (example["input_ids"], example["attention_mask"])
    import warnings

    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), quiet_transformers():
        warnings.simplefilter("ignore")  # tracer warnings about python-level asserts
        torch.onnx.export(
            Embed().eval(),
            args,
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=int(opset),
            do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles BERT
            external_data=False,
        )


def _fast_tokenizer(st_model: Any, max_seq_length: int) -> Any:
    """The loaded model's fast tokenizer with sentence-transformers' truncation and padding.

    Taken from the loaded model rather than copied from the folder because the folder's
    ``tokenizer.json`` may carry other settings (MiniLM's pads and truncates to 128) and
    sentence-transformers may have adjusted the normaliser (``do_lower_case``).
    """
    from tokenizers import Tokenizer

    hf_tokenizer = st_model.tokenizer
    backend = getattr(hf_tokenizer, "backend_tokenizer", None) or getattr(hf_tokenizer, "_tokenizer", None)
    if backend is None:
        raise ValueError(f"{type(hf_tokenizer).__name__} has no fast (tokenizers) backend; ONNX export needs one")
    tokenizer = Tokenizer.from_str(backend.to_str())
    tokenizer.enable_truncation(max_length=int(max_seq_length), strategy="longest_first")
    pad_token = hf_tokenizer.pad_token or "[PAD]"
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
    tokenizer.enable_padding(direction="right", pad_id=int(pad_id), pad_type_id=0, pad_token=str(pad_token))
    return tokenizer


