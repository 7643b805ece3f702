"""The export check: an ONNX folder's vectors against the torch model it came from.

Why this module exists: a naive export can be silently wrong (see
:mod:`leanrec.encoders.onnx_export`), so every export is checked before it is published:
the saved folder encodes short titles and long texts (some beyond ``max_seq_length``) in
padded batches, and each vector is compared with the torch float32 model's. fp32 must
reach cosine >= :data:`FP32_MIN_COSINE` on every text or the export raises; int8 records
its minimum and mean cosine and raises only below :data:`INT8_FLOOR_COSINE`, a sanity
floor that catches a broken graph, not a lossy one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CHECK_TEXTS", "FP32_MIN_COSINE", "INT8_FLOOR_COSINE", "ExportCheckError", "check_against_torch",
           "torch_reference"]

#: fp32 must agree with torch at least this well on every check text, or the export raises.
FP32_MIN_COSINE = 0.999
#: int8 below this (on any text) means a broken graph rather than quantisation noise.
INT8_FLOOR_COSINE = 0.9

_LONG_SENTENCES = [
    "The film follows a retired detective who returns to the city where he grew up.",
    "Years earlier a series of unsolved robberies had ended his career in disgrace.",
    "Now a young journalist asks him to look again at the evidence he never trusted.",
    "Together they uncover a network of corrupt officials, old friends and new enemies.",
    "The story moves between the present and the summer of the first crime.",
    "Critics praised the patient pacing, the photography of the harbour at night and the score.",
    "Some viewers found the ending ambiguous, others thought it was the only honest choice.",
    "It won awards at several festivals and later became a cult favourite on home video.",
    "The director said the script was inspired by stories her grandfather told about the docks.",
    "A sequel was announced but never made, which only added to the legend around it.",
]


def _long_text(start: int, n_sentences: int) -> str:
    k = len(_LONG_SENTENCES)
    return " ".join(_LONG_SENTENCES[(start + i) % k] for i in range(n_sentences))


#: Default texts for the export check: short catalogue titles and ~150-350-word
#: descriptions (the longest exceed 256 tokens, so truncation is checked too).
CHECK_TEXTS: tuple[str, ...] = (
    "Toy Story (1995). Genres: Animation, Children's, Comedy",
    "Heat (1995). Genres: Action, Crime, Thriller",
    "Sense and Sensibility (1995). Genres: Drama, Romance",
    "Star Wars (1977). Genres: Action, Adventure, Romance, Sci-Fi, War",
    "A funny animated movie for children",
    "Crime thriller with a heist",
    "Babe",
    "Casino (1995)",
    "Wallace & Gromit: The Best of Aardman Animation (1996). Genres: Animation",
    "Ça ne se refuse pas — an über-cool café noir!",
    _long_text(0, 10),  # ~150 words
    _long_text(3, 11),
    _long_text(5, 12),
    _long_text(1, 24),  # ~350 words: past 256 tokens, so truncated
)


class ExportCheckError(RuntimeError):
    """The exported graph disagrees with the torch model beyond the allowed tolerance."""


def torch_reference(st_model: Any, texts: Sequence[str]) -> np.ndarray:
    """The vectors the export must reproduce, ``float32[len(texts), dim]``.

    The same torch float32 model through sentence-transformers' own tokenisation and
    pooling, one text per call so padding cannot influence it.
    """
    import torch

    with torch.inference_mode():
        return np.vstack(
            [
                st_model.encode([t], convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
                for t in texts
            ]
        ).astype(np.float32)


def check_against_torch(folder: Path, texts: Sequence[str], reference: np.ndarray, *, precision: str,
                        name: str, out: Path) -> dict[str, Any]:
    """Encode ``texts`` through the saved ``folder`` and compare with ``reference``.

    Returns the record for ``leanrec_encoder.json``'s ``check``; raises
    :class:`ExportCheckError` (naming ``name`` and the worst text) below the precision's
    floor. ``out`` is only named in that message: nothing is written there on failure.
    """
    from leanrec.encoders.onnx_runtime import OnnxEncoder

    # End to end through the saved folder, in padded batches of mixed lengths.
    got = OnnxEncoder(str(folder), threads=1, batch_size=8).encode(texts)
    cos = np.sum(got.astype(np.float64) * reference.astype(np.float64), axis=1)
    check = {
        "reference": "sentence-transformers torch float32, same weights/layers/max_seq_length",
        "n_texts": len(texts),
        "min_cosine": round(float(cos.min()), 7),
        "mean_cosine": round(float(cos.mean()), 7),
    }
    floor = FP32_MIN_COSINE if precision == "fp32" else INT8_FLOOR_COSINE
    if not np.all(np.isfinite(cos)) or cos.min() < floor:
        worst = int(np.nanargmin(cos)) if np.any(np.isfinite(cos)) else 0
        raise ExportCheckError(
            f"the {precision} ONNX export of {name} disagrees with torch: min cosine "
            f"{cos.min():.6f} < {floor} (text {worst}: {texts[worst][:60]!r}); nothing was written to {out}"
        )
    return check
