"""PeakMemory lives in core (the experiment layer records it) and cost re-exports the same object."""

import numpy as np

from leanrec.core.memory import PeakMemory, current_rss_bytes
from leanrec.cost import hardware


def test_cost_reexports_the_core_implementation():
    assert hardware.PeakMemory is PeakMemory and hardware.current_rss_bytes is current_rss_bytes


def test_peak_sees_an_allocation_freed_inside_the_block():
    with PeakMemory(interval_s=0.001) as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        block.sum()
        del block
    assert mem.delta_bytes >= 32 * 2**20
    assert mem.peak_bytes >= mem.start_bytes
