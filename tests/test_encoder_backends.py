"""One contract for every encoder backend, plus the agreement each one promises.

The cost ladder (torch fp32 -> bf16 -> pruned -> ONNX fp32 -> ONNX int8 -> static) is only
useful if every rung is a drop-in :class:`~leanrec.encoders.base.Encoder` and if we know
how far each one drifts from the torch float32 model. So:

* ``test_backend_contract`` runs the same checks on every backend (shape, dtype, unit
  rows, determinism, batching, empty input, bad input, progress);
* ``test_agreement_with_reference`` checks each backend against its reference with the
  tolerance stated in :data:`AGREEMENT` (measured on this file's texts, with margin);
* the remaining tests cover ``model_id``, saved folders (including a subprocess proving
  that serving imports neither torch nor transformers) and ``load_encoder``'s cache.

Exports and the distillation run once per session into a temporary folder (~40 s of
the file's run time on 2 cores), with torch limited to one thread.
"""

from __future__ import annotations

import os

# Must be set before anything imports huggingface_hub, which reads it at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from leanrec.encoders import (
    CONFIG_FILENAME,
    Encoder,
    InvalidEncoderFolderError,
    OnnxEncoder,
    SentenceTransformerEncoder,
    StaticEncoder,
    TfidfEncoder,
    load_encoder,
    load_saved_encoder,
    read_config,
)
from leanrec.encoders.onnx_check import CHECK_TEXTS
from leanrec.encoders.onnx_export import export_onnx
from leanrec.encoders.static import distill_static

TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy",
    "A funny animated movie for children",
    "Crime thriller with a heist",
    "Heat (1995). Genres: Action, Crime, Thriller",
    "Romance drama in the nineteenth century",
    "Star Wars (1977). Genres: Action, Adventure, Romance, Sci-Fi, War",
    "Babe (1995). Genres: Children's, Comedy, Drama",
    CHECK_TEXTS[13],  # ~350 words: beyond 256 tokens, so truncation is exercised
    "Toy Story (1995). Genres: Animation, Children's, Comedy",  # duplicate on purpose
]
CORPUS = TEXTS[:7] + ["Casino (1995). Genres: Drama, Thriller", "Balto (1995). Genres: Animation, Children's"]

BACKENDS = [
    "tfidf",
    "torch-fp32",
    "torch-bf16",
    "torch-L2",
    "onnx-fp32",
    "onnx-int8",
    "onnx-fp32-L2",
    "onnx-int8-L2",
    "static",
]

#: backend -> (reference backend, min per-text cosine, min mean cosine) on TEXTS.
#: Measured on a 2-core Zen3 with torch 2.13 / onnxruntime 1.32 (min / mean):
#:   onnx-fp32 vs torch-fp32        1.000000 / 1.000000 (>= 0.9999999)
#:   onnx-fp32-L2 vs torch-L2       1.000000 / 1.000000
#:   onnx-int8 vs torch-fp32        0.983    / 0.991
#:   onnx-int8-L2 vs torch-L2       0.994    / 0.996
#:   torch-bf16 vs torch-fp32       0.99987  / 0.99994
#: The static model is a different model (mean of token vectors): no agreement claimed.
AGREEMENT = {
    "onnx-fp32": ("torch-fp32", 0.999, 0.9999),
    "onnx-fp32-L2": ("torch-L2", 0.999, 0.9999),
    "onnx-int8": ("torch-fp32", 0.97, 0.98),
    "onnx-int8-L2": ("torch-L2", 0.98, 0.99),
    "torch-bf16": ("torch-fp32", 0.999, 0.9995),
}

#: Largest |difference| allowed between batch_size=1 and batch_size=8 results. Float32
#: paths differ only by summation order; int8 ONNX runs one text per session.run, so it
#: is exact; bf16 rounds differently with padding, so it gets a cosine bound instead.
BATCH_ATOL = {"torch-bf16": None}
BATCH_ATOL_DEFAULT = 1e-5
BF16_BATCH_MIN_COSINE = 0.999


@pytest.fixture(scope="session")
def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def built(tmp_path_factory, _one_torch_thread) -> dict[str, Path]:
    """Every exported / distilled folder, built once per session into a tmp folder."""
    root = tmp_path_factory.mktemp("encoders")
    return {
        "onnx-fp32": export_onnx("minilm", root / "onnx-fp32"),
        "onnx-int8": export_onnx("minilm", root / "onnx-int8", precision="int8"),
        "onnx-fp32-L2": export_onnx("minilm", root / "onnx-fp32-L2", layers=2),
        "onnx-int8-L2": export_onnx("minilm", root / "onnx-int8-L2", precision="int8", layers=2),
        # One layer and 64 PCA dims keep the distillation (a forward pass per vocabulary
        # token) to a few seconds; the contract does not depend on the size.
        "static": distill_static("minilm", root / "static", layers=1, pca_dims=64),
    }


@pytest.fixture(scope="session")
def encoders(built, _one_torch_thread) -> dict[str, Encoder]:
    made: dict[str, Encoder] = {
        "tfidf": TfidfEncoder().fit(CORPUS),
        "torch-fp32": SentenceTransformerEncoder(batch_size=8, threads=1),
        "torch-bf16": SentenceTransformerEncoder(batch_size=8, threads=1, precision="bf16"),
        "torch-L2": SentenceTransformerEncoder(batch_size=8, threads=1, layers=2),
    }
    for name, folder in built.items():
        made[name] = load_saved_encoder(folder, threads=1)
    return made


@pytest.fixture(scope="session")
def vectors(encoders) -> dict[str, np.ndarray]:
    """Each backend's vectors for TEXTS, one text at a time (no padding involved)."""
    return {name: enc.encode(TEXTS, batch_size=1) for name, enc in encoders.items()}


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.slow
def test_backend_contract(name: str, encoders, vectors) -> None:
    encoder = encoders[name]
    assert isinstance(encoder, Encoder)
    dim = encoder.dim
    assert isinstance(dim, int) and dim > 0

    done: list[int] = []
    first = encoder.encode(TEXTS, batch_size=8, progress=done.append)
    assert first.shape == (len(TEXTS), dim) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert sum(done) == len(TEXTS) and all(k > 0 for k in done)
    np.testing.assert_allclose(first[0], first[-1], atol=1e-6)  # same text, same row

    # Deterministic: the same call twice gives identical vectors.
    np.testing.assert_array_equal(encoder.encode(TEXTS, batch_size=8), first)

    # Batching and order: batch_size 1 vs 8, and reversed input.
    singles = vectors[name]
    atol = BATCH_ATOL.get(name, BATCH_ATOL_DEFAULT)
    if atol is None:
        assert np.sum(singles * first, axis=1).min() >= BF16_BATCH_MIN_COSINE
    else:
        np.testing.assert_allclose(singles, first, atol=atol)
        np.testing.assert_allclose(encoder.encode(TEXTS[::-1], batch_size=8)[::-1], first, atol=atol)

    empty = encoder.encode([])
    assert empty.shape == (0, dim) and empty.dtype == np.float32
    for bad in ("", "   ", None, 42):
        with pytest.raises(ValueError, match="index 1"):
            encoder.encode(["fine text", bad])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        encoder.encode("a single string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(TEXTS, batch_size=0)


@pytest.mark.parametrize("name", sorted(AGREEMENT))
@pytest.mark.slow
def test_agreement_with_reference(name: str, vectors) -> None:
    reference, min_cos, mean_cos = AGREEMENT[name]
    cos = np.sum(vectors[name].astype(np.float64) * vectors[reference], axis=1)
    assert cos.min() >= min_cos, f"{name} vs {reference}: min cosine {cos.min():.6f} < {min_cos}"
    assert cos.mean() >= mean_cos, f"{name} vs {reference}: mean cosine {cos.mean():.6f} < {mean_cos}"


@pytest.mark.slow
def test_export_records_its_check(built) -> None:
    for name in ("onnx-fp32", "onnx-int8", "onnx-fp32-L2", "onnx-int8-L2"):
        config = read_config(built[name], kind="onnx")
        check = config["check"]
        assert check["n_texts"] == len(CHECK_TEXTS) and 0 < check["min_cosine"] <= check["mean_cosine"] <= 1.0 + 1e-6
        if "fp32" in name:
            assert check["min_cosine"] >= 0.999
        assert config["max_seq_length"] == 256 and config["dim"] == 384
        assert config["pooling"] == "mean" and config["normalize"] is True
        assert config["layers"] == (2 if name.endswith("L2") else None)
        assert {"onnxruntime", "onnx", "torch"} <= set(config["versions"])
    tokenizer = json.loads((built["onnx-fp32"] / "tokenizer.json").read_text())
    # MiniLM's shipped tokenizer.json truncates and pads to 128: the export must not.
    assert tokenizer["truncation"]["max_length"] == 256
    assert tokenizer["padding"]["strategy"] == "BatchLongest"
    static = read_config(built["static"], kind="static")
    assert static["dim"] == 64 and static["layers"] == 1 and static["pca_dims"] == 64


@pytest.mark.slow
def test_model_ids_are_stable_and_distinct(encoders, built) -> None:
    ids = {name: enc.model_id for name, enc in encoders.items()}
    assert len(set(ids.values())) == len(ids), ids
    assert all(enc.model_id == ids[name] for name, enc in encoders.items())
    for name, folder in built.items():
        assert load_saved_encoder(folder).model_id == ids[name]
    # The unpruned fp32 torch id is unchanged from before these options existed, and
    # naming the full depth is the same model.
    assert ids["torch-fp32"].endswith(":msl=default")
    assert SentenceTransformerEncoder(layers=6).model_id == ids["torch-fp32"]
    assert ids["torch-bf16"].endswith(":p=bf16") and ids["torch-L2"].endswith(":L=2")
    assert SentenceTransformerEncoder(precision="fp16").model_id not in ids.values()
    assert ids["onnx-int8-L2"].startswith("onnx:sentence-transformers/all-MiniLM-L6-v2@")
    assert ":p=int8:L=2:" in ids["onnx-int8-L2"]


def test_torch_options_are_validated() -> None:
    for bad in (0, 7, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="layers"):
            _ = SentenceTransformerEncoder(layers=bad).model_id  # type: ignore[arg-type]
    for bad in ("int8", "float32", None):
        with pytest.raises(ValueError, match="precision"):
            _ = SentenceTransformerEncoder(precision=bad).model_id  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="precision"):
        export_onnx("minilm", "/nonexistent/never-written", precision="bf16")


@pytest.mark.slow
def test_saved_encoders_are_estimators_and_pickle(encoders, built) -> None:
    from sklearn.base import clone

    onnx = encoders["onnx-int8"]
    assert onnx.get_params() == {"path": str(built["onnx-int8"]), "threads": 1, "batch_size": 32}
    copy = clone(onnx)
    np.testing.assert_array_equal(copy.encode(TEXTS[:3]), onnx.encode(TEXTS[:3]))
    restored = pickle.loads(pickle.dumps(encoders["static"]))
    np.testing.assert_array_equal(restored.encode(TEXTS[:3]), encoders["static"].encode(TEXTS[:3]))
    assert isinstance(restored, StaticEncoder) and isinstance(onnx, OnnxEncoder)
    with pytest.raises(ValueError, match="threads"):
        OnnxEncoder(str(built["onnx-int8"]), threads=0).encode(["x y"])


@pytest.mark.slow
def test_serving_imports_neither_torch_nor_transformers(built) -> None:
    code = textwrap.dedent(
        f"""
        import json, sys
        from leanrec.encoders import load_saved_encoder
        out = {{}}
        for key, path in (("onnx", {str(built["onnx-int8"])!r}), ("static", {str(built["static"])!r})):
            enc = load_saved_encoder(path, threads=1)
            out[key] = enc.encode(["Toy Story (1995)", "a heist thriller"]).shape
        heavy = [m for m in ("torch", "transformers", "sentence_transformers", "sklearn") if m in sys.modules]
        print(json.dumps({{"shapes": out, "heavy": heavy}}))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["shapes"] == {"onnx": [2, 384], "static": [2, 64]}
    assert report["heavy"] == []
    assert result.stderr == ""  # the library never prints


def _copy_config(src: Path, dst: Path, **changes: object) -> Path:
    dst.mkdir()
    config = json.loads((src / CONFIG_FILENAME).read_text())
    for key, value in changes.items():
        if value is ...:
            config.pop(key)
        else:
            config[key] = value
    (dst / CONFIG_FILENAME).write_text(json.dumps(config))
    return dst


@pytest.mark.slow
def test_malformed_saved_folders_fail_clearly(tmp_path, built) -> None:
    src = built["onnx-fp32"]
    with pytest.raises(InvalidEncoderFolderError, match=f"{CONFIG_FILENAME} is missing"):
        load_saved_encoder(tmp_path)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / CONFIG_FILENAME).write_text("{not json")
    with pytest.raises(InvalidEncoderFolderError, match="not valid JSON"):
        load_saved_encoder(tmp_path / "junk")
    with pytest.raises(InvalidEncoderFolderError, match="'dim'"):
        load_saved_encoder(_copy_config(src, tmp_path / "nodim", dim=...))
    with pytest.raises(InvalidEncoderFolderError, match="'kind'"):
        load_saved_encoder(_copy_config(src, tmp_path / "kind", kind="tensorflow"))
    with pytest.raises(InvalidEncoderFolderError, match="'format_version'.*upgrade"):
        load_saved_encoder(_copy_config(src, tmp_path / "future", format_version=99))
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        load_saved_encoder(_copy_config(src, tmp_path / "nomodel"))
    with pytest.raises(FileExistsError):
        export_onnx("minilm", tmp_path / "junk")


@pytest.mark.slow
def test_load_encoder_backends_build_once_into_the_cache(tmp_path, monkeypatch, built) -> None:
    """load_encoder exports/distills into <cache>/encoders once, then reuses the folder.

    The builders are replaced by copies of the session's folders: the real export and
    distillation are covered above; here we test the cache plumbing.
    """
    import leanrec.encoders.onnx_export as onnx_export
    import leanrec.encoders.static as static

    monkeypatch.setenv("LEANREC_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[tuple] = []

    def fake_export(model, out, **kwargs):
        calls.append(("onnx", kwargs))
        shutil.copytree(built["onnx-int8-L2"], out)
        return Path(out)

    def fake_distill(model, out, **kwargs):
        calls.append(("static", kwargs))
        shutil.copytree(built["static"], out)
        return Path(out)

    monkeypatch.setattr(onnx_export, "export_onnx", fake_export)
    monkeypatch.setattr(static, "distill_static", fake_distill)

    first = load_encoder("minilm", backend="onnx", precision="int8", layers=2)
    again = load_encoder("all-MiniLM-L6-v2", backend="onnx", precision="int8", layers=2, threads=1)
    assert isinstance(first, OnnxEncoder) and again.model_id == first.model_id
    assert calls == [("onnx", {"precision": "int8", "layers": 2, "max_seq_length": None, "int8_scheme": None})]
    assert Path(first.path).parent == tmp_path / "cache" / "encoders"
    assert "int8" in Path(first.path).name and "L2" in Path(first.path).name

    # An explicit int8 scheme is an export of its own, beside the one the model's hint chose.
    u8 = load_encoder("minilm", backend="onnx", precision="int8", layers=2, int8_scheme="u8")
    assert calls[-1] == ("onnx", {"precision": "int8", "layers": 2, "max_seq_length": None, "int8_scheme": "u8"})
    assert Path(u8.path).name == Path(first.path).name.replace("-int8-", "-int8-u8-")
    with pytest.raises(ValueError, match="int8_scheme applies to precision='int8' only"):
        load_encoder("minilm", backend="onnx", precision="fp32", int8_scheme="u8")
    del calls[-1]

    st = load_encoder("minilm", backend="static", pca_dims=64, layers=1)
    load_encoder("minilm", backend="static", pca_dims=64, layers=1)
    assert isinstance(st, StaticEncoder) and [c[0] for c in calls] == ["onnx", "static"]

    # A cache folder without a valid config is stale: rebuilt, not trusted.
    (Path(first.path) / CONFIG_FILENAME).write_text("{}")
    load_encoder("minilm", backend="onnx", precision="int8", layers=2)
    assert [c[0] for c in calls] == ["onnx", "static", "onnx"]

    # A saved folder given by path loads directly, and fixes its own options.
    assert isinstance(load_encoder(str(built["static"])), StaticEncoder)
    assert load_encoder(built["onnx-fp32"], threads=1).model_id == read_config(built["onnx-fp32"])["model_id"]
    with pytest.raises(ValueError, match="fixes the backend"):
        load_encoder(built["onnx-fp32"], precision="int8")


def test_load_encoder_option_errors() -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match="backend must be one of"):
        load_encoder("minilm", backend="tensorrt")
    with pytest.raises(ValueError, match="'int8' is not available on the 'torch' backend"):
        load_encoder("minilm", precision="int8")
    with pytest.raises(ValueError, match="'bf16' is not available on the 'onnx' backend"):
        load_encoder("minilm", backend="onnx", precision="bf16")
    with pytest.raises(ValueError, match="tfidf takes no backend"):
        load_encoder("tfidf", backend="onnx")
    with pytest.raises(ValueError, match="layers must be between 1 and 6"):
        load_encoder("minilm", layers=9)
    with pytest.raises(ValueError, match="layers must be between 1 and 6"):
        load_encoder("minilm", backend="onnx", layers=0)
    with pytest.raises(ValueError, match="not available offline"):
        load_encoder("bert-base-uncased", backend="onnx")
    encoder = load_encoder("minilm", precision="bf16", layers=3, threads=1)
    assert isinstance(encoder, SentenceTransformerEncoder) and not encoder.is_loaded
    assert encoder.model_id.endswith(":p=bf16:L=3")
    assert time.perf_counter() - start < 5.0  # all of this without loading weights
