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


def test_a_settled_heap_still_collects_what_is_made_after(tmp_path):
    """The dashboards freeze their start-up heap once started (runtime.settle_heap_later):
    in a process of its own (a test must not freeze pytest's heap), the freeze waits for its event,
    and cycles made afterwards are still collected."""
    import subprocess
    import textwrap

    code = textwrap.dedent("""
        import gc, threading, weakref
        from gpuwatch.runtime import settle_heap_later
        started = threading.Event()
        t = settle_heap_later(after=started, delay_s=0.05)
        t.join(0.3)
        assert t.is_alive() and gc.get_freeze_count() == 0, "froze before its event"
        started.set()
        t.join(10)
        assert not t.is_alive() and gc.get_freeze_count() > 1000, gc.get_freeze_count()
        class Node: pass
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None, "a cycle made after the freeze was not collected"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
