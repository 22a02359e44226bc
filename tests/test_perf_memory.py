"""Memory stays bounded over long runs: thousands of simulated ticks (sampler + Monitor with
alerts and history) and the live heap stops growing once the ring buffers are full.

Counted with ``sys.getallocatedblocks()`` (every live Python allocation) rather than
tracemalloc, which slows each tick about twelvefold: an object kept per tick would show as
thousands of blocks over the measured stretch; the bound allows a few hundred of noise."""

from __future__ import annotations

import gc
import sys

from gpuwatch.pipeline import Monitor, default_alert_engine
from gpuwatch.runtime import make_sampler
from gpuwatch.sim.box import ManualClock


def test_memory_stops_growing_over_thousands_of_ticks():
    clock = ManualClock()
    # a small box with faults that raise alerts; a short history so the buffers fill early
    sampler = make_sampler(demo="h100x2:hot,ecc", clock=clock, servers=False, discover=False, pcie_sample_s=0.0)
    monitor = Monitor(sampler, alert_engine=default_alert_engine(), history_points=300)
    try:
        def run(n):
            for _ in range(n):
                clock.advance(1.0)
                monitor.tick()

        run(600)  # past every ring buffer (300 points here) and the alerts' look-back (125 s)
        gc.collect()
        before = sys.getallocatedblocks()
        run(2000)
        gc.collect()
        growth = sys.getallocatedblocks() - before
        assert growth < 600, f"{growth} more live allocations after 2000 more ticks (a leak of one every 3 ticks)"
        assert len(monitor.history.times) == 300
    finally:
        monitor.close()
