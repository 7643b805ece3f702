"""The backends :func:`~leanrec.encoders.load_encoder` runs a sentence model on, and the
precisions of each: the one home of these names (the torch encoder, the ONNX export and
the cost ladder's configurations all read them from here).

Imports nothing, so the package's cheap import stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["BACKEND_PRECISIONS", "ENCODER_PRECISIONS", "ONNX_PRECISIONS", "TORCH_DTYPES", "TRAINING_PRECISIONS",
           "check_precision"]

#: Precisions of the torch backend, with the torch dtype each casts the weights to.
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: Precisions of an ONNX export (int8: dynamic quantisation of the weights).
ONNX_PRECISIONS = ("fp32", "int8")
#: Backends accepted by :func:`~leanrec.encoders.load_encoder`, with the precisions each supports.
BACKEND_PRECISIONS = {"torch": tuple(TORCH_DTYPES), "onnx": ONNX_PRECISIONS, "static": ("fp32",)}
#: Every precision an encoder runs at on some backend, in first-seen order.
#: what a training loop runs its forward pass in (fp32, or bf16 under CPU autocast): the
#: encoder fine-tune and the learned sequence models alike
TRAINING_PRECISIONS = ("fp32", "bf16")
ENCODER_PRECISIONS = tuple(dict.fromkeys(p for ps in BACKEND_PRECISIONS.values() for p in ps))


def check_precision(precision: object, allowed: Sequence[str] = tuple(TORCH_DTYPES)) -> str:
    """Return ``precision`` if it is one of ``allowed``, else raise ``ValueError`` listing them."""
    if not isinstance(precision, str) or precision not in allowed:
        raise ValueError(f"precision must be one of {', '.join(map(repr, allowed))}, got {precision!r}")
    return precision
