"""int8 quantisation of an exported ONNX graph, and the schemes a caller may pick.

Why this module exists: :func:`~leanrec.encoders.onnx_export.export_onnx` writes an fp32
graph; how that graph becomes int8 (which ops, which weight type, what stays fp32) is
a choice of its own, measured separately and also named by fine-tuned model folders
(:data:`EXPORT_HINTS_FILENAME`) and the cost tools, which need it without the exporter's
torch imports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["EXPORT_HINTS_FILENAME", "INT8_SCHEMES", "int8_scheme_hint", "quantize_int8"]

#: How int8 exports are quantised (see :func:`quantize_int8`): ``"s8"`` (the default:
#: int8 weights per channel, every MatMul and the embedding Gather), ``"u8"`` (the same
#: with uint8 weights), ``"s8-reduce-range"`` (7-bit weights), ``"s8-ffn-out-fp32"`` (the
#: feed-forward output MatMuls stay fp32), ``"s8-ffn-fp32"`` (both feed-forward MatMuls).
INT8_SCHEMES = ("s8", "u8", "s8-reduce-range", "s8-ffn-out-fp32", "s8-ffn-fp32")
#: A model folder may hold this file, ``{"int8_scheme": "..."}``, to name the scheme its
#: int8 exports use when the caller names none (a fine-tune records its measured choice).
EXPORT_HINTS_FILENAME = "leanrec_export.json"


def int8_scheme_hint(folder: str | os.PathLike[str]) -> str | None:
    """The int8 scheme a model folder's :data:`EXPORT_HINTS_FILENAME` names, if any."""
    import json

    try:
        hint = json.loads((Path(folder) / EXPORT_HINTS_FILENAME).read_text(encoding="utf-8")).get("int8_scheme")
    except (OSError, ValueError, AttributeError):
        return None
    return hint if isinstance(hint, str) else None


def quantize_int8(path: Path, scheme: str = "s8") -> None:
    """Dynamic int8 quantisation of the weights of ``path``, in place.

    Measured on all-MiniLM-L6-v2 against torch fp32 (14 check texts): one scale per
    weight tensor gives mean cosine 0.954 (min 0.912); ``per_channel=True`` (one scale
    per output channel) gives 0.990 (min 0.978) at no runtime cost. Quantising the
    ``Gather`` (embedding tables) too shrinks the file from 55 to 21 MiB at the same
    quality (0.990 / 0.983), so we do. ``quant_pre_process`` changed nothing here. That is
    ``scheme="s8"``, the default.

    The other :data:`INT8_SCHEMES` trade size or speed for fidelity; see
    ``benchmarks/results/finetune_encoder.md`` for what they measured on fine-tuned MiniLM.
    The feed-forward MatMuls are found by the names the TorchScript exporter gives BERT
    blocks (``.../layer.N/intermediate/dense/MatMul``, ``.../layer.N/output/dense/MatMul``).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    exclude: list[str] = []
    if scheme in ("s8-ffn-out-fp32", "s8-ffn-fp32"):
        import onnx

        names = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "MatMul"]
        exclude = [n for n in names if "/output/dense/" in n and "/attention/" not in n]
        if scheme == "s8-ffn-fp32":
            exclude += [n for n in names if "/intermediate/dense/" in n]
        if not exclude:
            raise ValueError(f"int8 scheme {scheme!r}: no feed-forward MatMul found in the graph (BERT-family only)")
    quantized = path.with_name("model.int8.onnx")
    with _quiet_root_logging():
        quantize_dynamic(
            str(path),
            str(quantized),
            weight_type=QuantType.QUInt8 if scheme == "u8" else QuantType.QInt8,
            per_channel=True,
            reduce_range=scheme == "s8-reduce-range",
            op_types_to_quantize=["MatMul", "Gemm", "Gather"],
            nodes_to_exclude=exclude or None,
        )
    os.replace(quantized, path)


@contextmanager
def _quiet_root_logging() -> Iterator[None]:
    """Keep onnxruntime.quantization's ``logging.warning(...)`` calls silent.

    They go to the *root* logger, and on a process without logging configured the
    module-level ``logging.warning`` would even call ``basicConfig`` (a global side
    effect on the caller's application). A temporary level and handler prevent both.
    """
    import logging

    root = logging.getLogger()
    level, handler = root.level, logging.NullHandler()
    root.addHandler(handler)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(handler)
