"""How fast this CPU multiplies matrices, per precision, measured in the same run.

Why: an encoder's cost is mostly the linear layers of its transformer, i.e. matrix
multiplies of the shapes a BERT layer uses (tokens x hidden times hidden x 4*hidden). The
rate this machine reaches on exactly those shapes is the ceiling ("roofline") for any
encoder run on it; dividing a model's FLOPs per token (:func:`bert_flops_per_token`) by
that rate gives the best possible tokens per second, and the gap to the measured rate says
how much is overhead (tokenisation, attention, memory traffic, Python).

Precisions and what runs them:

* ``fp32``: numpy's BLAS (``backend="numpy"``) and ``torch.matmul`` (``backend="torch"``);
  the roofline is the faster of the two.
* ``bf16``: ``torch.matmul`` on bfloat16 tensors. Fast only with AVX-512 BF16 or AMX; on
  AVX2-only CPUs it is emulated and usually slower than fp32, which is worth knowing
  before choosing bf16 for serving.
* ``int8``: ONNX Runtime on the graph ``onnxruntime.quantization.quantize_dynamic`` writes
  for a MatMul with constant weights (``DynamicQuantizeLinear`` on the activations,
  ``MatMulInteger`` against int8 weights, ``Cast`` and ``Mul`` by the product of the
  scales). ORT's optimiser fuses that into ``com.microsoft.DynamicQuantizeMatMul``, as it
  does inside a dynamically quantised MiniLM; the result lists the ops that actually ran.
  The quantisation of the activations is included in the time, as in a real model.

FLOPs are counted as ``2*m*k*n`` per multiply for every precision (int8 "GFLOP/s" are
integer operations). torch and onnxruntime are imported only inside the functions that
need them.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["MATMUL_PRECISIONS", "MATMUL_BACKENDS", "matmul_rate", "roofline", "bert_flops_per_token", "bert_config_flops"]

#: Precisions the matmul roofline measures.
MATMUL_PRECISIONS = ("fp32", "bf16", "int8")
#: The libraries that multiply at each of :data:`MATMUL_PRECISIONS` (the first is the default).
MATMUL_BACKENDS = {"fp32": ("numpy", "torch"), "bf16": ("torch",), "int8": ("onnxruntime",)}

_SAMPLE_S = 0.02  # one timed sample repeats the multiply until it lasts about this long


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _time(fn: Callable[[], object], repeats: int, min_time_s: float, max_time_s: float) -> list[float]:
    """Seconds per call: one warm-up call, then at least ``repeats`` samples and ``min_time_s`` in all,
    unless that would pass ``max_time_s`` (a very slow path, e.g. emulated bf16: at least one sample)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    inner = max(1, math.ceil(_SAMPLE_S / max(first, 1e-9)))
    samples: list[float] = []
    begun = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - begun
        if samples and ((len(samples) >= repeats and elapsed >= min_time_s) or elapsed + first > max_time_s):
            break
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return samples


def _numpy_fn(a: np.ndarray, b: np.ndarray) -> tuple[Callable[[], object], str]:
    from threadpoolctl import threadpool_info

    blas = next((p.get("internal_api") for p in threadpool_info() if p.get("user_api") == "blas"), None)
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
    return (lambda: np.matmul(a, b, out=out)), f"numpy ({blas or 'blas'})"


def _torch_fn(a: np.ndarray, b: np.ndarray, dtype_name: str) -> tuple[Callable[[], object], str]:
    import torch

    dtype = torch.float32 if dtype_name == "fp32" else torch.bfloat16
    ta = torch.from_numpy(a).to(dtype)
    weight = torch.from_numpy(np.ascontiguousarray(b.T)).to(dtype)  # (out, in), as nn.Linear stores it

    # F.linear on an (out, in) weight is exactly what a transformer's nn.Linear runs. A bf16
    # torch.matmul on an (in, out) matrix takes another kernel on this AVX2 CPU: measured
    # 1.2 GFLOP/s against ~7.5 for F.linear, which made the bf16 "roofline" meaningless.
    def run():
        with torch.inference_mode():
            torch.nn.functional.linear(ta, weight)

    return run, f"torch {torch.__version__}"


def _int8_model(w: np.ndarray):
    """The ``quantize_dynamic`` graph for ``Y = X @ W`` (per-tensor, symmetric int8 weights)."""
    from onnx import TensorProto, helper, numpy_helper

    k, n = w.shape
    scale = float(np.abs(w).max()) / 127.0 or 1.0
    wq = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(wq, "W_quantized"),
             numpy_helper.from_array(np.array(scale, dtype=np.float32), "W_scale"),
             numpy_helper.from_array(np.array(0, dtype=np.int8), "W_zero_point")]
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["X"], ["X_quantized", "X_scale", "X_zero_point"]),
        helper.make_node("Mul", ["X_scale", "W_scale"], ["XW_scale"]),
        helper.make_node("MatMulInteger", ["X_quantized", "W_quantized", "X_zero_point", "W_zero_point"],
                         ["Y_int32"]),
        helper.make_node("Cast", ["Y_int32"], ["Y_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["Y_float", "XW_scale"], ["Y"]),
    ]
    graph = helper.make_graph(nodes, "matmul_int8",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["m", k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["m", n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime leanrec supports
    return model


def _ort_fn(a: np.ndarray, b: np.ndarray, threads: int) -> tuple[Callable[[], object], str, list[str]]:
    import tempfile

    import onnx
    import onnxruntime as ort

    model = _int8_model(b)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="leanrec-roofline-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        options.optimized_model_filepath = str(optimized)
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        ops = [f"{node.domain + '.' if node.domain else ''}{node.op_type}" for node in onnx.load(optimized).graph.node]
    feed = {"X": a}
    return (lambda: session.run(None, feed)), f"onnxruntime {ort.__version__}", ops


def matmul_rate(precision: str = "fp32", *, threads: int = 1, m: int = 2048, k: int = 384, n: int = 1536,
                backend: str | None = None, repeats: int = 5, min_time_s: float = 0.5,
                max_time_s: float = 10.0) -> dict:
    """Median GFLOP/s of an ``(m, k) @ (k, n)`` multiply at ``precision`` on ``threads`` threads.

    The default shape is a MiniLM feed-forward layer on 2048 tokens (e.g. 32 texts of 64
    tokens). ``backend`` defaults to the first of :data:`MATMUL_BACKENDS` for the precision.
    Sampling stops once there are ``repeats`` samples and ``min_time_s`` has passed, or
    earlier when the next sample would pass ``max_time_s`` (bf16 without hardware support
    can take seconds per multiply).
    Returns ``{"gflops" (median), "samples" (GFLOP/s per sample), "shape", "backend",
    "library" (with version), "precision", "threads"}``, plus ``"ops"`` (the graph ONNX
    Runtime ran after its optimiser) for int8.
    """
    if precision not in MATMUL_BACKENDS:
        raise ValueError(f"precision must be one of {', '.join(MATMUL_PRECISIONS)}, got {precision!r}")
    backend = MATMUL_BACKENDS[precision][0] if backend is None else backend
    if backend not in MATMUL_BACKENDS[precision]:
        raise ValueError(f"backend for {precision} must be one of {', '.join(MATMUL_BACKENDS[precision])}, got {backend!r}")
    threads = _positive_int(threads, "threads")
    m, k, n = (_positive_int(v, name) for v, name in ((m, "m"), (k, "k"), (n, "n")))
    repeats = _positive_int(repeats, "repeats")
    for value, name in ((min_time_s, "min_time_s"), (max_time_s, "max_time_s")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")

    from ..core.threads import thread_budget

    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = (rng.standard_normal((k, n), dtype=np.float32) / np.sqrt(k)).astype(np.float32)
    extra: dict = {}
    if backend == "numpy":
        fn, label = _numpy_fn(a, b)
    elif backend == "torch":
        fn, label = _torch_fn(a, b, precision)  # imports torch, so thread_budget below sets it
    else:
        fn, label, ops = _ort_fn(a, b, threads)
        extra["ops"] = ops
    with thread_budget(threads):
        seconds = _time(fn, repeats, float(min_time_s), float(max_time_s))
    flop = 2.0 * m * k * n
    rates = [flop / s / 1e9 for s in seconds]
    return {"gflops": statistics.median(rates), "samples": rates, "shape": (m, k, n), "backend": backend,
            "library": label, "precision": precision, "threads": threads, **extra}


def roofline(*, threads: int = 1, precisions: tuple[str, ...] = MATMUL_PRECISIONS, m: int = 2048, k: int = 384,
             n: int = 1536, repeats: int = 5, min_time_s: float = 0.5, max_time_s: float = 10.0) -> dict:
    """Every backend of every precision in ``precisions``; the roofline per precision is the best.

    Returns ``{"results": [matmul_rate dicts], "best": {precision: gflops}, "errors":
    {"precision/backend": message}}``. A backend that is not installed is listed in
    ``errors`` instead of failing the whole measurement.
    """
    results, errors = [], {}
    for precision in precisions:
        if precision not in MATMUL_BACKENDS:
            raise ValueError(f"precisions must be drawn from {', '.join(MATMUL_PRECISIONS)}, got {precision!r}")
        for backend in MATMUL_BACKENDS[precision]:
            try:
                results.append(matmul_rate(precision, threads=threads, m=m, k=k, n=n, backend=backend,
                                           repeats=repeats, min_time_s=min_time_s, max_time_s=max_time_s))
            except ImportError as exc:
                errors[f"{precision}/{backend}"] = str(exc)
    best: dict[str, float] = {}
    for r in results:
        best[r["precision"]] = max(best.get(r["precision"], 0.0), r["gflops"])
    return {"results": results, "best": best, "errors": errors}


def bert_flops_per_token(hidden: int, intermediate: int, layers: int, seq_len: int | None = None) -> float:
    """FLOPs per token of a BERT-style encoder's forward pass.

    Linear layers: per layer and token, Q, K, V and the attention output projection are
    ``4*h*h`` multiply-adds and the feed-forward block ``2*h*i``, so ``2*(4*h*h + 2*h*i)``
    FLOPs. With ``seq_len``, attention itself adds ``4*seq_len*h`` per layer and token
    (scores ``Q @ K.T`` and ``softmax @ V``, ``seq_len*h`` multiply-adds each). Embedding
    look-ups, layer norms, softmax and pooling are ignored: they are a few percent.
    MiniLM-L6 (h=384, i=1536, 6 layers) is 21,233,664 FLOPs per token without attention.
    """
    h = _positive_int(hidden, "hidden")
    i = _positive_int(intermediate, "intermediate")
    n_layers = _positive_int(layers, "layers")
    per_layer = 2.0 * (4 * h * h + 2 * h * i)
    if seq_len is not None:
        per_layer += 4.0 * _positive_int(seq_len, "seq_len") * h
    return per_layer * n_layers


def bert_config_flops(model_dir: str | Path, seq_len: int | None = None) -> float:
    """:func:`bert_flops_per_token` for a Hugging Face model folder (or its ``config.json``).

    Reads ``hidden_size``, ``intermediate_size`` and ``num_hidden_layers``.
    """
    path = Path(model_dir)
    config_path = path if path.is_file() else path / "config.json"
    if not config_path.is_file():
        raise ValueError(f"model_dir has no config.json: {path}")
    config = json.loads(config_path.read_text())
    missing = [key for key in ("hidden_size", "intermediate_size", "num_hidden_layers") if key not in config]
    if missing:
        raise ValueError(f"{config_path} lacks {', '.join(missing)}: not a BERT-style encoder config")
    return bert_flops_per_token(config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"],
                                seq_len)
