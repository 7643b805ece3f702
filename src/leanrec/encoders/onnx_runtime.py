"""Run an exported sentence-transformer with ONNX Runtime: no torch on the serving machine.

A folder written by :func:`leanrec.encoders.onnx_export.export_onnx` holds ``model.onnx``
(transformer + mean pooling + L2 normalisation, all in the graph, so the output is the
sentence vector), ``tokenizer.json`` (the model's own fast tokenizer with truncation to
``max_seq_length`` and padding to the longest text of each batch already configured)
and ``leanrec_encoder.json``. :class:`OnnxEncoder` needs only ``onnxruntime``,
``tokenizers`` and numpy, which import in well under a second and take a fraction of
torch's memory; it never imports torch, transformers or sentence-transformers.

Why ``threads=1`` by default: ONNX Runtime otherwise starts one thread per core, which
on a shared small machine fights every other process; throughput per core is best at
one thread, and a server scales out with processes.

int8 folders run one text per ``session.run`` (``per_text_inference`` in the config):
dynamic quantisation picks activation scales per run, so batching would make a text's
vector depend on its batch-mates (up to 0.05 per component on MiniLM), breaking the
"same text, same vector" promise the embedding cache relies on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from leanrec.encoders.saved import SavedFolderEncoder

__all__ = ["OnnxEncoder"]


class OnnxEncoder(SavedFolderEncoder):
    """Sentence embeddings from an exported ONNX folder.

    Parameters
    ----------
    path:
        A folder written by :func:`~leanrec.encoders.onnx_export.export_onnx`.
    threads:
        ONNX Runtime intra-op threads (inter-op is always 1: the graph is a single chain).
    batch_size:
        Texts per ``session.run`` when ``encode`` gets none; also the ``progress`` step.

    The constructor only stores these; the session is created on the first ``encode``,
    ``dim`` needs only the config. ``model_id`` is the one recorded at export time.
    """

    _kind = "onnx"
    _param_names = ("path", "threads", "batch_size")
    _default_batch_size = 32

    def __init__(self, path: str, threads: int = 1, batch_size: int = 32) -> None:
        self.path = path
        self.threads = threads
        self.batch_size = batch_size

    def _load_runtime(self, folder: Path, config: dict[str, Any]) -> Any:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        threads = self.threads
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        files = config.get("files") or {}
        model_file = folder / str(files.get("model", "model.onnx"))
        tokenizer_file = folder / str(files.get("tokenizer", "tokenizer.json"))
        for file in (model_file, tokenizer_file):
            if not file.is_file():
                raise FileNotFoundError(f"{file} is missing from the saved ONNX encoder folder {folder}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: the library never prints
        session = ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        input_names = [i.name for i in session.get_inputs()]
        unknown = set(input_names) - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown:
            raise ValueError(f"{model_file} expects inputs {sorted(unknown)} that leanrec does not produce")
        output_name = str(config.get("output", session.get_outputs()[0].name))
        per_text = bool(config.get("per_text_inference", False))
        return session, tokenizer, input_names, output_name, per_text

    def _encode_batch(self, runtime: Any, texts: list[str]) -> np.ndarray:
        session, tokenizer, input_names, output_name, per_text = runtime
        if per_text and len(texts) > 1:
            # Dynamically quantised (int8) graphs scale activations per run; see
            # ``per_text_inference`` in onnx_export: one text per run keeps vectors exact.
            return np.vstack([self._run(runtime, [t]) for t in texts])
        return self._run(runtime, texts)

    @staticmethod
    def _run(runtime: Any, texts: list[str]) -> np.ndarray:
        session, tokenizer, input_names, output_name, _ = runtime
        encodings = tokenizer.encode_batch(texts)
        feeds = {}
        if "input_ids" in input_names:
            feeds["input_ids"] = np.asarray([e.ids for e in encodings], dtype=np.int64)
        if "attention_mask" in input_names:
            feeds["attention_mask"] = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        if "token_type_ids" in input_names:
            feeds["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        (vectors,) = session.run([output_name], feeds)
        return vectors.astype(np.float32, copy=False)
