"""Where the dashboard's CPU goes, part by part, on the simulated box (scenario h100x8-4i).

    python bench/parts.py [--ticks N]

Three measurements, each of one part alone, as CPU time (not wall time):

* paint: the headless dashboard fed pre-collected snapshots 20 times a second; CPU of the
  process per painted tick (building the card lines, Textual's compositor, the headless driver);
* tick: ``Monitor.tick`` (NVML collection through the simulated library, without its per-call
  latency, plus alerts and history); CPU of the calling thread per tick;
* servers: one ``InstanceCollector.collect()`` of the four simulated servers, which run in a
  child process so that only the client's work is counted.

``bench/run.py`` measures the whole dashboard against nvitop; this script says which part to
look at when that figure moves.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCENARIO = "h100x8-4i"


def paint_ms(ticks: int) -> float:
    from gpuwatch.frontends.tui.app import GpuWatchApp
    from gpuwatch.pipeline import Monitor
    from gpuwatch.runtime import make_sampler
    from gpuwatch.sim.box import ManualClock

    clock = ManualClock()
    mon = Monitor(make_sampler(demo=SCENARIO, clock=clock))
    snaps = []
    for _ in range(90):
        clock.advance(1.0)
        snap = mon.sampler.sample(wait_instances=True)
        mon.observe(snap)
        snaps.append(snap)
    mon.close()

    class Source:
        live = True
        history = mon.history
        alert_log = mon.alerts
        bench_target = None

        def __init__(self) -> None:
            self.n = 0

        def next(self):
            snap = snaps[30 + self.n % 60]
            self.n += 1
            self.history.add(snap)
            return snap

        def close(self) -> None:
            pass

    async def run() -> float:
        src = Source()
        app = GpuWatchApp(src, interval=0.05)
        async def until(n: int) -> None:
            # a dashboard that stopped (an exception in a handler ends the app) must not leave
            # this waiting for ever: say so instead
            deadline = time.monotonic() + 30 + n
            while src.n < n:
                if not app.is_running or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard stopped polling after {src.n} snapshots")
                await asyncio.sleep(0.05)

        async with app.run_test(size=(200, 60)):
            await until(10)
            t0, n0 = time.process_time(), src.n
            await until(n0 + ticks)
            return 1000 * (time.process_time() - t0) / (src.n - n0)

    return asyncio.run(run())


def tick_ms(ticks: int) -> float:
    from gpuwatch.pipeline import Monitor
    from gpuwatch.runtime import make_sampler

    mon = Monitor(make_sampler(demo=SCENARIO))
    try:
        for _ in range(3):
            mon.tick()
            time.sleep(0.2)
        spent = []
        for _ in range(ticks):
            t0 = time.thread_time()
            mon.tick()
            spent.append(time.thread_time() - t0)
            time.sleep(0.1)
        return 1000 * statistics.median(spent)
    finally:
        mon.close()


def _serve(conn) -> None:
    from gpuwatch.sim.box import RealClock, SimBox
    from gpuwatch.sim.scenarios import parse_scenario
    from gpuwatch.sim.servers import start_sim_servers

    scen, faults = parse_scenario(SCENARIO)
    box = SimBox(scen, faults, RealClock())
    start_sim_servers(box)
    conn.send({name: port for name, port in box.ports.items()})
    conn.recv()


def servers_ms(polls: int) -> float:
    from gpuwatch.collect.instances import BackendConfig, InstanceCollector
    from gpuwatch.sim.scenarios import parse_scenario

    scen, _ = parse_scenario(SCENARIO)
    kinds = {inst.name: inst.kind for inst in scen.instances}
    ours, theirs = mp.Pipe()
    child = mp.Process(target=_serve, args=(theirs,), daemon=True)
    child.start()
    try:
        ports = ours.recv()
        backends = [BackendConfig(url=f"http://127.0.0.1:{port}", kind=kinds[name]) for name, port in ports.items()]
        col = InstanceCollector(backends, discover=False)
        try:
            for _ in range(5):
                col.collect()
            t0 = time.process_time()
            for _ in range(polls):
                col.collect()
            return 1000 * (time.process_time() - t0) / polls
        finally:
            col.close()
    finally:
        ours.send(None)
        child.join(5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=150)
    args = ap.parse_args()
    rows = [
        ("paint, per tick (8 GPU cards + 4 servers, 200×60, headless)", paint_ms(args.ticks)),
        ("collection tick, thread CPU (NVML without call latency + alerts)", tick_ms(min(args.ticks, 60))),
        ("server poll, 4 servers, client CPU", servers_ms(args.ticks)),
    ]
    print(f"# gpuwatch parts: scenario {SCENARIO}, Python {sys.version.split()[0]}")
    print("| part | CPU per tick |")
    print("|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
