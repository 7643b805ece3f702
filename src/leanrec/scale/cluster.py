"""A Dask client for a scheduler address, or a local cluster on 127.0.0.1 that is closed after.

Why a context manager: a ``LocalCluster`` owns worker processes; leaving one behind (a test
that fails, a CLI interrupted) keeps CPU and ports busy. :func:`connect` closes exactly what
it started: the client always, the cluster only when it created it (an external scheduler
is never shut down).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SchedulerUnreachableError", "connect", "local_cluster_env"]


class SchedulerUnreachableError(ConnectionError):
    """No Dask scheduler answered at the given address within the timeout."""


def local_cluster_env(threads_per_worker: int) -> dict[str, str]:
    """Environment for each worker process: BLAS/OpenMP pools sized to the thread budget.

    Set before the worker starts because a library's pool is sized when it loads (see
    :func:`leanrec.core.threads.thread_budget`); the tasks also run inside that budget.
    """
    n = str(int(threads_per_worker))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
            "VECLIB_MAXIMUM_THREADS": n, "NUMEXPR_NUM_THREADS": n,
            "RAYON_NUM_THREADS": n}  # Hugging Face tokenizers (static and ONNX encoders) use rayon


@contextmanager
def connect(address: str | None = None, *, workers: int = 2, threads_per_worker: int = 1,
            timeout: float = 10.0, memory_limit: str | float | None = "auto") -> Iterator:
    """Yield a :class:`distributed.Client`; close it (and any cluster started here) on exit.

    ``address`` (``"tcp://host:8786"`` or ``"host:8786"``): an existing scheduler; waits at
    most ``timeout`` seconds, then raises :class:`SchedulerUnreachableError` naming the
    address. ``None``: a ``LocalCluster`` of ``workers`` processes with
    ``threads_per_worker`` threads each, listening on 127.0.0.1 only, no dashboard.
    """
    from distributed import Client, LocalCluster

    for name, value in (("workers", workers), ("threads_per_worker", threads_per_worker)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if address is not None:
        if not isinstance(address, str) or not address.strip():
            raise ValueError(f"scheduler address must be a non-empty string, got {address!r}")
        try:
            client = Client(address.strip(), timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise SchedulerUnreachableError(
                f"could not reach a Dask scheduler at {address!r} within {timeout:g} s ({exc}); "
                "check the address and that `dask scheduler` is running there, or omit --scheduler "
                "to run on a local cluster") from None
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(host="127.0.0.1", n_workers=workers, threads_per_worker=threads_per_worker,
                           processes=True, dashboard_address=None, memory_limit=memory_limit,
                           silence_logs=logging.ERROR, env=local_cluster_env(threads_per_worker))
    try:
        client = Client(cluster, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()
