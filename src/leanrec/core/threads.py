"""One place to set how many threads the numeric libraries may use, and to undo it.

Why: BLAS (numpy), OpenMP (faiss, ONNX Runtime's default build) and torch each keep their
own thread pool, and each defaults to every core it sees. On a small or shared machine
that oversubscribes the CPU: threads spin or wait on each other instead of computing. A
measured case, on the 2-core machine this library was first profiled on: MiniLM encoding
with torch fp32 ran at about 63 texts/s with 2 threads but 190-370 texts/s with 1 thread
while another process kept the second core busy. So a benchmark should pin its thread
count, say which it used (:func:`describe_threads`), and restore the process afterwards.

Nothing here imports torch or faiss: a library that is not loaded yet has no pool to set,
and importing torch only to set a number would cost seconds and hundreds of megabytes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["THREAD_ENV_VARS", "thread_budget", "default_threads", "describe_threads"]

#: The environment variables that set thread pools before a process starts.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _check_threads(n, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive integer number of threads, got {n!r}")
    return n


@contextmanager
def thread_budget(n: int) -> Iterator[int]:
    """Run the block with at most ``n`` threads in BLAS/OpenMP, torch and faiss; restore after.

    * BLAS and OpenMP libraries already loaded: via ``threadpoolctl.threadpool_limits``.
    * torch, only if already imported: ``torch.set_num_threads`` (intra-op pool).
    * faiss, only if already imported: ``faiss.omp_set_num_threads``.

    ONNX Runtime ignores all of these: give it ``intra_op_num_threads`` in its session
    options. Yields ``n``. Previous settings come back on exit, also after an exception.

    A library first imported *inside* the block is not limited (measured: faiss imported
    during an index build ran with its default 2 OpenMP threads). Import it first, or set
    ``OMP_NUM_THREADS`` before the process starts, as ``leanrec cost bench``'s workers do.
    """
    from threadpoolctl import threadpool_limits

    _check_threads(n)
    torch = sys.modules.get("torch")
    faiss = sys.modules.get("faiss")
    old_torch = torch.get_num_threads() if torch is not None else None
    old_faiss = faiss.omp_get_max_threads() if faiss is not None else None
    limiter = threadpool_limits(limits=n)
    try:
        if torch is not None:
            torch.set_num_threads(n)
        if faiss is not None:
            faiss.omp_set_num_threads(n)
        yield n
    finally:
        limiter.restore_original_limits()
        if torch is not None and old_torch is not None:
            torch.set_num_threads(old_torch)
        if faiss is not None and old_faiss is not None:
            faiss.omp_set_num_threads(old_faiss)


def default_threads() -> int:
    """A thread count that is safe when other work shares the machine.

    1 on a machine with at most 2 logical cores (see the module docstring: two OpenMP
    threads on two busy cores ran 3-6x slower than one); otherwise half the physical cores,
    at most 4, since inference on short texts gains little beyond 4 threads and leaves the
    rest of the machine for the index, the web server or a second worker.
    """
    import psutil

    logical = psutil.cpu_count(logical=True) or 1
    if logical <= 2:
        return 1
    physical = psutil.cpu_count(logical=False) or logical
    return max(1, min(4, physical // 2))


def describe_threads() -> dict:
    """The thread settings in force now, JSON-ready.

    Keys: ``torch`` (``torch.get_num_threads()``, or None when torch is not imported),
    ``faiss`` (likewise), ``pools`` (one entry per loaded BLAS/OpenMP library from
    threadpoolctl: ``user_api``, ``internal_api``, ``num_threads``, ``version``) and
    ``env`` (the thread environment variables, None when unset).
    """
    from threadpoolctl import threadpool_info

    torch = sys.modules.get("torch")
    faiss = sys.modules.get("faiss")
    pools = [{k: info.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
             for info in threadpool_info()]
    return {
        "torch": torch.get_num_threads() if torch is not None else None,
        "faiss": faiss.omp_get_max_threads() if faiss is not None else None,
        "pools": pools,
        "env": {var: os.environ.get(var) for var in THREAD_ENV_VARS},
    }
