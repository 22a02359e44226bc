"""Inference instances: which servers run (configured and discovered), what engine they are,
and how busy they are.

``InstanceCollector.collect()`` is called once per tick and waits for the polls it starts
(bounded); ``collect_nowait()``, on the ticks of the dashboard, ``serve`` and ``record``, reads
what the previous call's polls found and starts the next ones, without waiting. It polls every
server concurrently on a private asyncio loop (one background thread; each server its own
keep-alive client: ``http11.KeepAliveClient``, or ``httpx.AsyncClient`` for https), each
server bounded by ``timeout_s``: a server that hangs, fails or answers junk shows ``status``
"down"/"error" with a reason and costs nobody else a refresh.
Rates (tok/s, preemptions/s, prefix-cache hits) and latency quantiles are computed here from
the previous poll's counters and histogram buckets, per server, robust to restarts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import datetime as _dt
import functools
import ipaddress
import math
import os
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..model import BenchResult, Instance
from .engines import ENGINES, FetchError, Fetcher, NotAServer, Reading, detect_kind, names
from .engines.base import Histogram
from .http11 import KeepAliveClient
from .meters import MeterWatch, attach_meters
from .procs import ProcessTable
from .targets import BackendConfig
from .tls import tls_context

DISCOVERY_INTERVAL_S = 10.0
FORGET_DISCOVERED_AFTER_S = 300.0
CONNECT_TIMEOUT_S = 0.5


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def normalize_url(url: str) -> str:
    """Adds a scheme when missing, drops a trailing slash."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def display_url(url: str) -> str:
    """The URL without a password (``http://user:***@host``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def split_userinfo(url: str) -> tuple[str, str | None]:
    """(URL without ``user:password@``, a Basic Authorization header or None). Credentials go
    in a header so they never appear in a logged request URL."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    import base64

    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    if ":" in (parts.hostname or ""):
        netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    token = base64.b64encode(f"{parts.username or ''}:{parts.password or ''}".encode()).decode()
    return urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


def url_key(url: str) -> tuple[str, int, str]:
    """Identity of a server for deduplication: every loopback spelling is one host."""
    parts = urlsplit(normalize_url(url))
    host = (parts.hostname or "").lower()
    if _is_loopback(host):
        host = "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return host, port, parts.path.rstrip("/")


def _name_matches(name: str, patterns: tuple[str, ...]) -> bool:
    name = (name or "").lower()
    for p in patterns:
        if p.endswith("*"):
            if name.startswith(p[:-1]):
                return True
        elif name == p:
            return True
    return False


def match_server_process(name: str | None, argv: list[str]) -> str | None:
    """The engine a process is the server of, from its name AND command line; None if none."""
    return _match_server_process(name, tuple(argv))


# remembered per name and command line: discovery asks about every process of the box at each
# scan (every 10 s), and nearly all of them are the same processes as last time (~70 processes
# against ~14 name patterns were half of a scan's CPU on the benchmark box). The keys hold the
# command lines the process table keeps anyway; the bound (1,024 command lines, ~14 times a box's
# ~70 processes) keeps ended processes' entries from piling up
@functools.lru_cache(maxsize=1024)
def _match_server_process(name: str | None, argv: tuple[str, ...]) -> str | None:
    joined = " ".join(argv)
    base0 = os.path.basename(argv[0]) if argv else ""
    for kind, (procnames, markers) in names.SERVER_PROCESSES.items():
        if not (_name_matches(name or "", procnames) or _name_matches(base0, procnames)):
            continue
        if any(m in joined for m in markers):
            return kind
    return None


def expected_port(kind: str, argv: list[str], env: dict[str, str] | None) -> int:
    from .engines.base import int_flag

    port = int_flag(argv, names.PORT_FLAGS)
    if port:
        return port
    if kind == "ollama" and env and env.get("OLLAMA_HOST"):
        host = env["OLLAMA_HOST"]
        try:
            p = urlsplit(host if "://" in host else "http://" + host).port
            if p:
                return p
        except ValueError:
            pass
    return names.DEFAULT_PORTS[kind]


def serving_settings(kind: str | None, env: dict[str, str] | None) -> dict[str, str]:
    """The variables of ``names.SERVING_ENV`` set in a server's environment (empty when the
    environment is not readable: another user's process)."""
    if not env:
        return {}
    return {k: "".join(ch if ch.isprintable() else "?" for ch in env[k][:200])
            for k in names.SERVING_ENV.get(kind or "", names.CUDA_ENV) if k in env}


# ---- per-server state ------------------------------------------------------------------------

@dataclass
class _Target:
    key: tuple[str, int, str]
    url: str
    name: str
    kind: str | None
    source: str
    api_key_env: str | None = None
    tentative: bool = False  # a default-port probe: shown only once recognised
    discovered: bool = False  # found by discovery (forgotten when gone for a while)
    pid: int | None = None
    pids: list[int] = field(default_factory=list)
    parallelism: str = "unknown"
    parallel_size: int | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    prev: Reading | None = None
    prev_t: float | None = None
    error_since: str | None = None
    status: str | None = None
    status_since: str | None = None
    # ratios of counters that move only when a request ends: the last value, kept until they move
    held: dict[str, float] = field(default_factory=dict)
    last_seen: float = 0.0
    bench: BenchResult | None = None
    version: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    container: str | None = None
    container_gpus: list[str] = field(default_factory=list)
    upstream_of: str | None = None  # the llama-swap instance that started this server
    inflight: concurrent.futures.Future | None = None  # the poll running now
    last: Instance | None = None  # what the last finished poll showed
    idle_polls: int = 0  # finished polls in a row that found it idle (see IDLE_BACKOFF_S)
    next_poll: float = 0.0  # clock time before which it is not polled again (idle back-off)
    sockets: frozenset | None = None  # a default-port probe: the listening sockets it asks


@dataclass
class _PollResult:
    reading: Reading | None = None
    t: float | None = None
    error: FetchError | None = None
    kind: str | None = None
    meter: str | None = None  # metrics URL of the gpuwatch meter whose figures were attached
    meter_routes: tuple[str, ...] = ()  # LISTEN addresses of the routes to it
    # a first reading taken PRIME_S before ``reading``, so that a new server has rates at once
    primer: tuple[Reading, float] | None = None


# Idle servers are polled less often. A poll that finds a server idle -- up (not loading,
# sleeping or failing: states an operator watches change), its running count 0 (known, not
# missing), nothing waiting, and every counter where the previous poll left it -- makes the next
# poll wait IDLE_BACKOFF_S[n - 1] seconds after n such polls in a row (the last entry from then
# on); a poll that finds anything else, or wake(), puts it back to every tick. What an idle server
# shows does not change while it stays idle (0 running, 0 tok/s, the same counters), and a rate
# after a longer gap is still per second: counters are differenced over the actual interval
# (_rate). A request that starts is seen within the cap at worst, and at the next tick when a
# GPU's utilization rises or a GPU process comes, goes or changes its memory by a GiB (model
# loaded, unloaded, put to sleep: the Sampler calls wake(), pipeline.WAKE_UTIL_RISE_PCT). Four
# idle servers polled every 5 s instead of every second make a fifth of the requests.
IDLE_BACKOFF_S = (1.0, 2.0, 4.0, 5.0)
# a server is due this much before its time: ticks are not exactly one interval apart
IDLE_DUE_SLACK_S = 0.25

# a server's first poll is two polls this far apart: its first snapshot (``record``'s first
# line, ``--once``) then has rates instead of nulls
PRIME_S = 0.4


def _rate(cur: float | None, prev: float | None, dt: float | None) -> float | None:
    """Per-second rate of a counter; None on the first poll, a zero interval or a counter that
    went down (the server restarted)."""
    if cur is None or prev is None or not dt or dt <= 0 or cur < prev:
        return None
    return (cur - prev) / dt


def _whole(v: float | None) -> int | float | None:
    """A gauge that counts (slots) as an int; a non-finite one stays as it is, for the
    sanitiser to report as a bad reading."""
    if v is None or not math.isfinite(v):
        return v
    return int(v)


def _generation_rate(kind: str, r: Reading, prev: Reading | None, dt: float | None) -> float | None:
    """Generated tokens per second as the clients receive them. A counter that rises every
    iteration (vLLM's, SGLang's realtime_tokens, TGI's rebuilt one) is differenced; an engine
    whose counter moves only when a request finishes is read from its rate gauge when it has
    one (SGLang's gen_throughput), else from the counter (spiky). See ``names``."""
    pc = prev.counters if prev else {}
    live = _rate(r.counters.get("generation_tokens_iter"), pc.get("generation_tokens_iter"), dt)
    if live is not None or "generation_tokens_iter" in r.counters:
        return live
    gauge = r.gauges.get("generation_rate")
    if gauge is not None and kind in names.COUNTS_AT_REQUEST_END:
        return gauge
    return _rate(r.counters.get("generation_tokens"), pc.get("generation_tokens"), dt)


def _held_ratio(t: _Target, key: str, c: dict, pc: dict, num: str, den: str) -> float | None:
    """Δnum / Δden over the interval; counters that move only when a request ends keep the last
    value while none ends (a restart forgets it)."""
    if c.get(num) is None or c.get(den) is None:
        return None
    d_num = c[num] - pc.get(num, c[num])
    d_den = c[den] - pc.get(den, c[den])
    if d_num < 0 or d_den < 0:
        t.held.pop(key, None)
    elif d_den > 0:
        t.held[key] = d_num / d_den
    return t.held.get(key)


def _interval_histogram(cur: Histogram | None, prev: Histogram | None) -> Histogram | None:
    if cur is None:
        return None
    if prev is None:
        return cur  # first poll: everything observed so far
    delta = cur.minus(prev)
    if delta is None:
        return cur  # restarted (or bucket layout changed): counts since the restart
    return delta


def _start_on_loop(loop: asyncio.AbstractEventLoop, batch: list[tuple[Coroutine, concurrent.futures.Future]]) -> None:
    """Run each coroutine as a task on ``loop`` (another thread's), its outcome in its future:
    ``asyncio.run_coroutine_threadsafe`` for many coroutines with one wake-up of the loop's
    thread. (One call each woke that thread with the first and then wrote to its self-pipe for
    every other while it already ran: the two threads handed the interpreter lock back and forth.)"""
    def launch() -> None:
        for coro, fut in batch:
            if not fut.set_running_or_notify_cancel():
                coro.close()
                continue
            task = loop.create_task(coro)
            task.add_done_callback(functools.partial(_settle, fut))
    try:
        loop.call_soon_threadsafe(launch)
    except RuntimeError:  # the loop is closed
        for coro, fut in batch:
            coro.close()
            if fut.set_running_or_notify_cancel():
                fut.set_exception(RuntimeError("event loop closed"))


def _settle(fut: concurrent.futures.Future, task: asyncio.Task) -> None:
    if task.cancelled():  # (at close: the loop's tasks end with it)
        fut.set_exception(concurrent.futures.CancelledError())
    elif task.exception() is not None:
        fut.set_exception(task.exception())
    else:
        fut.set_result(task.result())


class InstanceCollector:
    """Polls configured and discovered inference servers. Thread-safe; ``collect()`` is
    bounded by about ``timeout_s`` + 0.3 s however the servers behave, and by ``grace_s``
    once every server has answered once."""

    def __init__(self, backends: list[BackendConfig], discover: bool = True, process_table=None,
                 timeout_s: float = 1.5, clock=time.monotonic, *, probe_ports: tuple[int, ...] | None = None,
                 discovery_interval_s: float = DISCOVERY_INTERVAL_S, docker=None, prime_s: float = PRIME_S,
                 grace_s: float = 0.5) -> None:
        self.discover = discover
        self.prime_s = prime_s
        self.grace_s = min(grace_s, float(timeout_s))
        self.table = process_table if process_table is not None else ProcessTable()
        self.timeout_s = float(timeout_s)
        self.clock = clock
        if probe_ports is None:
            probe_ports = names.PROBE_PORTS if self.table.probe_default_ports else ()
        self.probe_ports = tuple(probe_ports)
        # containers: the Docker Engine API (collect/docker.py), when discovering on a real machine
        if docker is None and discover and self.table.probe_default_ports:
            from .docker import DockerDiscovery
            docker = DockerDiscovery()
        self.docker = docker if discover else None
        self.notes: list[str] = []  # one line each, for what discovery could not look at
        self._procs_scan: tuple[float, list] | None = None  # (when, processes) for loading servers
        self.discovery_interval_s = discovery_interval_s
        self._lock = threading.Lock()
        self._targets: dict[tuple[str, int, str], _Target] = {}
        self._benches: dict[str, BenchResult] = {}
        self._last_scan: float | None = None
        self._listener_pids: dict[int, int] = {}  # loopback port -> pid
        self._probe_urls: set[str] = set()  # more places to look (nginx upstream members)
        self._open_ports: dict[int, frozenset] | None = None  # loopback port -> listening sockets
        self._not_servers: dict[int, frozenset] = {}  # default port -> sockets that answered as no server
        # issue 14: `[[meters]]` arrive as backends of kind "meter"; the rest are servers
        self.meters = MeterWatch([b.url for b in backends if getattr(b, "kind", None) == "meter"], url_key,
                                 normalize_url)
        backends = [b for b in backends if getattr(b, "kind", None) != "meter"]
        for b in backends:
            if isinstance(b, str):
                b = BackendConfig(url=b)
            url = normalize_url(b.url)
            key = url_key(url)
            if key in self._targets:
                continue  # the same server configured twice
            host, port, path = key
            # host:port only: a URL's path may carry a token (/proxy/TOKEN/...), and the name is
            # shown, recorded and exported (instance_name); a second server there gets "#2"
            default_name = f"{'localhost' if host == '127.0.0.1' else host}:{port}"
            taken = {t.name for t in self._targets.values()}
            n = 2
            while default_name in taken:
                default_name = f"{'localhost' if host == '127.0.0.1' else host}:{port}#{n}"
                n += 1
            self._targets[key] = _Target(key=key, url=url, name=b.name or default_name,
                                         kind=b.kind, source=b.source, api_key_env=b.api_key_env)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gpuwatch-instances", daemon=True)
        self._thread.start()
        # one small connection pool per server: a server that hoards connections cannot starve
        # the others, and a request only checks its own server's idle connections
        self._clients: dict[tuple, KeepAliveClient | httpx.AsyncClient] = {}
        self._closed = False
        self._woken = False  # wake() was called: every server is due at the next collect()
        self._meter_fut: concurrent.futures.Future | None = None
        self._metered: dict | None = None  # the meters' last answer
        self.first_pending = False  # after collect_nowait(): a server's first poll is still running

    # ---- public API ---------------------------------------------------------------------
    def collect(self) -> list[Instance]:
        """Every server's latest state. Each server is polled on its own: a poll still running
        from an earlier call (a hung or slow server) is not waited for again -- that server
        shows its last state until its poll ends (within ``timeout_s``), and the others are
        read afresh on every call. A server that has never answered yet is waited for, up to
        ``timeout_s``; the rest at most ``grace_s``."""
        return self._collect(wait=True)

    def collect_nowait(self) -> list[Instance]:
        """What the polls started by the previous call found, and the next polls started: never
        waits (the caller's next tick reads them). A server whose first poll is still running is
        left out until it ends (within ``timeout_s``: then it is up, or down with the reason);
        ``first_pending`` says whether one is. For a caller that ticks anyway (the dashboard):
        no thread waits for the polls, and none is woken when they end."""
        return self._collect(wait=False)

    def _collect(self, wait: bool) -> list[Instance]:
        with self._lock:
            if self._closed:
                return []
            now = self.clock()
            self._refresh_processes(now)
            targets = list(self._targets.values())
            if self._woken:
                self._woken = False
                for t in targets:
                    t.idle_polls, t.next_poll = 0, 0.0
            keys = {t.key for t in targets}
            gone = [k for k in self._clients if k not in keys]
            if gone:
                asyncio.run_coroutine_threadsafe(self._close_clients(gone), self._loop)
            batch = []
            for t in targets:
                if t.inflight is None and now >= t.next_poll - IDLE_DUE_SLACK_S:
                    t.inflight = concurrent.futures.Future()
                    batch.append((self._poll_bounded(t), t.inflight))
            if self.meters and self._meter_fut is None:  # meters (issue 14): polled the same way
                self._meter_fut = concurrent.futures.Future()
                batch.append((self.meters.poll(self.timeout_s), self._meter_fut))
            if batch:
                _start_on_loop(self._loop, batch)
            meter = [self._meter_fut] if self._meter_fut is not None else []
            polling = [t for t in targets if t.inflight is not None]  # not: idle ones not due yet
            first = [t.inflight for t in polling if t.last is None] + (meter if self._metered is None else [])
            later = [t.inflight for t in polling if t.last is not None] + (meter if self._metered is not None else [])
            start = time.monotonic()
            if first and wait:
                concurrent.futures.wait(first, timeout=self.timeout_s + 0.3)
            if later and wait:
                left = self.grace_s - (time.monotonic() - start)
                concurrent.futures.wait(later, timeout=max(0.0, left))
            if self._meter_fut is not None and self._meter_fut.done():
                try:
                    self._metered = self._meter_fut.result()
                except BaseException:
                    self._metered = {}
                self._meter_fut = None
            finished: dict[tuple, _PollResult] = {}
            for t in targets:
                if t.inflight is not None and t.inflight.done():
                    fut, t.inflight = t.inflight, None
                    try:
                        finished[t.key] = fut.result()
                    except BaseException:  # cancelled at close, or a bug: never the caller's problem
                        finished[t.key] = _PollResult(error=FetchError("could not read", "error"))
            done = [t for t in targets if t.key in finished]
            attach_meters(done, [finished[t.key] for t in done], self._metered or {}, self._targets, url_key)
            out = []
            for t in targets:
                if self._targets.get(t.key) is not t:
                    continue  # dropped this tick (a proxy's upstream it has stopped)
                if t.key in finished:
                    res = finished[t.key]
                    before = t.prev.counters if t.prev is not None else None
                    inst = self._apply(t, res)
                    t.last = inst
                    self._back_off(t, inst, res, before, now)
                elif t.last is not None:
                    inst = t.last  # still polling (hung or slow): its last state, as it was
                elif t.tentative or not wait:
                    inst = None  # (not waited for: its first poll is still running)
                else:
                    inst = self._apply(t, _PollResult(error=FetchError(f"no answer within {self.timeout_s:g} s",
                                                                       "down")))
                if inst is not None:
                    out.append(copy.copy(inst))
                elif t.tentative and t.inflight is None:
                    self._targets.pop(t.key, None)  # probed again at the next discovery scan
            self.first_pending = any(t.last is None and t.inflight is not None for t in targets
                                     if self._targets.get(t.key) is t)
            return out

    @staticmethod
    def _back_off(t: _Target, inst: Instance | None, res: _PollResult, before: dict | None, now: float) -> None:
        """When this server is polled next (IDLE_BACKOFF_S)."""
        idle = (inst is not None and res.reading is not None and before is not None
                and inst.status == "up" and inst.requests_running == 0
                and not inst.requests_waiting and res.reading.counters == before)
        t.idle_polls = t.idle_polls + 1 if idle else 0
        t.next_poll = now + IDLE_BACKOFF_S[min(t.idle_polls, len(IDLE_BACKOFF_S)) - 1] if idle else 0.0

    def wake(self) -> None:
        """Poll every server at the next ``collect()``, idle or not (a GPU got busier: a request
        may have started on one of them). Only sets a flag: the Sampler calls it on the GPU
        tick, which must never wait for the lock a collect() holds while servers answer."""
        self._woken = True

    def record_bench(self, key: str, result: BenchResult) -> None:
        """Keep ``result`` as the last benchmark of the instance named ``key`` (or at URL ``key``);
        it appears in ``Instance.bench`` from the next ``collect()`` on."""
        with self._lock:
            target = self._find(key)
            if target is not None:
                target.bench = result
            else:
                self._benches[key] = result  # for an instance not seen yet

    def probe(self, urls) -> None:
        """Loopback servers to look for at the next discovery scans, as the default ports are
        (shown once they answer as a known engine): the members of an nginx upstream."""
        with self._lock:
            self._probe_urls = {normalize_url(u) for u in urls}

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.docker is not None:
            self.docker.close()
        if self._clients or self.meters:
            try:
                asyncio.run_coroutine_threadsafe(self._close_clients(list(self._clients)), self._loop).result(timeout=2)
                asyncio.run_coroutine_threadsafe(self.meters.close(), self._loop).result(timeout=2)
            except Exception:
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> InstanceCollector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- discovery ----------------------------------------------------------------------
    def _find(self, key: str) -> _Target | None:
        for t in self._targets.values():
            if t.name == key or t.url == normalize_url(key):
                return t
        try:
            k = url_key(key)
        except ValueError:
            return None
        return self._targets.get(k)

    def _refresh_processes(self, now: float) -> None:
        """Every ``discovery_interval_s``: read listening sockets, add discovered servers, map
        loopback servers to their pids and descendants, queue default-port probes."""
        if self._last_scan is not None and now - self._last_scan < self.discovery_interval_s:
            return
        self._last_scan = now
        try:
            listeners = self.table.listeners()
        except Exception:
            listeners = []
        port_pid: dict[int, int] = {}
        for lst in listeners:
            if _is_loopback(lst.host):
                port_pid.setdefault(lst.port, lst.pid)
        self._listener_pids = port_pid
        if self.discover:
            self.meters.discover(listeners, self.table)
            self._discover_processes(listeners, now)
            self._discover_loading(listeners, now)
            self._discover_containers(now)
            probes = [f"http://127.0.0.1:{port}" for port in self._ports_to_probe()] + sorted(self._probe_urls)
            for url in probes:
                key = url_key(url)
                if key[0] == "127.0.0.1" and key not in self._targets:
                    self._targets[key] = _Target(key=key, url=f"http://127.0.0.1:{key[1]}{key[2]}",
                                                 name=f"127.0.0.1:{key[1]}", kind=None, source="discovered",
                                                 tentative=True, last_seen=now, discovered=True,
                                                 sockets=(self._open_ports or {}).get(key[1]))
        # pids for every loopback server (configured ones too)
        for t in self._targets.values():
            if t.key[0] != "127.0.0.1" or t.container is not None:
                continue  # a container's own PIDs, not docker-proxy's that holds the published port
            pid = port_pid.get(t.key[1])
            if pid is None:
                continue
            info = self.table.info(pid)
            t.pid = pid
            t.pids = [pid] + [c for c in self.table.children(pid) if c != pid]
            if info is not None:
                kind = t.kind or match_server_process(info.name, info.cmdline)
                engine = ENGINES.get(kind) if kind else None
                if engine is not None:
                    t.parallelism, t.parallel_size = engine.parallelism(info.cmdline)
                t.settings = serving_settings(kind, self.table.environ(pid))
        # forget discovered servers gone for a while
        for key, t in list(self._targets.items()):
            if t.discovered and not t.tentative and now - t.last_seen > FORGET_DISCOVERED_AFTER_S:
                del self._targets[key]

    def _ports_to_probe(self) -> list[int]:
        """The default engine ports worth asking again: those something listens on for 127.0.0.1
        (asked of the kernel: probing a closed port costs four failed requests at every scan),
        less those whose listener answered as no inference server and still listens on the same
        sockets (a Grafana on 3000 is not asked again every 10 s; a server restarted on that port
        listens on a new socket and is probed). Every port where the kernel cannot be asked."""
        lookup = getattr(self.table, "loopback_ports", None)
        try:
            self._open_ports = lookup() if lookup is not None else None
        except Exception:
            self._open_ports = None
        if self._open_ports is None:
            return list(self.probe_ports)
        ports = []
        for port in self.probe_ports:
            sockets = self._open_ports.get(port)
            if sockets is None:
                self._not_servers.pop(port, None)
            elif self._not_servers.get(port) != sockets:
                ports.append(port)
        return ports

    def _discover_processes(self, listeners, now: float) -> None:
        by_pid: dict[int, list[int]] = {}
        for lst in listeners:
            by_pid.setdefault(lst.pid, []).append(lst.port)
        for pid, ports in by_pid.items():
            info = self.table.info(pid)
            if info is None:
                continue
            kind = match_server_process(info.name, info.cmdline)
            if kind is None:
                continue
            want = expected_port(kind, info.cmdline, self.table.environ(pid) if kind == "ollama" else None)
            port = want if want in ports else min(ports)
            key = ("127.0.0.1", port, "")
            t = self._targets.get(key)
            if t is None:
                name = self.table.server_name(pid) or f"{kind}:{port}"
                source = self.table.discovered_source
                self._targets[key] = _Target(key=key, url=f"http://127.0.0.1:{port}", name=name,
                                             kind=kind, source=source, last_seen=now, discovered=True)
            else:
                if t.tentative:  # a default-port probe that turns out to be a known server
                    t.tentative = False
                    t.name = f"{kind}:{port}"
                if t.kind is None:
                    t.kind = kind
                t.last_seen = now

    def _processes(self, now: float) -> list:
        """The process list (pid, name, argv, start time), read at most once per discovery interval."""
        if self._procs_scan is None or now - self._procs_scan[0] >= self.discovery_interval_s:
            try:
                self._procs_scan = (now, self.table.processes())
            except Exception:
                self._procs_scan = (now, [])
        return self._procs_scan[1]

    def _discover_loading(self, listeners, now: float) -> None:
        """Server processes that do not listen yet (loading their model): a target at the port
        they will listen on, shown as loading until they answer (see ``_starting_server``)."""
        listening = {lst.pid for lst in listeners}
        for pid, name, argv, _created in self._processes(now):
            if pid in listening:
                continue
            kind = match_server_process(name, argv)
            if kind is None or kind == "ollama":
                continue  # Ollama listens at once and loads models per request
            port = expected_port(kind, argv, None)
            key = ("127.0.0.1", port, "")
            if key not in self._targets:
                self._targets[key] = _Target(key=key, url=f"http://127.0.0.1:{port}", name=f"{kind}:{port}",
                                             kind=kind, source=self.table.discovered_source, last_seen=now,
                                             discovered=True)

    def _discover_containers(self, now: float) -> None:
        """Inference servers in Docker containers: named after the container, reached at its
        published port (or its own address), joined to the GPUs through its host PIDs."""
        if self.docker is None:
            return
        from .docker import DockerUnavailable

        try:
            containers = self.docker.containers()
        except DockerUnavailable as e:
            if str(e) not in self.notes:
                self.notes.append(str(e))
            return
        except Exception as e:  # a bug here must not stop discovery
            note = f"Docker containers not read ({type(e).__name__})"
            if note not in self.notes:
                self.notes.append(note)
            return
        for c in containers:
            if c.url is None:
                continue
            key = url_key(c.url)
            t = self._targets.get(key)
            if t is None:
                t = self._targets[key] = _Target(key=key, url=c.url, name=c.name, kind=c.kind, source="discovered",
                                                 last_seen=now, discovered=True)
            elif t.tentative or t.discovered:
                t.tentative = False
                t.name = c.name
                t.kind = t.kind or c.kind
            t.last_seen = now
            t.container, t.container_gpus = c.name, list(c.gpus)
            if c.pids:
                t.pid, t.pids = c.pids[0], list(c.pids)
                info = self.table.info(c.pids[0])
                engine = ENGINES.get(t.kind or c.kind or "")
                if info is not None and engine is not None:
                    t.parallelism, t.parallel_size = engine.parallelism(info.cmdline)

    # ---- polling ---------------------------------------------------------------------------
    def _client_for(self, t: _Target):
        """The server's own client: a :class:`~.http11.KeepAliveClient` (aiohttp) for ``http://`` (a quarter
        of httpx's CPU per request: see http11.py), an ``httpx.AsyncClient`` for ``https://``."""
        client = self._clients.get(t.key)
        if client is None:
            connect = min(CONNECT_TIMEOUT_S, self.timeout_s)
            if urlsplit(t.url).scheme == "http":
                client = self._clients[t.key] = KeepAliveClient(connect_timeout_s=connect)
                return client
            timeout = httpx.Timeout(self.timeout_s, connect=connect)
            # trust_env=False: monitoring loopback servers must not go through an HTTP proxy
            client = self._clients[t.key] = httpx.AsyncClient(
                timeout=timeout, trust_env=False, follow_redirects=False, verify=tls_context(),
                limits=httpx.Limits(max_connections=8, max_keepalive_connections=4))
        return client

    async def _close_clients(self, keys: list[str]) -> None:
        for key in keys:
            client = self._clients.pop(key, None)
            if client is not None:
                await client.aclose()

    async def _poll_bounded(self, t: _Target) -> _PollResult:
        try:
            return await asyncio.wait_for(self._poll_one(self._client_for(t), t), self.timeout_s)
        except asyncio.TimeoutError:
            error = FetchError(f"no answer within {self.timeout_s:g} s", "down")
        except FetchError as e:
            error = e
        except Exception as e:  # a bug in an engine module must not take the others down
            error = FetchError(f"could not read: {type(e).__name__}", "error")
        t.cache.clear()  # what it comes back with (version, model) may be new: ask again
        return _PollResult(error=error)

    async def _poll_one(self, client, t: _Target) -> _PollResult:
        started = time.monotonic()
        headers = {}
        base_url, basic = split_userinfo(t.url)
        if basic:
            headers["Authorization"] = basic
        if t.api_key_env:
            key = os.environ.get(t.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        f = Fetcher(client, base_url, headers, api_key_env=t.api_key_env, clock=self.clock)
        kind = t.kind or await detect_kind(f)
        engine = ENGINES[kind]
        reading = await engine.poll(f, t.cache)
        now = self.clock()
        if t.prev is None and reading.counters and reading.state is None and self.prime_s > 0:
            # best effort within this server's time budget: the first reading stands if it fails
            took = time.monotonic() - started
            budget = self.timeout_s - took - self.prime_s - 0.1  # a margin under the outer bound
            if budget > max(0.2, 3 * took):
                try:
                    await asyncio.sleep(self.prime_s)
                    second = await asyncio.wait_for(engine.poll(f, t.cache), budget)
                    return _PollResult(reading=second, t=self.clock(), kind=kind, primer=(reading, now))
                except (FetchError, asyncio.TimeoutError):
                    pass
        return _PollResult(reading=reading, t=now, kind=kind)

    # ---- results ---------------------------------------------------------------------------
    def _scrub(self, t: _Target, text: str | None) -> str | None:
        if text is None:
            return text
        secrets = [urlsplit(t.url).password]
        if t.api_key_env:
            secrets.append(os.environ.get(t.api_key_env))
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _starting_server(self, t: _Target) -> tuple[int, str, float] | None:
        """A server process of a known engine whose port is ``t``'s but which does not listen
        yet: vLLM, SGLang and TGI bind or start their HTTP server only once the model is
        loaded (names.VLLM), so a refused connection with such a process alive is loading, not
        down -- unless it is the very process seen serving on that port (then it is going away).
        Processes are listed at most once per discovery interval."""
        if t.key[0] != "127.0.0.1":
            return None
        for pid, name, argv, created in self._processes(self.clock()):
            if pid == t.pid or pid in t.pids:
                continue  # the process we saw serving (or its forked workers): going away, not loading
            kind = match_server_process(name, argv)
            if kind is None or kind == "ollama" or (t.kind and kind != t.kind):
                continue
            if expected_port(kind, argv, None) == t.key[1]:
                return pid, kind, created
        return None

    def _since(self, t: _Target, inst: Instance) -> None:
        """``status_since``: when the instance's status last changed (kept across polls)."""
        if inst.status != t.status or t.status_since is None:
            t.status, t.status_since = inst.status, _now_iso()
        inst.status_since = t.status_since

    def _upstreams(self, t: _Target, r: Reading) -> None:
        """The servers a proxy (llama-swap) runs behind it become instances of their own, named
        ``PROXY/MODEL``; the ones it has stopped are forgotten."""
        live = set()
        for model, url, _state in r.upstreams:
            try:
                key = url_key(url)
            except ValueError:
                continue
            live.add(key)
            if key in self._targets:
                continue
            self._targets[key] = _Target(key=key, url=normalize_url(url), name=f"{t.name}/{model}", kind=None,
                                         source=t.source, discovered=True, last_seen=self.clock(),
                                         upstream_of=t.name)
        for key, other in list(self._targets.items()):
            if other.upstream_of == t.name and key not in live:
                del self._targets[key]

    def _apply(self, t: _Target, res: _PollResult) -> Instance | None:
        if t.tentative:
            if res.error is not None or res.kind is None:
                if t.sockets is not None and isinstance(res.error, NotAServer):
                    self._not_servers[t.key[1]] = t.sockets  # answers, but as no server we know
                return None  # nothing (recognised) on this default port
            t.tentative = False
            t.name = f"{res.kind}:{t.key[1]}"
        if res.kind is not None and t.kind is None:
            t.kind = res.kind
            engine = ENGINES[res.kind]
            if t.pid is not None:
                info = self.table.info(t.pid)
                if info is not None:
                    t.parallelism, t.parallel_size = engine.parallelism(info.cmdline)
        if t.bench is None:
            t.bench = self._benches.pop(t.name, None) or self._benches.pop(t.url, None)
        inst = Instance(name=t.name, kind=t.kind or "unknown", url=display_url(t.url), source=t.source,
                        pid=t.pid, pids=list(t.pids), parallelism=t.parallelism, parallel_size=t.parallel_size,
                        bench=copy.deepcopy(t.bench), container=t.container, container_gpus=list(t.container_gpus),
                        settings=dict(t.settings))
        if res.error is not None and res.error.status == "down" and "refused" in res.error.message:
            starting = self._starting_server(t)
            if starting is not None:
                pid, kind, created = starting
                inst.kind = t.kind or kind
                inst.pid, inst.status = pid, "loading"
                inst.status_detail = f"{kind} process {pid} runs but does not listen yet (loading its model)"
                if t.status != "loading":
                    t.status = "loading"
                    t.status_since = _dt.datetime.fromtimestamp(created, _dt.timezone.utc).isoformat(
                        timespec="seconds") if created else _now_iso()
                inst.status_since = t.status_since
                t.error_since = None
                t.last_seen = self.clock()
                return inst
        if res.error is not None:
            inst.status = res.error.status
            if res.error.status == "loading":  # it says so (llama.cpp's 503 "Loading model"): alive, no error
                inst.status_detail = self._scrub(t, res.error.message)
                t.error_since = None
                inst.version = t.version
                self._since(t, inst)
                return inst
            if t.error_since is None:
                t.error_since = _now_iso()
            inst.error = self._scrub(t, res.error.message)
            inst.error_since = t.error_since
            inst.version = t.version
            self._since(t, inst)
            return inst
        t.last_seen = self.clock()
        t.error_since = None
        r = res.reading
        inst.status = r.state or "up"
        inst.status_detail = r.state_detail
        self._since(t, inst)
        self._upstreams(t, r)
        inst.meter = res.meter
        inst.meter_routes = list(res.meter_routes)
        primed = res.primer is not None and t.prev is None
        if primed:
            t.prev, t.prev_t = res.primer
        inst.version = r.version
        t.version = r.version
        inst.models = r.models
        g = r.gauges
        inst.requests_running = g.get("requests_running")
        inst.requests_waiting = g.get("requests_waiting")
        inst.kv_cache_usage_pct = g.get("kv_cache_usage_pct")
        inst.prefix_cache_hit_pct = g.get("prefix_cache_hit_pct")
        inst.slots_busy = _whole(g.get("slots_busy"))
        inst.slots_total = _whole(g.get("slots_total"))
        prev = t.prev
        dt = (res.t - t.prev_t) if t.prev_t is not None else None
        pc = prev.counters if prev else {}
        c = r.counters
        inst.generation_tokens_per_s = _generation_rate(inst.kind, r, prev, dt)
        inst.flops_per_gpu_per_s = _rate(c.get("flops_per_gpu"), pc.get("flops_per_gpu"), dt)
        inst.read_bytes_per_gpu_per_s = _rate(c.get("read_bytes_per_gpu"), pc.get("read_bytes_per_gpu"), dt)
        inst.prompt_tokens_per_s = _rate(c.get("prompt_tokens"), pc.get("prompt_tokens"), dt)
        inst.preemptions_per_s = _rate(c.get("preemptions"), pc.get("preemptions"), dt)
        inst.requests_per_s = _rate(c.get("requests"), pc.get("requests"), dt)
        # prompts arrive with requests: between two arrivals the last hit rate stands
        hit = _held_ratio(t, "prefix_cache_hit", c, pc, "prefix_cache_hits", "prefix_cache_queries")
        if hit is not None:
            inst.prefix_cache_hit_pct = 100.0 * hit
        # llama.cpp adds both at a request's end (names.LLAMACPP)
        inst.time_per_token_s = _held_ratio(t, "time_per_token_s", c, pc, "generation_seconds", "generation_tokens")
        accept = _held_ratio(t, "spec_accept_pct", c, pc, "spec_accepted_tokens", "spec_draft_tokens")
        inst.spec_accept_pct = None if accept is None else 100.0 * accept
        ph = prev.histograms if prev and not primed else {}  # a first poll: latency over all observed so far
        for key, p50, p95 in (("ttft", "ttft_p50_s", "ttft_p95_s"), ("itl", "itl_p50_s", "itl_p95_s")):
            h = _interval_histogram(r.histograms.get(key), ph.get(key))
            if h is not None:
                setattr(inst, p50, h.quantile(0.5))
                setattr(inst, p95, h.quantile(0.95))
        t.prev, t.prev_t = r, res.t
        return inst
