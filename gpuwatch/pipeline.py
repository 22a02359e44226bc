"""The pipeline: collectors -> analysis -> one Snapshot per tick.

Front ends (dashboard, snapshot JSON, recorder, exporter) ask a :class:`Sampler` for
snapshots and only present them. GPU collection is fast and runs on every tick; inference
servers are polled on a separate thread so that a server that hangs never delays the GPU
picture (its last result is reused until the next poll finishes).
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from .collect.nvml import NvmlCollector
from .model import Instance, Snapshot


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_analyzers() -> list[Callable[[Snapshot], None]]:
    """Analysis steps that annotate every snapshot (instance <-> GPU join, ...)."""
    steps = []
    try:
        from .analysis.groups import assign_gpus
        steps.append(assign_gpus)
    except ImportError:  # pragma: no cover - before the instances layer lands
        pass
    return steps


@dataclass
class Sampler:
    nvml: NvmlCollector
    instances: object | None = None  # anything with collect() -> list[Instance]
    host: str = field(default_factory=socket.gethostname)
    source: str = "nvml"
    scenario: str | None = None
    wall: Callable[[], float] = time.time
    analyzers: list = field(default_factory=default_analyzers)
    on_close: list = field(default_factory=list)
    instance_wait_s: float = 5.0  # the longest a waiting sample() waits for the servers
    pools: object | None = None  # anything with collect() -> list[Pool] (collect/nginx.py)

    def __post_init__(self) -> None:
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpuwatch-instances")
        self._pending: cf.Future | None = None
        self._last_instances: list[Instance] = []

    def _instances(self, wait: bool) -> list[Instance]:
        if self.instances is None:
            return []
        if self._pending is None:
            self._pending = self._pool.submit(self.instances.collect)
        if wait:  # bounded even if a collector misbehaves: the GPU picture must never hang on it
            cf.wait([self._pending], timeout=self.instance_wait_s)
        if self._pending.done():
            try:
                self._last_instances = self._pending.result()
            except Exception:  # a collector bug must not stop the GPU picture
                pass
            self._pending = None
            if not wait:  # start the next poll now, so it overlaps the interval
                self._pending = self._pool.submit(self.instances.collect)
        return self._last_instances

    def sample(self, wait_instances: bool = False) -> Snapshot:
        start = time.perf_counter()
        reading = self.nvml.collect()
        pools = self._pools()  # first: it tells the instance collector where nginx's servers are
        instances = self._instances(wait_instances)
        snap = Snapshot(
            time=iso(self.wall()), host=self.host, driver_version=reading.driver_version,
            cuda_version=reading.cuda_version, nvml_version=reading.nvml_version, nvml_error=reading.error,
            gpus=reading.gpus, instances=[_copy_instance(i) for i in instances], source=self.source,
            scenario=self.scenario, pools=pools,
        )
        for step in self.analyzers:
            step(snap)
        snap.collect_ms = round((time.perf_counter() - start) * 1000, 2)
        return snap

    def _pools(self) -> list:
        try:
            pools = self.pools.collect() if self.pools is not None else []
            if pools and hasattr(self.instances, "probe"):  # look for the servers nginx names
                self.instances.probe(self.pools.server_urls(pools))
            return pools
        except Exception:  # a config that trips the parser must not stop the GPU picture
            return []

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.instances is not None and hasattr(self.instances, "close"):
            self.instances.close()
        self.nvml.close()
        for fn in self.on_close:
            fn()


def _copy_instance(inst: Instance) -> Instance:
    """Analysis annotates instances per snapshot; never share one object between snapshots.
    A shallow copy with fresh containers for what analysis changes: a deep copy (models,
    histograms, bench) cost more than the rest of the tick on a box with several servers."""
    c = copy.copy(inst)
    c.gpus = list(inst.gpus)
    c.gpu_memory_bytes = dict(inst.gpu_memory_bytes)
    c.pids = list(inst.pids)
    c.models = list(inst.models)
    return c


def make_sampler(demo: str | None = None, backends=(), discover: bool = True, clock=None,
                 latency_s: float = 0.0, pcie_sample_s: float = 0.02, servers: bool = True,
                 instance_timeout_s: float = 1.5, start_offset_s: float = 0.0,
                 nginx_conf: str | None = None, pool_window_s: float | None = None) -> Sampler:
    """Build the pipeline for a real box (``demo=None``) or the simulated one."""
    instances = None
    if demo is not None:
        from .sim.demo import start_demo
        d = start_demo(demo, clock=clock, latency_s=latency_s, pcie_sample_s=pcie_sample_s, servers=servers,
                       start_offset_s=start_offset_s)
        table = d.process_table
        nvml = NvmlCollector(process_table=table, clock=d.box.clock.now)
        instances = _instance_collector(backends, discover, table, instance_timeout_s, d.box.clock.now)
        sampler = Sampler(nvml=nvml, instances=instances, source="simulated", scenario=d.spec,
                          wall=d.wall, host=f"demo-{d.box.scenario.name}")
        sampler.demo = d
        sampler.on_close.append(d.close)
        _add_pools(sampler, nginx_conf or getattr(d, "nginx_conf", None), nginx_conf is not None, pool_window_s)
        return sampler
    from .collect.procs import ProcessTable
    table = ProcessTable()
    nvml = NvmlCollector(process_table=table)
    instances = _instance_collector(backends, discover, table, instance_timeout_s, time.monotonic)
    sampler = Sampler(nvml=nvml, instances=instances)
    sampler.demo = None
    _add_pools(sampler, nginx_conf, nginx_conf is not None, pool_window_s)
    return sampler


def _add_pools(sampler: Sampler, path: str | None, required: bool, window_s: float | None) -> None:
    """nginx upstreams as replica pools (collect/nginx.py, analysis/pools.py)."""
    from .analysis.pools import DEFAULT_WINDOW_S, PoolAnalysis
    from .collect.nginx import DEFAULT_NGINX_CONF, MeterRoutes, NginxPools

    if path is None and sampler.source == "simulated":
        return  # the simulated box has no nginx unless its scenario brings one
    table = getattr(sampler.nvml, "procs", None)
    routes = MeterRoutes(table) if table is not None else None
    sampler.pools = NginxPools(path or DEFAULT_NGINX_CONF, required=required, routes=routes)
    sampler.analyzers.append(PoolAnalysis(window_s or DEFAULT_WINDOW_S, routes=routes))


def _instance_collector(backends, discover, table, timeout_s, clock):
    try:
        from .collect.instances import InstanceCollector
    except ImportError:  # pragma: no cover - before the instances layer lands
        return None
    if not backends and not discover:
        return None
    return InstanceCollector(list(backends), discover=discover, process_table=table, timeout_s=timeout_s,
                             clock=clock)


class Monitor:
    """A sampler plus the analysis that needs memory across ticks (alerts with hysteresis,
    history for charts). Live front ends (dashboard, recorder, exporter) call ``tick()``."""

    def __init__(self, sampler: Sampler, alert_engine=None, history_points: int = 600) -> None:
        from .analysis.history import History

        self.sampler = sampler
        self.alerts = alert_engine if alert_engine is not None else default_alert_engine()
        self.history = History(history_points)
        self.last: Snapshot | None = None

    def tick(self) -> Snapshot:
        snap = self.sampler.sample()
        self.observe(snap)
        return snap

    def observe(self, snap: Snapshot) -> None:
        """Run the stateful analysis on a snapshot (live or replayed)."""
        if self.alerts is not None:
            self.alerts.update(snap)
        self.history.add(snap)
        self.last = snap

    def close(self) -> None:
        self.sampler.close()


def default_alert_engine(config: dict | None = None):
    try:
        from .analysis.alerts import AlertConfig, AlertEngine
    except ImportError:  # pragma: no cover - before the diagnostics layer lands
        return None
    return AlertEngine(AlertConfig.from_toml_dict(config or {}))
