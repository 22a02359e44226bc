"""The one place where gpuwatch is assembled: a :class:`~gpuwatch.pipeline.Monitor` (sampler +
alerts + history) from :class:`~gpuwatch.config.Settings`, on the real box or, for ``--demo``, on
the simulated one. Every front end (dashboard, snapshot, doctor, record, serve, svg) gets its
monitor here, so a change to how the pipeline is wired reaches all of them at once. This is the
only production module that imports :mod:`gpuwatch.sim`.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .analysis.alerts import AlertEngine
from .analysis.pools import DEFAULT_WINDOW_S, PoolAnalysis
from .collect.targets import BackendConfig
from .collect.nginx import DEFAULT_NGINX_CONF, MeterRoutes, NginxPools
from .collect.nvml import NvmlCollector
from .collect.procs import ProcessTable
from .config import Settings
from .model import BenchResult, Instance, Snapshot
from .pipeline import InstanceSource, Monitor, Sampler

if TYPE_CHECKING:
    from .collect.instances import InstanceCollector
    from .sim.demo import Demo

# A one-shot look at the simulated box (snapshot, doctor, record, svg) finds it already running
# for this long, so its faults are established and its alerts past their raise delay.
DEMO_WARMUP_S = 60.0

# A dashboard that runs for hours settles its heap this long after its first frame: by then the
# modules, the widgets and the server clients exist and will live as long as the process.
SETTLE_AFTER_S = 5.0


@dataclass
class DemoSampler(Sampler):
    """A sampler over the simulated box; ``demo`` is the box, its servers and fake driver."""

    demo: Demo | None = None


# the longest the server collector waits for its go (``servers_after``) before starting anyway
SERVERS_AFTER_MAX_S = 3.0


class LaterInstances:
    """The inference-server collector, built and first polled only once ``go`` is set (or
    ``max_wait_s`` has passed): the dashboard sets it when its first frame is on screen, so
    the GPUs are shown without waiting for httpx, the engine modules and the first server
    answers, which all come on the following ticks (the servers' panel says it is looking for
    them meanwhile: the sampler's snapshot is ``instances_pending`` until a first collect()
    returns). ``collect()`` runs on the sampler's worker thread, which waits for ``go``;
    ``collect_nowait()`` returns nothing until then."""

    def __init__(self, build: Callable[[], InstanceCollector], go: threading.Event,
                 max_wait_s: float = SERVERS_AFTER_MAX_S) -> None:
        self._build, self._go, self._max_wait_s = build, go, max_wait_s
        self._lock = threading.Lock()
        self._real: InstanceCollector | None = None
        self._closed = False
        self._probe: list | None = None
        self._benches: list[tuple[str, BenchResult]] = []
        self._asked_at: float | None = None  # the first collect_nowait()

    @property
    def notes(self) -> list[str]:
        real = self._real
        return real.notes if real is not None else []

    def _collector(self, wait: bool = True) -> InstanceCollector | None:
        if self._real is None and not self._closed:
            if wait:
                self._go.wait(self._max_wait_s)
            with self._lock:
                if self._real is None and not self._closed:
                    real = self._build()
                    if self._probe is not None:
                        real.probe(self._probe)
                    for name, result in self._benches:
                        real.record_bench(name, result)
                    self._real = real
        return self._real

    def collect(self) -> list[Instance]:
        real = self._collector()
        return real.collect() if real is not None and not self._closed else []

    def collect_nowait(self) -> list[Instance]:
        """``InstanceCollector.collect_nowait``, once ``go`` is set or ``max_wait_s`` has passed
        since the first call; nothing (and ``first_pending``) before."""
        if self._real is None:
            if self._asked_at is None:
                self._asked_at = time.monotonic()
            if not self._go.is_set() and time.monotonic() - self._asked_at < self._max_wait_s:
                return []
        real = self._collector(wait=False)
        return real.collect_nowait() if real is not None and not self._closed else []

    @property
    def first_pending(self) -> bool:
        real = self._real
        return real is None or real.first_pending

    def probe(self, urls) -> None:
        with self._lock:
            if self._real is None:
                self._probe = list(urls)
                return
        self._real.probe(urls)

    def record_bench(self, name: str, result: BenchResult) -> None:
        with self._lock:
            if self._real is None:
                self._benches.append((name, result))
                return
        self._real.record_bench(name, result)

    def wake(self) -> None:
        real = self._real
        if real is not None:  # before it is built there is nothing polled less often
            real.wake()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            real = self._real
        self._go.set()  # a collect() waiting for its go returns at once
        if real is not None:
            real.close()


class LaterPools:
    """nginx's pools (:class:`~gpuwatch.collect.nginx.NginxPools`), read only once ``go`` is set:
    parsing a stock nginx configuration is most of a first tick, and the pools are drawn beside
    the servers, which come after the dashboard's first frame too."""

    def __init__(self, pools: NginxPools, go: threading.Event) -> None:
        self.pools, self._go = pools, go

    def collect(self) -> list:
        return self.pools.collect() if self._go.is_set() else []

    def server_urls(self, pools: list) -> list[str]:
        return self.pools.server_urls(pools)


def make_sampler(demo: str | None = None, backends=(), discover: bool = True, clock=None,
                 latency_s: float = 0.0, pcie_sample_s: float = 0.02, servers: bool = True,
                 instance_timeout_s: float = 1.5, start_offset_s: float = 0.0,
                 nginx_conf: str | None = None, pool_window_s: float | None = None,
                 servers_after: threading.Event | None = None, wait_servers: bool = False) -> Sampler:
    """The sampler for the real box (``demo=None``) or the simulated scenario ``demo``.
    ``nginx_conf``: read pools from this file (default: /etc/nginx/nginx.conf on the real box,
    the scenario's own on the simulated one). ``servers_after``: build and poll the
    inference-server collector only once this is set (:class:`LaterInstances`).
    ``wait_servers``: each sample waits for every server's and meter's poll (within the timeout)
    instead of the live view's grace: for a one-off look, which has no next frame to show a late
    answer in (``snapshot``, ``doctor``)."""
    # a clock the caller drives moves only between samples: a poll that ends after the next step
    # would be stamped a second late (a tok/s spike); and a one-off look has no next frame to show
    # a late answer in. Then each sample waits for every server (within the timeout) instead of
    # going on after the live view's grace
    grace = instance_timeout_s if clock is not None or wait_servers else None
    if demo is not None:
        from .sim.demo import start_demo  # only for --demo: a real box never loads the simulator

        # the simulated servers are found only by discovery (their processes and ports are in the
        # simulated process table): without it nothing would poll them, so they are not started
        d = start_demo(demo, clock=clock, latency_s=latency_s, pcie_sample_s=pcie_sample_s, servers=servers and discover,
                       start_offset_s=start_offset_s)
        table = d.process_table
        nvml = NvmlCollector(process_table=table, clock=d.box.clock.now, host=d.host)
        instances = _instance_collector(backends, discover, table, instance_timeout_s, d.box.clock.now, servers_after,
                                        grace)
        sampler = DemoSampler(nvml=nvml, instances=instances, source="simulated", scenario=d.spec,
                              wall=d.wall, host=f"demo-{d.box.scenario.name}", demo=d)
        sampler.on_close.append(d.close)
        if nginx_conf or d.nginx_conf:  # the simulated box has nginx only if its scenario brings one
            _add_pools(sampler, table, nginx_conf or d.nginx_conf, bool(nginx_conf), pool_window_s, servers_after)
        return sampler
    table = ProcessTable()
    nvml = NvmlCollector(process_table=table)
    instances = _instance_collector(backends, discover, table, instance_timeout_s, time.monotonic, servers_after, grace)
    sampler = Sampler(nvml=nvml, instances=instances)
    _add_pools(sampler, table, nginx_conf or DEFAULT_NGINX_CONF, bool(nginx_conf), pool_window_s, servers_after)
    return sampler


def _add_pools(sampler: Sampler, table, path: str, required: bool, window_s: float | None,
               after: threading.Event | None = None) -> None:
    """nginx upstreams as replica pools: read by collect/nginx.py, resolved by analysis/pools.py;
    members that are ``gpuwatch meter`` routes stand for the instance behind them."""
    routes = MeterRoutes(table)
    pools = NginxPools(path, required=required, routes=routes)
    sampler.pools = pools if after is None else LaterPools(pools, after)
    sampler.analyzers.append(PoolAnalysis(window_s or DEFAULT_WINDOW_S, routes=routes))


def _instance_collector(backends, discover, table, timeout_s, clock,
                        after: threading.Event | None = None, grace_s: float | None = None) -> InstanceSource | None:
    if not backends and not discover:
        return None

    def build() -> InstanceCollector:
        # here, not at the top: httpx and the engine modules are most of an import of gpuwatch
        from .collect.instances import InstanceCollector

        more = {} if grace_s is None else {"grace_s": grace_s}
        return InstanceCollector([b if isinstance(b, BackendConfig) else BackendConfig(url=b) for b in backends],
                                 discover=discover, process_table=table, timeout_s=timeout_s, clock=clock, **more)

    return build() if after is None else LaterInstances(build, after)


def build_monitor(settings: Settings, *, one_shot: bool = False, history_points: int = 600,
                  servers_after: threading.Event | None = None, wait_servers: bool = False) -> Monitor:
    """The live pipeline for ``settings``. ``one_shot``: for a look that samples a short window
    (snapshot, doctor, record) rather than a view that runs from now on: the simulated box is
    then found already running for :data:`DEMO_WARMUP_S`. ``servers_after``: the inference
    servers are looked for only once this is set (the dashboard: after its first frame).
    ``wait_servers``: see :func:`make_sampler`."""
    offset = DEMO_WARMUP_S if (one_shot and settings.demo is not None) else 0.0
    sampler = make_sampler(demo=settings.demo, backends=settings.backends, discover=settings.discover,
                           start_offset_s=offset, nginx_conf=settings.nginx_conf, servers_after=servers_after,
                           wait_servers=wait_servers)
    return Monitor(sampler, AlertEngine(settings.alerts), history_points=history_points)


def settle_heap() -> None:
    """Collect once, then leave everything alive now out of later collections (``gc.freeze``).

    Why: Python's cyclic collector walks every tracked object in a full collection. A running
    dashboard holds ~125,000 of them, nearly all from start-up (Textual, aiohttp, the widgets),
    and a full collection came every 30-40 s at ~60 ms; with the start-up objects frozen it
    walks the ~25,000 made since (~11 ms), and the young collections get cheaper too. Measured
    on the bench box (8 GPUs, 4 servers, 200x60, 40 s): the collector's CPU 3.0 -> 1.5 ms a
    second (side by side, 5 x 60 s: 0.97x the CPU). What is created later is collected as
    before; what was alive at the freeze is freed by reference counting (a cycle among those
    objects, say a GPU card removed when the set of GPUs changes, is kept: a few kB, at most once
    per such change). Not in ``serve`` and ``record``: their collector costs ~0.2 ms a second
    either way (~60,000 objects, few of them containers made per tick)."""
    gc.collect()
    gc.freeze()


def settle_heap_later(after: threading.Event | None = None, delay_s: float = SETTLE_AFTER_S) -> threading.Thread:
    """:func:`settle_heap` ``delay_s`` after ``after`` is set (at once if None), on a daemon
    thread: for the dashboards' commands only (a library caller or a test keeps its own heap)."""

    def run() -> None:
        if after is not None:
            after.wait()
        time.sleep(delay_s)
        settle_heap()

    t = threading.Thread(target=run, name="gpuwatch-settle", daemon=True)
    t.start()
    return t


def sample_window(settings: Settings, count: int = 2, interval: float | None = None) -> list[Snapshot]:
    """``count`` snapshots one interval apart with the alerts seen over the window on the last."""
    monitor = build_monitor(settings, one_shot=True, history_points=count, wait_servers=True)
    try:
        return monitor.window(count, settings.interval if interval is None else interval)
    finally:
        monitor.close()


# how long a poll of the simulated history may take: its clock stands still while servers answer
SIMULATED_POLL_TIMEOUT_S = 15.0


def simulated_history(settings: Settings, seconds: float = DEMO_WARMUP_S) -> Monitor:
    """The simulated box driven by hand through ``seconds`` simulated seconds, one sample a
    second, with alerts and history as a live view would have them: for pictures of the demo
    (``snapshot --svg``) that show history in about a second of real time. The returned
    monitor's sampler is already closed; its ``history``, ``alerts`` and ``last`` are kept."""
    if settings.demo is None:
        raise ValueError("simulated_history needs a demo scenario")
    from .sim.box import ManualClock

    clock = ManualClock()
    # the simulated clock stands still while the servers answer: a picture must not depend on how
    # busy the machine is, so a poll may take far longer than a live view's timeout (beside a CPU
    # hog a 1.5 s bound let a poll time out: a gap in the instance's tok/s history)
    sampler = make_sampler(demo=settings.demo, clock=clock, instance_timeout_s=SIMULATED_POLL_TIMEOUT_S)
    monitor = Monitor(sampler, AlertEngine(settings.alerts), history_points=max(600, int(seconds)))
    try:
        for _ in range(int(seconds)):
            clock.advance(1.0)
            monitor.observe(sampler.sample(wait_instances=True))
    finally:
        monitor.close()
    return monitor
