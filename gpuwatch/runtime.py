"""The one place where gpuwatch is assembled: a :class:`~gpuwatch.pipeline.Monitor` (sampler +
alerts + history) from :class:`~gpuwatch.config.Settings`, on the real box or, for ``--demo``, on
the simulated one. Every front end (dashboard, snapshot, doctor, record, serve, svg) gets its
monitor here, so a change to how the pipeline is wired reaches all of them at once. This is the
only production module that imports :mod:`gpuwatch.sim`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .analysis.alerts import AlertEngine
from .analysis.pools import DEFAULT_WINDOW_S, PoolAnalysis
from .collect.instances import InstanceCollector
from .collect.targets import BackendConfig
from .collect.nginx import DEFAULT_NGINX_CONF, MeterRoutes, NginxPools
from .collect.nvml import NvmlCollector
from .collect.procs import ProcessTable
from .config import Settings
from .model import Snapshot
from .pipeline import Monitor, Sampler

if TYPE_CHECKING:
    from .sim.demo import Demo

# A one-shot look at the simulated box (snapshot, doctor, record, svg) finds it already running
# for this long, so its faults are established and its alerts past their raise delay.
DEMO_WARMUP_S = 60.0


@dataclass
class DemoSampler(Sampler):
    """A sampler over the simulated box; ``demo`` is the box, its servers and fake driver."""

    demo: Demo | None = None


def make_sampler(demo: str | None = None, backends=(), discover: bool = True, clock=None,
                 latency_s: float = 0.0, pcie_sample_s: float = 0.02, servers: bool = True,
                 instance_timeout_s: float = 1.5, start_offset_s: float = 0.0,
                 nginx_conf: str | None = None, pool_window_s: float | None = None) -> Sampler:
    """The sampler for the real box (``demo=None``) or the simulated scenario ``demo``.
    ``nginx_conf``: read pools from this file (default: /etc/nginx/nginx.conf on the real box,
    the scenario's own on the simulated one)."""
    if demo is not None:
        from .sim.demo import start_demo  # only for --demo: a real box never loads the simulator

        d = start_demo(demo, clock=clock, latency_s=latency_s, pcie_sample_s=pcie_sample_s, servers=servers,
                       start_offset_s=start_offset_s)
        table = d.process_table
        nvml = NvmlCollector(process_table=table, clock=d.box.clock.now, host=d.host)
        instances = _instance_collector(backends, discover, table, instance_timeout_s, d.box.clock.now)
        sampler = DemoSampler(nvml=nvml, instances=instances, source="simulated", scenario=d.spec,
                              wall=d.wall, host=f"demo-{d.box.scenario.name}", demo=d)
        sampler.on_close.append(d.close)
        if nginx_conf or d.nginx_conf:  # the simulated box has nginx only if its scenario brings one
            _add_pools(sampler, table, nginx_conf or d.nginx_conf, bool(nginx_conf), pool_window_s)
        return sampler
    table = ProcessTable()
    nvml = NvmlCollector(process_table=table)
    instances = _instance_collector(backends, discover, table, instance_timeout_s, time.monotonic)
    sampler = Sampler(nvml=nvml, instances=instances)
    _add_pools(sampler, table, nginx_conf or DEFAULT_NGINX_CONF, bool(nginx_conf), pool_window_s)
    return sampler


def _add_pools(sampler: Sampler, table, path: str, required: bool, window_s: float | None) -> None:
    """nginx upstreams as replica pools: read by collect/nginx.py, resolved by analysis/pools.py;
    members that are ``gpuwatch meter`` routes stand for the instance behind them."""
    routes = MeterRoutes(table)
    sampler.pools = NginxPools(path, required=required, routes=routes)
    sampler.analyzers.append(PoolAnalysis(window_s or DEFAULT_WINDOW_S, routes=routes))


def _instance_collector(backends, discover, table, timeout_s, clock) -> InstanceCollector | None:
    if not backends and not discover:
        return None
    return InstanceCollector([b if isinstance(b, BackendConfig) else BackendConfig(url=b) for b in backends],
                             discover=discover, process_table=table, timeout_s=timeout_s, clock=clock)


def build_monitor(settings: Settings, *, one_shot: bool = False, history_points: int = 600) -> Monitor:
    """The live pipeline for ``settings``. ``one_shot``: for a look that samples a short window
    (snapshot, doctor, record) rather than a view that runs from now on: the simulated box is
    then found already running for :data:`DEMO_WARMUP_S`."""
    offset = DEMO_WARMUP_S if (one_shot and settings.demo is not None) else 0.0
    sampler = make_sampler(demo=settings.demo, backends=settings.backends, discover=settings.discover,
                           start_offset_s=offset, nginx_conf=settings.nginx_conf)
    return Monitor(sampler, AlertEngine(settings.alerts), history_points=history_points)


def sample_window(settings: Settings, count: int = 2, interval: float | None = None) -> list[Snapshot]:
    """``count`` snapshots one interval apart with the alerts seen over the window on the last."""
    monitor = build_monitor(settings, one_shot=True, history_points=count)
    try:
        return monitor.window(count, settings.interval if interval is None else interval)
    finally:
        monitor.close()


def simulated_history(settings: Settings, seconds: float = DEMO_WARMUP_S) -> Monitor:
    """The simulated box driven by hand through ``seconds`` simulated seconds, one sample a
    second, with alerts and history as a live view would have them: for pictures of the demo
    (``snapshot --svg``) that show history in about a second of real time. The returned
    monitor's sampler is already closed; its ``history``, ``alerts`` and ``last`` are kept."""
    if settings.demo is None:
        raise ValueError("simulated_history needs a demo scenario")
    from .sim.box import ManualClock

    clock = ManualClock()
    sampler = make_sampler(demo=settings.demo, clock=clock)
    monitor = Monitor(sampler, AlertEngine(settings.alerts), history_points=max(600, int(seconds)))
    try:
        for _ in range(int(seconds)):
            clock.advance(1.0)
            monitor.observe(sampler.sample(wait_instances=True))
    finally:
        monitor.close()
    return monitor
