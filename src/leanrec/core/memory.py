"""Resident memory of this process: now, and the peak within a block.

Lives in ``core`` (not ``cost``) because the experiment layer records each model's peak
memory beside its quality; :mod:`leanrec.cost.hardware` re-exports both names.
"""

from __future__ import annotations

import threading


def current_rss_bytes() -> int:
    """Resident memory of this process now, in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


class PeakMemory:
    """Peak RSS within a ``with`` block, sampled every ``interval_s`` by a background thread.

    >>> with PeakMemory() as mem:
    ...     work()
    >>> mem.peak_bytes, mem.delta_bytes   # peak inside the block; peak minus RSS at entry

    A sample is taken at entry and exit as well, so a block shorter than the interval still
    has a result. Allocations freed between two samples can be missed: keep ``interval_s``
    well below the duration of the step being measured.
    """

    def __init__(self, interval_s: float = 0.005):
        if not isinstance(interval_s, (int, float)) or isinstance(interval_s, bool) or not interval_s > 0:
            raise ValueError(f"interval_s must be a positive number of seconds, got {interval_s!r}")
        self.interval_s = float(interval_s)
        self.start_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def delta_bytes(self) -> int:
        """How far the peak rose above the RSS at entry (0 if it never did)."""
        return max(0, self.peak_bytes - self.start_bytes)

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, current_rss_bytes())

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self.start_bytes = current_rss_bytes()
        self.peak_bytes = self.start_bytes
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="leanrec-peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._sample()
