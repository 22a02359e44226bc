"""The fleet source: every host known to a Prometheus server, one Snapshot each, per refresh.

A refresh is :func:`~gpuwatch.fleet.mapping.build_queries`'s instant queries (all hosts at once,
run in parallel, each bounded by ``timeout_s``) and one pass over their samples: the gauges and
the rates every time, the GPUs' static properties every :data:`STATIC_EVERY_S` and whenever a box
or GPU appears (a follow-up query then); in between they are kept from their last reading. Each host
then goes through its own :class:`~gpuwatch.analysis.alerts.AlertEngine` (hysteresis across
refreshes) and :class:`~gpuwatch.analysis.history.History` (charts), like a local box.

A Prometheus server that is down, slow or answering errors is a sentence in
``FleetReading.error``, never an exception. A host that was seen and has no series any more
(its exporter stopped, or the target was removed) stays listed with a reason until
``forget_after_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .. import gcpause
from ..analysis.alert_config import AlertConfig
from ..analysis.alerts import AlertEngine
from ..analysis.history import History
from ..model import Snapshot
from ..pipeline import iso
from .mapping import RATE_WINDOW, FleetBuilder, build_queries
from .promql import PromClient
from .status import host_status, status_alert

# the GPUs' static properties (memory, thresholds, maximum clocks and link: names.Series.static)
# are read this often, and at once for a box or GPU not seen at their last reading. Measured with
# bench/fleet.py (256 hosts x 8 GPUs, recorded answers): they and the inactive throttle reasons
# were half the samples of every refresh.
STATIC_EVERY_S = 60.0
# A refresh shows nothing new until Prometheus has scraped again: the fleet is refreshed at most
# twice per shortest scrape interval of its targets (every 2.5 s at the 5 s docs/PROMETHEUS.md
# suggests, instead of the dashboard's 1 s), and at least every PACE_MAX_S
PACE_MAX_S = 10.0


@dataclass
class FleetReading:
    time: str
    hosts: list[Snapshot] = field(default_factory=list)
    error: str | None = None
    refresh_ms: float = 0.0  # whole refresh: queries (parallel) + parsing + alert rules
    query_ms: float = 0.0  # slowest query, as the client saw it
    parse_ms: float = 0.0  # samples -> snapshots
    queries: int = 0
    samples: int = 0

    def host(self, name: str) -> Snapshot | None:
        for s in self.hosts:
            if s.host == name:
                return s
        return None


class FleetSource:
    def __init__(self, url: str, timeout_s: float = 3.0, alert_config: AlertConfig | None = None, one_shot: bool = False,
                 window: str = RATE_WINDOW, history_points: int = 600, forget_after_s: float = 3600.0,
                 client: PromClient | None = None, wall=time.time) -> None:
        self.url = url.rstrip("/")
        self.client = client or PromClient(self.url, timeout_s)
        self.queries = build_queries(window)
        self.alert_config = alert_config or AlertConfig()
        self.one_shot = one_shot
        self.history_points = history_points
        self.forget_after_s = forget_after_s
        self.wall = wall
        self.engines: dict[str, AlertEngine] = {}
        self.histories: dict[str, History] = {}
        self.last_seen: dict[str, float] = {}
        self.last: FleetReading | None = None
        self.targets_of: dict[str, set[str]] = {}  # host -> the scrape targets its series came from
        self.down_since: dict[str, float] = {}
        # scrape target -> its interval, from the last list that named any (tests/fixtures/prometheus/
        # targets-just-started.json: a Prometheus lists none for its first seconds)
        self.intervals: dict[str, float] = {}
        self.static: dict[str, dict[int, tuple]] = {}  # host -> GPU index -> static properties, as last read
        self._static_at: float | None = None  # when they were last read (wall clock)
        self._static_for: set[tuple[str, int]] = set()  # the (host, GPU) listed when they were last read

    def pace(self, interval: float) -> float:
        """Seconds between refreshes for a wanted ``interval``: not below half the shortest
        scrape interval Prometheus last listed for its targets (PACE_MAX_S at most); ``interval``
        while it lists none."""
        if not self.intervals:
            return interval
        return max(interval, min(PACE_MAX_S, min(self.intervals.values()) / 2))

    def _engine(self, host: str):
        e = self.engines.get(host)
        if e is None:
            e = self.engines[host] = AlertEngine(self.alert_config, one_shot=self.one_shot)
        return e

    def history(self, host: str) -> History:
        h = self.histories.get(host)
        if h is None:
            h = self.histories[host] = History(self.history_points)
        return h

    def refresh(self) -> FleetReading:
        start = time.perf_counter()
        now = self.wall()
        due = self._static_at is None or not 0 <= now - self._static_at < STATIC_EVERY_S
        queries = self.queries if due else {k: q for k, q in self.queries.items() if k != "static"}
        results, errors, targets = self.client.query_many_and_targets(queries, at=now)
        t_parse = time.perf_counter()
        with gcpause.paused():  # tens of thousands of samples become snapshots: see gcpause
            builder = FleetBuilder()
            for name in ("gauges", "rates"):
                if name in results:
                    builder.add(results[name], create=name != "rates")
        parse_s = time.perf_counter() - t_parse
        gpus = builder.gpuwatch_gpus()
        if "static" not in queries and gpus - self._static_for:
            # a box or GPU that was not there at the last reading: its properties now, not in a minute
            queries = self.queries
            more, failed = self.client.query_many({"static": queries["static"]}, at=now)
            results.update(more)
            errors.update(failed)
        with gcpause.paused():
            reading = self._read(builder, gpus, results, errors, targets, queries, now, start, parse_s)
        self.last = reading
        return reading

    def _read(self, builder: FleetBuilder, gpus: set, results: dict, errors: dict, targets, queries: dict,
              now: float, start: float, parse_s: float) -> FleetReading:
        """The gauges and rates as read by ``builder``, and the rest of the answers -> this refresh's
        reading. ``parse_s``: the time ``builder`` took (the follow-up query is not parsing)."""
        t_read = time.perf_counter()
        if "static" in results:
            read = FleetBuilder()
            read.add(results["static"])
            self.static = read.static_values()
            self._static_at = now
            self._static_for = gpus | read.gpuwatch_gpus()
        builder.apply_static(self.static)
        when = iso(builder.eval_time or now)
        hosts = builder.snapshots(when)
        for name, h in builder.hosts.items():
            self.targets_of.setdefault(name, set()).update(h.targets)
        for name, recent in builder.recent_targets.items():
            self.targets_of.setdefault(name, set()).update(recent)
            if name not in self.last_seen:  # a box that stopped before we started
                self.last_seen[name] = builder.last_sample.get(name, now)
        parse_ms = (parse_s + time.perf_counter() - t_read) * 1000
        error = None
        if errors:
            first = next(iter(errors.values()))
            error = first if len(errors) == len(queries) else f"partial data: {first}"
        seen = {s.host for s in hosts}
        if not errors or results:
            for h in seen:
                self.last_seen[h] = now
        # hosts that went quiet stay visible, with the reason, until forgotten
        if not error:
            for h, t in list(self.last_seen.items()):
                if h in seen:
                    continue
                if now - t > self.forget_after_s:
                    for kept in (self.last_seen, self.engines, self.histories, self.targets_of, self.down_since):
                        kept.pop(h, None)
                    continue
                hosts.append(Snapshot(time=when, host=h, source="prometheus"))
            hosts.sort(key=lambda s: s.host)
        by_instance = {t.instance: t for t in targets} if targets is not None else None
        if targets:
            self.intervals = {t.instance: t.interval_s for t in targets if t.interval_s}
        for snap in hosts:
            status = snap.status = host_status(snap.host, self.targets_of.get(snap.host, set()), by_instance, now,
                                               self.down_since, snap.host in seen, self.last_seen.get(snap.host),
                                               builder.last_sample.get(snap.host), self.intervals)
            if status.state != "up" and not snap.gpus:
                snap.nvml_error = f"{snap.host} is {status.state}: {status.reason}"
            own = list(snap.alerts)  # raised by gpuwatch on the box itself
            self._engine(snap.host).update(snap)
            have = {a.identity() for a in snap.alerts}
            snap.alerts += [a for a in own if a.identity() not in have]
            down = status_alert(snap.host, status)
            if down is not None:
                # what the host said before it went quiet is not news: the one alert is that it did
                snap.alerts = [down]
            self.history(snap.host).add(snap)
        total_ms = (time.perf_counter() - start) * 1000
        for snap in hosts:
            snap.collect_ms = round(total_ms, 2)
        reading = FleetReading(time=when, hosts=hosts, error=error, refresh_ms=total_ms,
                               query_ms=max((r.ms for r in results.values()), default=0.0), parse_ms=parse_ms,
                               queries=len(queries), samples=sum(len(r.samples) for r in results.values()))
        return reading

    def close(self) -> None:
        self.client.close()


def fleet_document(reading: FleetReading, url: str) -> dict:
    """``gpuwatch snapshot --json --prometheus URL``: one document for the whole fleet."""
    return {"schema_version": 1, "hosts": [s.to_dict() for s in reading.hosts], "prometheus": url,
            "error": reading.error}
