"""Memory stays bounded over long runs: thousands of simulated ticks (sampler + Monitor with
alerts and history) and the live heap stops growing once the ring buffers are full."""

from __future__ import annotations

import gc
import tracemalloc

from gpuwatch.pipeline import Monitor, default_alert_engine, make_sampler
from gpuwatch.sim.box import ManualClock


def test_memory_stops_growing_over_thousands_of_ticks():
    clock = ManualClock()
    # a small box with faults that raise and clear alerts; a short history so it fills early
    sampler = make_sampler(demo="h100x2:hot,ecc", clock=clock, servers=False, discover=False, pcie_sample_s=0.0)
    monitor = Monitor(sampler, alert_engine=default_alert_engine(), history_points=300)
    try:
        def run(n):
            for _ in range(n):
                clock.advance(1.0)
                monitor.tick()

        run(1500)  # past every ring buffer and the alerts' look-back window
        gc.collect()
        tracemalloc.start()
        try:
            run(1500)
            gc.collect()
            at_3000 = tracemalloc.get_traced_memory()[0]
            run(1500)
            gc.collect()
            at_4500 = tracemalloc.get_traced_memory()[0]
            top = tracemalloc.take_snapshot().statistics("lineno")[:5]
        finally:
            tracemalloc.stop()
        growth = at_4500 - at_3000
        assert growth < 64 * 1024, f"grew {growth} bytes between tick 3000 and 4500; top: {top}"
        assert len(monitor.history.times) == 300
    finally:
        monitor.close()
