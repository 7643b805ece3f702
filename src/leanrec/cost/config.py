"""One pipeline configuration = one rung of the cost ladder.

Cost is an argument, not a fork (DESIGN.md §3): every knob — encoder backend, precision,
layer pruning, vector codec, index, thread budget — is a field here, and the profiler,
the Pareto bench and the planner all take the same object. A configuration round-trips
through a plain dict (and so JSON/TOML), which is how ``leanrec cost bench`` hands it to the
isolated worker process that measures it.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from leanrec.encoders.backends import BACKEND_PRECISIONS, ENCODER_PRECISIONS

__all__ = ["PipelineConfig", "PIPELINE_BACKENDS", "default_ladder", "load_ladder"]

#: The encoder backends a configuration may name: :func:`leanrec.encoders.load_encoder`'s,
#: and the TF-IDF baseline (which has no backend options).
PIPELINE_BACKENDS = (*BACKEND_PRECISIONS, "tfidf")


@dataclass(frozen=True)
class PipelineConfig:
    """Every choice that changes what a pipeline costs or what it recommends.

    ``encoder`` is a model name (``"minilm"``) or a local sentence-transformers folder
    (the "big model" reference point); ``vectors`` a codec spec for
    :func:`leanrec.vectors.make_codec` (``"fp32"``, ``"int8"``, ``"pq64"``, ...);
    ``index`` an index spec for :func:`leanrec.vectors.make_index`. ``threads`` is the
    whole thread budget (torch, ONNX Runtime intra-op, BLAS and faiss alike).
    """

    name: str
    encoder: str = "minilm"
    backend: str = "torch"
    precision: str = "fp32"
    layers: int | None = None
    vectors: str = "fp32"
    index: str = "exact"
    threads: int = 1
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("config field 'name': must be a non-empty string")
        if self.backend not in PIPELINE_BACKENDS:
            raise ValueError(f"config {self.name!r} field 'backend': {self.backend!r} is not one of "
                             f"{PIPELINE_BACKENDS}")
        if self.precision not in ENCODER_PRECISIONS:
            raise ValueError(f"config {self.name!r} field 'precision': {self.precision!r} is not one of "
                             f"{ENCODER_PRECISIONS}")
        for field_name in ("threads", "batch_size"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"config {self.name!r} field {field_name!r}: must be a positive integer, got {value!r}")
        if self.layers is not None and (isinstance(self.layers, bool) or not isinstance(self.layers, int)
                                        or self.layers < 1):
            raise ValueError(f"config {self.name!r} field 'layers': must be a positive integer or absent")

    @property
    def encoder_key(self) -> tuple:
        """The fields that decide the item vectors (rows sharing it share an encoding)."""
        return (self.encoder, self.backend, self.precision, self.layers)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "config") -> "PipelineConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def describe(self) -> str:
        layers = f", {self.layers} layers" if self.layers else ""
        return (f"{self.encoder} {self.backend} {self.precision}{layers} · vectors {self.vectors} · "
                f"index {self.index} · {self.threads} thread(s)")


def default_ladder(*, big_model: str | None = None) -> list[PipelineConfig]:
    """The rungs ``leanrec cost bench`` measures by default, reference first.

    One axis changes at a time: encoders over fp32 vectors and an exact index; then vector
    codecs and indexes over the default serving encoder (ONNX int8).
    """
    rungs = [
        PipelineConfig("torch-fp32", backend="torch", precision="fp32"),
        PipelineConfig("torch-bf16", backend="torch", precision="bf16"),
        PipelineConfig("onnx-fp32", backend="onnx", precision="fp32"),
        PipelineConfig("onnx-int8", backend="onnx", precision="int8"),
        PipelineConfig("onnx-int8-L3", backend="onnx", precision="int8", layers=3),
        PipelineConfig("onnx-int8-L3-distilled", encoder="minilm-L3-distilled", backend="onnx", precision="int8"),
        PipelineConfig("static", backend="static", precision="fp32"),
        PipelineConfig("static-L3-distilled", encoder="minilm-L3-distilled", backend="static"),
        PipelineConfig("tfidf", backend="tfidf", precision="fp32"),
    ]
    if big_model:
        rungs.insert(1, PipelineConfig("big-torch-fp32", encoder=big_model, backend="torch"))
        rungs.insert(2, PipelineConfig("big-onnx-int8", encoder=big_model, backend="onnx", precision="int8"))
    serving = dict(backend="onnx", precision="int8")
    for vectors in ("fp16", "int8", "binary", "pq64", "pq32", "pca128", "trunc128"):
        rungs.append(PipelineConfig(f"onnx-int8+{vectors}", vectors=vectors, **serving))
    for index in ("binary-rescore-int8", "hnsw", "ivfpq"):
        rungs.append(PipelineConfig(f"onnx-int8+{index}", index=index, **serving))
    return rungs


def load_ladder(path: str | Path) -> list[PipelineConfig]:
    """Read a ladder from TOML: ``[[config]]`` tables with :class:`PipelineConfig` fields."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    tables = data.get("config")
    if not isinstance(tables, list) or not tables:
        raise ValueError(f"{path}: expected one or more [[config]] tables")
    return [PipelineConfig.from_dict(t, where=f"{path} [[config]] #{i + 1}") for i, t in enumerate(tables)]
