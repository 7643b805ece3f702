"""Facts about the machine a measurement ran on, and its memory use.

Why: a throughput or latency number means little without the CPU, its instruction set
and the thread settings behind it. The flags that matter for inference cost are the
matrix-multiply extensions: AVX2/FMA (every recent x86), AVX-512 and its BF16/VNNI
extensions, AVX-VNNI (int8 dot products without AVX-512) and AMX (tile matrix units on
Sapphire Rapids and later). Whether int8 or bf16 pays off on a machine follows from them.

Nothing here imports torch or the other heavy libraries: versions come from package
metadata, so collecting them does not change the process being measured.

Memory: ``ru_maxrss`` is the peak over the whole process lifetime, so it cannot tell what
one step used once an earlier step peaked higher; :class:`PeakMemory` samples the current
RSS in a background thread instead.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from ..core.memory import PeakMemory, current_rss_bytes  # noqa: F401  (re-exported: cost's API)
from ..core.threads import THREAD_ENV_VARS

__all__ = ["INSTRUCTION_FLAGS", "THREAD_ENV_VARS", "PACKAGES", "machine_info", "cpu_flags", "parse_cpuinfo",
           "peak_rss_bytes", "current_rss_bytes", "PeakMemory"]

INSTRUCTION_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni",
                     "amx_bf16", "amx_int8", "amx_tile")
# Distribution names as pip knows them; the key is what reports call them.
PACKAGES = {"numpy": "numpy", "torch": "torch", "onnxruntime": "onnxruntime", "faiss": "faiss-cpu",
            "sentence-transformers": "sentence-transformers", "transformers": "transformers",
            "model2vec": "model2vec"}


def parse_cpuinfo(text: str) -> dict:
    """Model name, vendor and the relevant instruction flags from ``/proc/cpuinfo`` text.

    Reads the first processor block (all cores of one machine share a model and flags).
    Returns ``{"model": str | None, "vendor": str | None, "flags": {flag: bool}}``.
    """
    model = vendor = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "model name" and model is None:
            model = value
        elif key == "vendor_id" and vendor is None:
            vendor = value
        elif key in ("flags", "features") and not flags:  # "Features" on ARM
            flags = set(value.split())
    return {"model": model, "vendor": vendor, "flags": {f: f in flags for f in INSTRUCTION_FLAGS}}


def cpu_flags(cpuinfo_path: str | Path = "/proc/cpuinfo") -> dict:
    """:func:`parse_cpuinfo` of this machine; off Linux, model from :mod:`platform`, flags unknown (None)."""
    try:
        text = Path(cpuinfo_path).read_text(errors="replace")
    except OSError:
        return {"model": platform.processor() or None, "vendor": None,
                "flags": {f: None for f in INSTRUCTION_FLAGS}}
    return parse_cpuinfo(text)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """A JSON-ready description of this machine and the software that matters for cost.

    Keys: ``cpu_model``, ``cpu_vendor``, ``logical_cores``, ``physical_cores``,
    ``ram_bytes``, ``flags`` (``{flag: bool | None}`` for :data:`INSTRUCTION_FLAGS`; None
    when unknown), ``os``, ``machine``, ``python``, ``packages`` (``{name: version | None}``)
    and ``env`` (the thread variables, None when unset).
    """
    import psutil

    cpu = cpu_flags()
    return {
        "cpu_model": cpu["model"],
        "cpu_vendor": cpu["vendor"],
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_bytes": int(psutil.virtual_memory().total),
        "flags": cpu["flags"],
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "packages": {name: _version(dist) for name, dist in PACKAGES.items()},
        "env": {var: os.environ.get(var) for var in THREAD_ENV_VARS},
    }


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far, in bytes (lifetime peak, never decreases).

    ``ru_maxrss`` is in kilobytes on Linux and in bytes on macOS. On Windows (no
    :mod:`resource`) the psutil peak working set is used.
    """
    # Linux: VmHWM is the high-water mark of this address space. ru_maxrss is not enough
    # there: it survives fork+exec, so a worker started by a big parent would report the
    # parent's peak (every bench worker then "peaked" at its parent's size).
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


