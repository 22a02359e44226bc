"""The pipeline: collectors -> analysis -> one Snapshot per tick.

A :class:`Sampler` takes one snapshot per call: GPU collection is fast and runs on every
tick; inference servers are polled on a separate thread so that a server that hangs never
delays the GPU picture (its last result is reused until the next poll finishes). A
:class:`Monitor` adds the analysis that needs memory across ticks (alerts, history). Front ends
get a Monitor from :mod:`gpuwatch.runtime` and only present what it returns.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Protocol

from .analysis.alert_config import AlertConfig
from .analysis.alerts import AlertEngine, evaluate_once
from .analysis.efficiency import instance_efficiency
from .analysis.groups import assign_gpus
from .analysis.history import History
from .collect.nvml import NvmlCollector
from .model import Instance, Snapshot
from .sanitize import clean_snapshot


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class InstanceSource(Protocol):
    """What a Sampler asks of its inference-server collector (collect/instances.py)."""

    notes: list[str]  # one line each, for what discovery could not look at

    def collect(self) -> list[Instance]: ...

    # optional: ``collect_nowait() -> list[Instance]``, with a ``first_pending`` attribute
    # (InstanceCollector): used between ticks that do not wait for the servers

    def probe(self, urls) -> None:
        """Look for servers at these URLs too (the members of nginx's pools)."""

    def wake(self) -> None:
        """Poll every server at the next tick: a GPU got busier (idle servers are polled less often)."""

    def close(self) -> None: ...


# A GPU whose utilization rose at least this many points since the previous tick, or a change
# in which processes use a GPU or in their memory by WAKE_MEMORY_STEP_BYTES (a model loaded,
# unloaded, put to sleep), may be a server that is polled less often while idle
# (collect/instances.py IDLE_BACKOFF_S) starting work or changing state: every server is then
# polled at the next tick.
WAKE_UTIL_RISE_PCT = 10.0
WAKE_MEMORY_STEP_BYTES = 2**30


def default_analyzers() -> list[Callable[[Snapshot], None]]:
    """Analysis steps that annotate every snapshot (instance <-> GPU join, ...)."""
    return [assign_gpus, instance_efficiency]


@dataclass
class Sampler:
    nvml: NvmlCollector
    instances: InstanceSource | None = None
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
        self._instances_done = False  # has one look for inference servers finished?
        self._gpu_seen: dict[int, tuple[float | None, frozenset]] = {}  # index -> (utilization, pids)

    def _instances(self, wait: bool) -> list[Instance]:
        if self.instances is None:
            return []
        nowait = getattr(self.instances, "collect_nowait", None)
        if not wait and nowait is not None and self._pending is None:
            # the polls started at the last tick, read now, the next ones started: no thread
            # waits for the servers between ticks (the dashboard's, serve's, and record's after
            # its first line; side by side on the bench box, ~10 wake-ups a second fewer)
            try:
                self._last_instances = nowait()
            except Exception:  # a collector bug must not stop the GPU picture
                pass
            if not getattr(self.instances, "first_pending", False):
                self._instances_done = True
            return self._last_instances
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
            self._instances_done = True
            if not wait and nowait is None:  # start the next poll now, so it overlaps the interval
                self._pending = self._pool.submit(self.instances.collect)
        return self._last_instances

    def sample(self, wait_instances: bool = False) -> Snapshot:
        start = time.perf_counter()
        reading = self.nvml.collect()
        if self._gpus_busier(reading.gpus) and self.instances is not None:
            self.instances.wake()
        pools = self._pools()  # first: it tells the instance collector where nginx's servers are
        instances = self._instances(wait_instances)
        snap = Snapshot(
            time=iso(self.wall()), host=self.host, driver_version=reading.driver_version,
            cuda_version=reading.cuda_version, nvml_version=reading.nvml_version, nvml_error=reading.error,
            gpus=reading.gpus, instances=[_copy_instance(i) for i in instances], source=self.source,
            scenario=self.scenario, pools=pools,
            discovery_notes=list(self.instances.notes) if self.instances is not None else [],
            instances_pending=self.instances is not None and not self._instances_done,
        )
        snap.pid_namespace = reading.pid_namespace  # NVML's pids are the host's
        clean_snapshot(snap)  # NVML strings, process names, server answers: checked as they enter
        for step in self.analyzers:
            step(snap)
        snap.collect_ms = round((time.perf_counter() - start) * 1000, 2)
        return snap

    def _gpus_busier(self, gpus) -> bool:
        """Did a GPU's utilization rise by WAKE_UTIL_RISE_PCT, or its processes or their memory
        (in steps of WAKE_MEMORY_STEP_BYTES) change, since the last tick?"""
        busier = False
        seen = {}
        for g in gpus:
            now = (g.utilization_gpu_pct,
                   frozenset((p.pid, (p.used_memory_bytes or 0) // WAKE_MEMORY_STEP_BYTES) for p in g.processes))
            seen[g.index] = now
            old = self._gpu_seen.get(g.index)
            if old is None:
                continue
            if now[1] != old[1] or (now[0] is not None and now[0] - (old[0] or 0.0) >= WAKE_UTIL_RISE_PCT):
                busier = True
        self._gpu_seen = seen
        return busier

    def _pools(self) -> list:
        try:
            pools = self.pools.collect() if self.pools is not None else []
            if pools and self.instances is not None:  # look for the servers nginx names
                self.instances.probe(self.pools.server_urls(pools))
            return pools
        except Exception:  # a config that trips the parser must not stop the GPU picture
            return []

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.instances is not None:
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


class Monitor:
    """A sampler plus the analysis that needs memory across ticks (alerts with hysteresis,
    history for charts). Live front ends (dashboard, recorder, exporter) call ``tick()``."""

    def __init__(self, sampler: Sampler, alert_engine: AlertEngine | None = None, history_points: int = 600) -> None:
        self.sampler = sampler
        self.alerts = alert_engine if alert_engine is not None else AlertEngine()
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

    def window(self, count: int = 2, interval: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> list[Snapshot]:
        """``count`` snapshots one ``interval`` apart (rates are real from the second on), for a
        one-shot look (``snapshot``, ``doctor``): the last one carries every alert condition seen
        over the window, without the raise delay a live view applies."""
        snaps = []
        for i in range(count):
            if i:
                sleep(interval)
            snaps.append(self.sampler.sample(wait_instances=True))
        evaluate_once(snaps[1:] or snaps, self.alerts.config)
        for snap in snaps:
            self.history.add(snap)
        self.last = snaps[-1]
        return snaps

    def close(self) -> None:
        self.sampler.close()


def default_alert_engine(config: AlertConfig | dict | None = None) -> AlertEngine:
    """An alert engine from an :class:`AlertConfig` (or the ``[alerts]`` table as parsed TOML)."""
    if not isinstance(config, AlertConfig):
        config = AlertConfig.from_toml_dict(config or {})
    return AlertEngine(config)


def close_within(close: Callable[[], object], seconds: float) -> None:
    """Call ``close`` on a daemon thread and wait at most ``seconds`` for it: a collector stuck
    in a slow call (NVML, a hung server) must not keep a process that was told to stop alive."""
    import threading
    t = threading.Thread(target=close, name="gpuwatch-close", daemon=True)
    t.start()
    t.join(seconds)
