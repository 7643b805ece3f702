"""Machine facts, thread budgets, memory peaks and the matmul roofline."""

import json
import math
import os
import sys

import numpy as np
import pytest

from leanrec.cost.hardware import (INSTRUCTION_FLAGS, PeakMemory, current_rss_bytes, machine_info,
                                   parse_cpuinfo, peak_rss_bytes)
from leanrec.cost.roofline import bert_config_flops, bert_flops_per_token, matmul_rate
from leanrec.core.threads import default_threads, describe_threads, thread_budget

FAKE_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx avx2 fma f16c avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse
"""


def test_machine_info_keys_and_types():
    info = machine_info()
    json.dumps(info)  # JSON-ready
    assert isinstance(info["logical_cores"], int) and info["logical_cores"] >= 1
    assert info["physical_cores"] is None or info["physical_cores"] >= 1
    assert isinstance(info["ram_bytes"], int) and info["ram_bytes"] > 0
    assert set(info["flags"]) == set(INSTRUCTION_FLAGS)
    assert all(v is None or isinstance(v, bool) for v in info["flags"].values())
    assert info["packages"]["numpy"] == np.__version__
    assert set(info["env"]) == {"OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"}
    assert isinstance(info["python"], str) and isinstance(info["os"], str)


def test_machine_info_does_not_import_torch():
    import subprocess

    code = "import sys; from leanrec.cost.hardware import machine_info; machine_info(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parse_cpuinfo_reads_the_first_block():
    parsed = parse_cpuinfo(FAKE_CPUINFO)
    assert parsed["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert parsed["vendor"] == "GenuineIntel"
    flags = parsed["flags"]
    for f in ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8",
              "amx_tile"):
        assert flags[f] is True, f
    assert flags["avx_vnni"] is False
    assert parse_cpuinfo("")["flags"]["avx2"] is False


def test_rss_helpers():
    assert current_rss_bytes() > 10 * 2**20
    assert peak_rss_bytes() >= current_rss_bytes() * 0.5  # same units (bytes), peak >= now


def test_peak_memory_sees_a_200_mb_allocation():
    with PeakMemory(interval_s=0.002) as mem:
        block = np.ones(200 * 2**20, dtype=np.uint8)  # touched, so resident
        del block
    assert mem.delta_bytes > 150 * 2**20
    assert mem.peak_bytes >= mem.start_bytes
    with pytest.raises(ValueError, match="interval_s"):
        PeakMemory(interval_s=0)


def test_thread_budget_sets_and_restores():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info()]

    before = blas_threads()
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    with thread_budget(1) as n:
        assert n == 1
        assert all(t == 1 for t in blas_threads())
        if torch is not None:
            assert torch.get_num_threads() == 1
    assert blas_threads() == before
    if torch is not None:
        assert torch.get_num_threads() == torch_before
    with pytest.raises(ValueError, match="n must be"):
        with thread_budget(0):
            pass


def test_thread_budget_restores_after_an_exception():
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info()]
    with pytest.raises(RuntimeError):
        with thread_budget(1):
            raise RuntimeError("boom")
    assert [p["num_threads"] for p in threadpool_info()] == before


def test_default_threads_and_describe():
    n = default_threads()
    assert 1 <= n <= 4
    if (os.cpu_count() or 1) <= 2:
        assert n == 1
    d = describe_threads()
    assert "torch" in d and "pools" in d and isinstance(d["pools"], list)
    json.dumps(d)


def test_bert_flops_counts_exactly():
    # MiniLM-L6: hidden 384, intermediate 1536, 6 layers
    per_layer = 2 * (4 * 384 * 384 + 2 * 384 * 1536)
    assert bert_flops_per_token(384, 1536, 6) == 6 * per_layer == 21_233_664
    assert bert_flops_per_token(384, 1536, 6, seq_len=128) == 6 * (per_layer + 4 * 128 * 384)
    with pytest.raises(ValueError, match="hidden"):
        bert_flops_per_token(0, 1536, 6)
    with pytest.raises(ValueError, match="seq_len"):
        bert_flops_per_token(384, 1536, 6, seq_len=-1)


def test_bert_config_flops(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6, "model_type": "bert"}))
    assert bert_config_flops(tmp_path) == pytest.approx(21.2e6, rel=2e-3)
    assert bert_config_flops(tmp_path / "config.json") == 21_233_664
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"hidden_size": 384}))
    with pytest.raises(ValueError, match="intermediate_size"):
        bert_config_flops(tmp_path / "bad")
    with pytest.raises(ValueError, match="config.json"):
        bert_config_flops(tmp_path / "missing")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_matmul_rate_tiny_shapes(precision):
    r = matmul_rate(precision, threads=1, m=64, k=32, n=48, repeats=3, min_time_s=0.0)
    assert r["gflops"] > 0 and math.isfinite(r["gflops"])
    assert len(r["samples"]) >= 3
    assert r["shape"] == (64, 32, 48) and r["precision"] == precision and r["threads"] == 1
    if precision == "int8":
        assert r["backend"] == "onnxruntime" and r["ops"]


def test_matmul_rate_bad_arguments():
    with pytest.raises(ValueError, match="precision"):
        matmul_rate("fp8")
    with pytest.raises(ValueError, match="backend"):
        matmul_rate("int8", backend="numpy")
    with pytest.raises(ValueError, match="threads"):
        matmul_rate("fp32", threads=0)
    with pytest.raises(ValueError, match="min_time_s"):
        matmul_rate("fp32", min_time_s=-1)


def test_bench_workers_get_the_thread_budget_in_their_environment(tmp_path, monkeypatch):
    """OpenMP libraries imported inside a measurement must still keep the budget."""
    import json

    from leanrec.cost import bench

    seen = {}

    class FakePopen:
        def __init__(self, args, env, **kw):
            seen.update(env)
            json_path = args[-1]
            with open(json_path, "w") as fh:
                json.dump({"ok": True}, fh)
            self.stderr = iter(())

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(bench.subprocess, "Popen", FakePopen)
    assert bench.run_worker({"kind": "index", "threads": 3})["ok"] is True
    assert seen["OMP_NUM_THREADS"] == "3" and seen["OMP_WAIT_POLICY"]
    bench.run_worker({"kind": "pipeline", "config": {"threads": 1}})
    assert seen["OMP_NUM_THREADS"] == "1"
