"""``gpuwatch serve``: the box as Prometheus metrics.

Collection and scrapes never wait on each other: the main thread ticks a
:class:`~gpuwatch.pipeline.Monitor` on its own cadence (NVML calls, inference-server polls,
alert rules) and, after each tick, builds the complete list of metric families once; a scrape
(an HTTP server thread) only hands out the last finished list. A slow NVML call or a hung
backend therefore stretches the tick, never a scrape.

What is exported is in :mod:`gpuwatch.fleet.names` and docs/PROMETHEUS.md. Never exported:
process command lines, user names, instance URLs or error texts, alert messages — anything
that can carry a secret stays on the box.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .. import __version__
from ..vocab import THROTTLE_REASONS
from ..model import GPU, Instance, Snapshot
from ..fleet import names as N

_DERIVED = {
    "#processes": lambda g: len(g.processes),
    "#up": lambda i: 1 if i.status == "up" else 0,
    "#gpus": lambda i: len(i.gpus),
}


def _get(obj, path: str):
    if path in _DERIVED:
        return _DERIVED[path](obj)
    for part in path.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part, None)
    return obj


def _value(s: N.Series, v):
    if v is None:
        return None
    if isinstance(v, bool):
        v = int(v)
    return float(v) * s.scale


class _Integrator:
    """Rates -> monotonically increasing totals, per (series, identity)."""

    def __init__(self) -> None:
        self.totals: dict[tuple, float] = {}
        self.last_t: float | None = None

    def step(self, t: float) -> float:
        dt = 0.0 if self.last_t is None else max(0.0, t - self.last_t)
        self.last_t = t
        return dt

    def add(self, key: tuple, rate: float | None, dt: float) -> float:
        total = self.totals.get(key, 0.0)
        if rate is not None and rate > 0 and dt > 0:
            total += rate * dt
        self.totals[key] = total
        return total


def build_families(snap: Snapshot, integ: _Integrator, t: float, host: str | None = None) -> list:
    """Every metric family for one snapshot (``host`` overrides the snapshot's host label)."""
    integrate(snap, integ, t, host)
    return _families(snap, integ, t, host or snap.host)


def integrate(snap: Snapshot, integ: _Integrator, t: float, host: str | None = None) -> None:
    """Add this snapshot's rates to the counters' running totals: once per tick, whether or not
    the families are built (``run_serve`` builds them only when /metrics is asked for)."""
    host = host or snap.host
    dt = integ.step(t)
    for s in N.GPU_SERIES:
        if s.kind == "counter":
            for g in snap.gpus:
                integ.add((s.metric, host, g.uuid, g.index), _get(g, s.path), dt)
    for s in N.INSTANCE_SERIES:
        if s.kind == "counter":
            for i in snap.instances:
                integ.add((s.metric, host, i.name, i.kind), _get(i, s.path), dt)


def _families(snap: Snapshot, integ: _Integrator, t: float, host: str) -> list:
    """The families of ``snap`` with the counters' totals as ``integ`` holds them (integrated)."""
    dt = 0.0  # totals already hold this snapshot: read them, add nothing
    fams: list = []

    info = GaugeMetricFamily(N.HOST_INFO, "facts about the box (value 1)",
                             labels=["host", "driver_version", "cuda_version", "nvml_version", "source", "scenario",
                                     "nvml_error", "gpuwatch_version"])
    info.add_metric([host, snap.driver_version or "", snap.cuda_version or "", snap.nvml_version or "", snap.source,
                     snap.scenario or "", snap.nvml_error or "", __version__], 1)
    fams.append(info)
    ts = GaugeMetricFamily(N.SNAPSHOT_TIME, "wall time of the snapshot these values come from", labels=["host"])
    ts.add_metric([host], t)
    fams.append(ts)
    if snap.collect_ms is not None:
        cs = GaugeMetricFamily(N.COLLECT_SECONDS, "how long the last collection took", labels=["host"])
        cs.add_metric([host], snap.collect_ms / 1000.0)
        fams.append(cs)
    up = GaugeMetricFamily(N.NVML_UP, "0 when the GPUs cannot be read at all", labels=["host"])
    up.add_metric([host], 0 if snap.nvml_error and not snap.gpus else 1)
    fams.append(up)

    fams += _gpu_families(snap.gpus, host, integ, dt)
    fams += _instance_families(snap.instances, host, integ, dt)

    alert = GaugeMetricFamily(N.ALERT, "active alerts (value 1); docs/ALERTS.md",
                              labels=["host", "kind", "severity", "subject"])
    for a in snap.alerts:
        alert.add_metric([host, a.kind, a.severity, a.subject], 1)
    fams.append(alert)
    return fams


def _gpu_key(host: str, g: GPU) -> list[str]:
    return [host, str(g.index), g.uuid or ""]


def _gpu_families(gpus: list[GPU], host: str, integ: _Integrator, dt: float) -> list:
    fams = []
    info = GaugeMetricFamily(N.GPU_INFO, "GPU identity (value 1)", labels=[*N.GPU_LABELS, "name", "pci_bus_id"])
    thr = GaugeMetricFamily(N.GPU_THROTTLE, "active clock-event (throttle) reasons, 0/1",
                            labels=[*N.GPU_LABELS, "reason"])
    for g in gpus:
        key = _gpu_key(host, g)
        info.add_metric([*key, g.name or "", g.pci_bus_id or ""], 1)
        if not g.lost:
            active = set(g.throttle_reasons)
            for _, reason in THROTTLE_REASONS:
                thr.add_metric([*key, reason], 1 if reason in active else 0)
    fams += [info, thr]
    return fams + _series_families(
        N.GPU_SERIES, N.GPU_LABELS, gpus, lambda g: _gpu_key(host, g),
        lambda s, g: (s.metric, host, g.uuid, g.index), integ, dt, counted=lambda g: not g.lost)


def _inst_key(host: str, i: Instance) -> list[str]:
    return [host, i.name, i.kind]


def _instance_families(instances: list[Instance], host: str, integ: _Integrator, dt: float) -> list:
    info = GaugeMetricFamily(N.INSTANCE_INFO, "inference server facts (value 1)",
                             labels=[*N.INSTANCE_LABELS, "status", "parallelism", "parallel_size", "model", "version",
                                     "gpus"])
    mem = GaugeMetricFamily(N.INSTANCE_GPU_MEMORY, "GPU memory held by the instance's processes",
                            labels=[*N.INSTANCE_LABELS, "gpu"])
    models = GaugeMetricFamily(N.INSTANCE_MODEL, "loaded models; value: share on the CPU, 0..1",
                               labels=[*N.INSTANCE_LABELS, "model"])
    for i in instances:
        key = _inst_key(host, i)
        info.add_metric([*key, i.status, i.parallelism, "" if i.parallel_size is None else str(i.parallel_size),
                         i.models[0].name if i.models else "", i.version or "", ",".join(map(str, i.gpus))], 1)
        for gpu, b in sorted(i.gpu_memory_bytes.items()):
            mem.add_metric([*key, str(gpu)], float(b))
        for m in i.models:
            models.add_metric([*key, m.name], (m.cpu_offload_pct or 0.0) / 100.0)
    return [info, mem, models] + _series_families(
        N.INSTANCE_SERIES, N.INSTANCE_LABELS, instances, lambda i: _inst_key(host, i),
        lambda s, i: (s.metric, host, i.name, i.kind), integ, dt)


def _series_families(series, labels, items: list, key, integ_key, integ: _Integrator, dt: float,
                     counted=lambda item: True) -> list:
    """One family per entry of a series table (names.py) over GPUs or instances. Counters are
    rates integrated into totals (``integ_key`` names the running total of one item); an item
    that is not ``counted`` (a lost GPU) keeps its total but is not exposed."""
    fams = []
    for s in series:
        if s.kind == "counter":
            fam = CounterMetricFamily(s.metric, s.help, labels=list(labels))
            for item in items:
                rate = _get(item, s.path)
                total = integ.add(integ_key(s, item), rate, dt)
                if counted(item) and (rate is not None or total):
                    fam.add_metric(key(item), total)
        else:
            fam = GaugeMetricFamily(s.metric, s.help, labels=list(labels))
            for item in items:
                v = _value(s, _get(item, s.path))
                if v is not None:
                    fam.add_metric(key(item), v)
        fams.append(fam)
    return fams


class _LastSnapshotCollector:
    """A prometheus_client collector that yields the families built after the last tick."""

    def __init__(self) -> None:
        self._families: list = []
        self._lock = threading.Lock()

    def set(self, families: list) -> None:
        with self._lock:
            self._families = families

    def collect(self):
        with self._lock:
            fams = self._families
        return iter(fams)

    def describe(self):  # no families at registration: do not call collect() then
        return []


@dataclass
class ExporterState:
    registry: CollectorRegistry
    collector: _LastSnapshotCollector
    interval: float
    last_ok: float | None = None  # monotonic time of the last finished tick
    last_error: str | None = None
    ticks: int = 0
    _body: bytes | None = None  # the /metrics text of the last collection, once rendered
    _pending: object = None  # the last collection's families (or their builder), not yet rendered
    _render_lock: threading.Lock = field(default_factory=threading.Lock)

    def healthy(self) -> tuple[bool, str]:
        if self.last_ok is None:
            return False, "no snapshot yet"
        age = time.monotonic() - self.last_ok
        if age > 3 * self.interval + 10:
            return False, f"last snapshot {age:.0f} s ago"
        return True, "ok"

    def publish(self, families) -> None:
        """Set the families of a finished collection (a list, or a function that builds it).
        They are built and /metrics rendered when it is first asked for, then kept: a scrape
        after that only sends bytes, however many scrapers come, and ticks nobody scrapes (a
        15 s scrape interval skips 14 of 15 at 1 s) cost neither -- building and rendering were
        a third of an unscraped ``serve``'s CPU (py-spy, cProfile)."""
        with self._render_lock:
            self._pending = families
            self._body = None

    def body(self) -> bytes:
        with self._render_lock:
            if self._body is None:
                if self._pending is not None:
                    fams = self._pending() if callable(self._pending) else self._pending
                    self.collector.set(fams)
                    self._pending = None
                self._body = generate_latest(self.registry)
            return self._body


def respond(state: ExporterState, path: str) -> tuple[str, str, bytes]:
    """(status, content type, body) for a GET of ``path``: /metrics, /healthz, an index."""
    if path == "/metrics":
        return "200 OK", CONTENT_TYPE_LATEST, state.body()
    if path == "/healthz":
        ok, why = state.healthy()
        return ("200 OK" if ok else "503 Service Unavailable"), "text/plain; charset=utf-8", (why + "\n").encode()
    if path == "/":
        return "200 OK", "text/plain; charset=utf-8", b"gpuwatch exporter: /metrics /healthz\n"
    return "404 Not Found", "text/plain; charset=utf-8", b"not found: try /metrics\n"


# Slow and hostile clients (slowloris: requests sent a byte at a time, or never finished): a
# request head must arrive whole within HEADER_TIMEOUT_S of the connection (IDLE_TIMEOUT_S for
# the next one on a kept-alive connection) and fit in MAX_HEADER_BYTES; a response must be
# taken within WRITE_TIMEOUT_S. At most MAX_CONNECTIONS are open: a new one beyond that
# closes the oldest connection that is only waiting for a request, so a scraper always gets in.
HEADER_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 15.0
WRITE_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 8192
MAX_CONNECTIONS = 64


class MetricsServer:
    """A small asyncio HTTP/1.1 server for the exporter, on its own daemon thread."""

    def __init__(self, host: str, port: int, state: ExporterState, *, header_timeout_s: float = HEADER_TIMEOUT_S,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS) -> None:
        self.state = state
        self.header_timeout_s = header_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self._conns: dict[asyncio.StreamWriter, list] = {}  # writer -> [busy, since]
        self.evicted = 0
        self._loop = asyncio.new_event_loop()
        try:
            self._server = self._loop.run_until_complete(asyncio.start_server(
                self._handle, host, port, limit=MAX_HEADER_BYTES, backlog=128, reuse_address=True))
        except BaseException:
            self._loop.close()
            raise
        self.server_address = self._server.sockets[0].getsockname()[:2]
        self._thread = threading.Thread(target=self._loop.run_forever, name="gpuwatch-exporter-http", daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        return len(self._conns)

    def _admit(self, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= self.max_connections:
            idle = [(since, w) for w, (busy, since) in self._conns.items() if not busy]
            if idle:
                _, oldest = min(idle, key=lambda x: x[0])
                self._drop(oldest)
                self.evicted += 1
        self._conns[writer] = [False, time.monotonic()]

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._conns.pop(writer, None)
        try:
            writer.transport.abort()
        except Exception:
            pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= self.max_connections and all(b for b, _ in self._conns.values()):
            self._drop(writer)  # every slot is serving a response: come back later
            return
        self._admit(writer)
        timeout = self.header_timeout_s
        try:
            while writer in self._conns:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                        ConnectionError):
                    return
                self._conns[writer][0] = True
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                keep = len(parts) == 3 and parts[2] == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
                    keep = False  # a request body: not read, so the connection cannot be reused
                if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
                    status, ctype, body = "405 Method Not Allowed", "text/plain; charset=utf-8", b"GET only\n"
                    keep = False
                else:
                    status, ctype, body = respond(self.state, parts[1].split("?", 1)[0])
                head_out = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n").encode()
                writer.write(head_out if parts[0] == "HEAD" else head_out + body)
                try:
                    await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
                except (asyncio.TimeoutError, ConnectionError):
                    return
                if not keep:
                    return
                if writer in self._conns:
                    self._conns[writer] = [False, time.monotonic()]
                timeout = self.idle_timeout_s
        finally:
            self._drop(writer)

    def shutdown(self) -> None:
        """Stop listening, close every connection, stop the thread (within about a second)."""
        async def stop():
            self._server.close()
            for w in list(self._conns):
                self._drop(w)
        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=1.0)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=1.0)

    def server_close(self) -> None:
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()


def start_server(host: str, port: int, state: ExporterState, **kw) -> MetricsServer:
    """Bind and serve on a daemon thread; returns the server (``server_address`` has the port)."""
    return MetricsServer(host, port, state, **kw)


def bind_error(host: str, port: int, e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: the port is in use (another gpuwatch serve?); choose one with --listen"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}:{port}: no such address on this machine"
    if e.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: permission denied (ports below 1024 need root)"
    return f"cannot listen on {host}:{port}: {e.strerror or e}"


def publish_tick(state: ExporterState, snap: Snapshot, integ: _Integrator, t: float, host: str | None) -> None:
    """One tick of ``serve``: the counters integrated now, the families built when scraped."""
    integrate(snap, integ, t, host)
    totals = _Integrator()
    totals.totals = dict(integ.totals)  # as of this tick, whenever it is rendered
    state.publish(functools.partial(_families, snap, totals, t, host or snap.host))


class _Stop(Exception):
    """Raised by ``run_serve``'s signal handler, only while its main thread waits."""


def run_serve(monitor, interval: float, listen: tuple[str, int], host_label: str | None = None,
              ready=None, stop: threading.Event | None = None, **server_options) -> int:
    """Tick ``monitor`` every ``interval`` seconds and serve its metrics until SIGTERM/SIGINT
    (or ``stop`` is set). Returns the exit code. Ticks run on their own daemon thread, so a
    stop is acted on at once, never after a slow collection (SIGTERM: out within 2 s)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = _LastSnapshotCollector()
    registry.register(collector)
    state = ExporterState(registry, collector, interval)
    host, port = listen
    try:
        server = start_server(host, port, state, **server_options)
    except OSError as e:
        print(f"gpuwatch: {bind_error(host, port, e)}", file=sys.stderr)
        return 1
    stop = stop or threading.Event()
    previous = {}
    requested = waiting = False  # a stop signal came; the main thread is in its wait

    def on_signal(*_) -> None:
        # not stop.set(): the signal may land while this thread holds the event's own lock
        nonlocal requested
        requested = True
        if waiting:
            raise _Stop()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    actual = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"gpuwatch: serving http://{shown}:{actual}/metrics (every {interval:g} s); Ctrl-C stops", file=sys.stderr,
          flush=True)
    if ready is not None:
        ready(actual)
    integ = _Integrator()

    def ticking() -> None:
        while not stop.is_set():
            start = time.monotonic()
            try:
                snap = monitor.tick()
                if stop.is_set():
                    break
                publish_tick(state, snap, integ, time.time(), host_label)
                state.last_ok = time.monotonic()
                state.last_error = None
                state.ticks += 1
            except Exception as e:  # a collector bug: keep serving the last values, /healthz goes stale
                state.last_error = f"{type(e).__name__}: {e}"
            stop.wait(max(0.0, interval - (time.monotonic() - start)))

    ticker = threading.Thread(target=ticking, name="gpuwatch-exporter-tick", daemon=True)
    ticker.start()
    try:
        # one wait with no timeout: a signal's handler interrupts it (_Stop), another thread's
        # stop.set() ends it (a 0.5 s poll here woke the process twice a second for nothing)
        try:
            waiting = True
            if not requested:
                stop.wait()
        except _Stop:
            pass
        finally:
            waiting = False
    finally:
        stop.set()  # the ticker's loop ends
        server.shutdown()
        server.server_close()
        ticker.join(timeout=0.1)  # a tick stuck in a slow collector is left behind (daemon)
        for sig, h in previous.items():
            signal.signal(sig, h)
    return 0
