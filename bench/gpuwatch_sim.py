"""Run gpuwatch's dashboard on the simulated box the way the benchmark needs it.

    python bench/gpuwatch_sim.py [--scenario h100x8-4i] [--latency-us 30] [--interval 1]
                                 [--backend URL]... [--paint-log FILE]

The same app as ``gpuwatch --demo SCENARIO`` (make_sampler + Monitor + GpuWatchApp), with two
differences that make the comparison with nvitop fair and measurable:

* the simulated inference servers run in a child process (on a real box they are other
  processes too), so the dashboard process holds only gpuwatch and the fake NVML library;
  the child shares the box's start time, so both see the same numbers;
* every NVML call costs ``--latency-us`` of busy CPU, as an ioctl into the driver does.

``--paint-log FILE`` appends ``time.monotonic()`` of every painted tick (for the
refresh-on-time measurement while a backend hangs).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _serve(scenario: str, conn) -> None:
    """Child: the simulated servers of ``scenario``; exits when the parent goes away."""
    from gpuwatch.sim.box import RealClock, SimBox
    from gpuwatch.sim.scenarios import parse_scenario
    from gpuwatch.sim.servers import start_sim_servers

    scen, faults = parse_scenario(scenario)
    box = SimBox(scen, faults, RealClock())
    servers = start_sim_servers(box)
    conn.send((box.t0, dict(box.ports)))
    try:
        conn.recv()  # EOF when the parent exits
    except (EOFError, OSError):
        pass
    servers.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="h100x8-4i")
    ap.add_argument("--latency-us", type=float, default=30.0)
    ap.add_argument("--pcie-sample-ms", type=float, default=20.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--backend", action="append", default=[])
    ap.add_argument("--no-servers", action="store_true", help="no simulated inference servers")
    ap.add_argument("--paint-log", metavar="FILE")
    args = ap.parse_args()

    ports: dict[str, int] = {}
    offset = 0.0
    child = None
    if not args.no_servers:
        parent_conn, child_conn = mp.get_context("spawn").Pipe()
        child = mp.get_context("spawn").Process(target=_serve, args=(args.scenario, child_conn), daemon=True)
        child.start()
        t0, ports = parent_conn.recv()
        offset = time.monotonic() - t0

    from gpuwatch.frontends.tui.app import GpuWatchApp, LiveSource
    from gpuwatch.pipeline import Monitor, default_alert_engine
    from gpuwatch.runtime import make_sampler

    sampler = make_sampler(demo=args.scenario, backends=args.backend, discover=True, latency_s=args.latency_us / 1e6,
                           pcie_sample_s=args.pcie_sample_ms / 1000, servers=False, start_offset_s=offset)
    sampler.demo.box.ports.update(ports)
    monitor = Monitor(sampler, alert_engine=default_alert_engine({}))

    import gpuwatch.frontends.tui.app as app_module

    class App(GpuWatchApp):
        CSS_PATH = str(Path(app_module.__file__).with_name("gpuwatch.tcss"))

        def _apply_collected(self, snap, error, elapsed):
            super()._apply_collected(snap, error, elapsed)
            if args.paint_log and snap is not None:
                with open(args.paint_log, "a") as f:
                    f.write(f"{time.monotonic():.4f} {snap.collect_ms}\n")

    app = App(LiveSource(monitor), interval=args.interval)
    try:
        app.run()
    finally:
        monitor.close()
        if child is not None:
            child.kill()
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
