"""Meters: running ``gpuwatch meter`` processes, read once per poll and attached to the
instances they front.

A meter is found by itself -- a process whose command line is ``gpuwatch meter ...``
(``--metrics`` gives its address, default ``127.0.0.1:9836``) -- or named in the config
(``[[meters]] url = "http://127.0.0.1:9836"``). Its ``/metrics`` says which upstream each route
forwards to (``gpuwatch_meter_route_info``); the routes' counters, summed per upstream, become a
:class:`~gpuwatch.collect.engines.base.Reading` that fills in what the instance at that URL does
not report itself (Ollama: tokens, running requests, TTFT, ITL). Rates and quantiles are then
computed by the collector exactly as for an engine's own counters.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import httpx

from ..meter import names as meter_names
from ..meter.routes import parse_listen
from .engines import names as engine_names
from .engines.base import FetchError, Fetcher, Histogram, PromScrape, Reading, flag_value, scrape_off_loop

MAX_ROUTES, MAX_LABEL = 256, 256
WANTED = {meter_names.ROUTE_INFO} | {n for n in meter_names.READ.values()} | {
    meter_names.TTFT + "_bucket", meter_names.ITL + "_bucket"}


def is_meter_process(name: str | None, argv: list[str]) -> bool:
    """``gpuwatch meter ...`` however it was started: the console script, ``python -m
    gpuwatch``, or ``python .../gpuwatch/__main__.py``."""
    for i, arg in enumerate(argv[:4]):
        base = os.path.basename(arg)
        if base == "gpuwatch" or (base == "__main__.py" and "gpuwatch" in arg):
            return "meter" in argv[i + 1:i + 2]
    return False


def metrics_url(argv: list[str]) -> str | None:
    """Where a meter started with ``argv`` serves its metrics (None: ``--metrics none``)."""
    value = flag_value(argv, ("--metrics",)) or meter_names.DEFAULT_METRICS
    if value.lower() in ("none", "off", ""):
        return None
    try:
        host, port = parse_listen(value)
    except ValueError:
        return None
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass
class MeterReading:
    """What the meters say about one upstream (several routes to it are summed)."""

    meter: str  # metrics URL of the (first) meter
    reading: Reading
    fronts: list[str]  # LISTEN addresses of the routes, e.g. "127.0.0.1:11534"


class MeterWatch:
    """The meters of this box. ``discover()`` from the collector's process scan; ``poll()`` on
    the collector's event loop gives their readings keyed by the upstream's ``url_key``. A meter
    that does not answer contributes nothing that poll (its servers show no meter figures)."""

    def __init__(self, urls, key, normalize) -> None:
        """``key``: the collector's server identity of a URL (``instances.url_key``);
        ``normalize``: its URL normalisation."""
        self._key = key
        self.configured = [normalize(u) for u in urls]
        self.discovered: list[str] = []
        self._client: httpx.AsyncClient | None = None
        self._series: dict[str, dict] = {}

    def __bool__(self) -> bool:
        return bool(self.configured or self.discovered)

    def discover(self, listeners, table) -> None:
        found: list[str] = []
        for pid in dict.fromkeys(lst.pid for lst in listeners):
            info = table.info(pid)
            if info is None or not is_meter_process(info.name, info.cmdline):
                continue
            url = metrics_url(info.cmdline)
            if url and url not in found:
                found.append(url)
        self.discovered = [u for u in found if u not in self.configured]

    async def poll(self, timeout_s: float) -> dict[tuple, MeterReading]:
        urls = self.configured + self.discovered
        if not urls:
            return {}
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=min(0.5, timeout_s)),
                                             trust_env=False, follow_redirects=False)
        got = await asyncio.gather(*(asyncio.wait_for(self._read(u), timeout_s) for u in urls),
                                   return_exceptions=True)
        out: dict[tuple, MeterReading] = {}
        for url, routes in zip(urls, got):
            if isinstance(routes, BaseException):
                continue
            for upstream, listen, reading in routes:
                try:
                    key = self._key(upstream)
                except ValueError:
                    continue
                have = out.get(key)
                if have is None:
                    out[key] = MeterReading(meter=url, reading=reading, fronts=[listen])
                else:
                    have.reading = _sum(have.reading, reading)
                    have.fronts.append(listen)
        return out

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _read(self, url: str) -> list[tuple[str, str, Reading]]:
        text = await Fetcher(self._client, url).get_text("/metrics")
        scrape = await scrape_off_loop(text or "", wanted=WANTED, series=self._series.setdefault(url, {}))
        if not scrape.has_prefix(meter_names.PREFIX):
            raise FetchError(f"no {meter_names.PREFIX} series at {url}/metrics")
        return routes_of(scrape)


def routes_of(scrape: PromScrape) -> list[tuple[str, str, Reading]]:
    """(upstream, route, reading) for every route of one meter's scrape."""
    out = []
    for labels, _ in scrape.samples.get(meter_names.ROUTE_INFO, ())[:MAX_ROUTES]:
        route, upstream = labels.get("route"), labels.get("upstream")
        if not route or not upstream or len(route) > MAX_LABEL or len(upstream) > MAX_LABEL:
            continue  # what a meter says is bounded like any other outside text
        r = Reading()

        def total(name: str) -> float | None:
            vals = [v for lb, v in scrape.samples.get(name, ()) if lb.get("route") == route and v == v]
            return sum(vals) if vals else None

        r.gauges["requests_running"] = total(meter_names.REQUESTS_RUNNING)
        for key in ("generation_tokens", "prompt_tokens", "requests"):
            v = total(meter_names.READ[key])
            r.counters[key] = 0.0 if v is None else v  # no request yet: zero, so the first one has a rate
        for key in ("ttft", "itl"):
            by_le: dict[float, float] = {}
            for lb, v in scrape.samples.get(meter_names.READ[key] + "_bucket", ()):
                if lb.get("route") != route:
                    continue
                try:
                    le = float(lb.get("le", "nan"))
                except ValueError:
                    continue
                if le == le and v == v:
                    by_le[le] = by_le.get(le, 0.0) + v
            if by_le:
                r.histograms[key] = Histogram(sorted(by_le.items()))
        out.append((upstream, route, r))
    return out


def _sum(a: Reading, b: Reading) -> Reading:
    r = Reading()
    for k in set(a.gauges) | set(b.gauges):
        va, vb = a.gauges.get(k), b.gauges.get(k)
        r.gauges[k] = None if va is None and vb is None else (va or 0.0) + (vb or 0.0)
    for k in set(a.counters) | set(b.counters):
        r.counters[k] = a.counters.get(k, 0.0) + b.counters.get(k, 0.0)
    for k in set(a.histograms) | set(b.histograms):
        ha, hb = a.histograms.get(k), b.histograms.get(k)
        if ha is None or hb is None or [le for le, _ in ha.buckets] != [le for le, _ in hb.buckets]:
            r.histograms[k] = ha or hb
        else:
            r.histograms[k] = Histogram([(le, c1 + c2) for (le, c1), (_, c2) in zip(ha.buckets, hb.buckets)])
    return r


def attach(reading: Reading, m: Reading, prefer_meter: bool = False) -> None:
    """Fill in what the engine did not report from the meter: the engine's own figures win
    (vLLM behind a meter keeps its counters), except token counters that move only when a
    request ends (``prefer_meter``: ``names.METER_PREFERRED``)."""
    for k, v in m.gauges.items():
        if reading.gauges.get(k) is None:
            reading.gauges[k] = v
    for k, v in m.counters.items():
        if prefer_meter:
            reading.counters[k] = v
        else:
            reading.counters.setdefault(k, v)
    for k, v in m.histograms.items():
        reading.histograms.setdefault(k, v)


def attach_meters(targets, results, metered: dict[tuple, MeterReading], all_targets: dict, key) -> None:
    """Give each polled server the figures of the meter routes that forward to it (or that it
    was reached through: a server configured at a meter's LISTEN address). A server found only
    by discovery at a meter's LISTEN address while its upstream is watched too is the same
    server twice: it is dropped. ``key``: the collector's ``url_key``."""
    if not metered:
        return
    fronts: dict[tuple, tuple[tuple, MeterReading]] = {}
    for up_key, m in metered.items():
        for listen in m.fronts:
            try:
                fronts[key("http://" + listen)] = (up_key, m)
            except ValueError:
                continue
    for t, res in zip(targets, results):
        m = metered.get(t.key)
        if m is None and t.key in fronts:
            up_key, m = fronts[t.key]
            if (t.discovered or t.tentative) and up_key in all_targets:
                t.tentative = True  # not shown, and forgotten by the collector
                res.reading, res.kind = None, None
                res.error = FetchError("a gpuwatch meter in front of a watched server")
                continue
        if m is not None and res.reading is not None:
            attach(res.reading, m.reading, prefer_meter=(res.kind or t.kind) in engine_names.METER_PREFERRED)
            res.meter = m.meter
            res.meter_routes = tuple(m.fronts)
