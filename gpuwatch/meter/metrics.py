"""The meter's counters (prometheus_client, one registry) and the per-request tally that feeds
them as a response passes.

Generated tokens are counted live, one per token-bearing chunk as it reaches the client, so a
rate over any window tracks what clients receive even in the middle of a long generation;
when the server reports its own count at the end (Ollama ``eval_count``, OpenAI
``usage.completion_tokens``) the counter is topped up to it. Counters only go up, so a server
count below the chunks seen leaves the chunk count standing.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from . import names

MAX_MODELS_PER_ROUTE = 64  # distinct model labels per route; more are counted as "other"
MAX_MODEL_CHARS = 128


def clean_model(name: str | None) -> str:
    """A model name as a label value: printable, bounded (it comes from the wire)."""
    if not name:
        return "unknown"
    name = "".join(ch if ch.isprintable() else "?" for ch in name[:MAX_MODEL_CHARS])
    return name or "unknown"


def _name(full: str, suffix: str = "_total") -> str:
    """prometheus_client adds ``_total`` to counters itself."""
    return full[: -len(suffix)] if full.endswith(suffix) else full


class MeterMetrics:
    """Every series of one meter process, in its own registry."""

    def __init__(self, routes: dict[str, str]) -> None:
        """``routes``: LISTEN -> upstream URL."""
        r = self.registry = CollectorRegistry(auto_describe=False)
        info = Gauge(names.ROUTE_INFO, "Each route of this meter and the upstream it forwards to (value 1).",
                     ["route", "upstream"], registry=r)
        for listen, upstream in routes.items():
            info.labels(listen, upstream).set(1)
        self.running = Gauge(names.REQUESTS_RUNNING, "Inference requests in flight through the route.",
                             ["route"], registry=r)
        self.requests = Counter(_name(names.REQUESTS), "Finished inference requests by HTTP status "
                                "(502: the upstream could not be reached).", ["route", "model", "code"], registry=r)
        self.disconnects = Counter(_name(names.CLIENT_DISCONNECTS), "Clients that went away before the response "
                                   "ended (the upstream request is cancelled).", ["route", "model"], registry=r)
        self.upstream_errors = Counter(_name(names.UPSTREAM_ERRORS), "Upstream failures: connect (no answer) or "
                                       "reset (cut mid-response).", ["route", "reason"], registry=r)
        self.prompt = Counter(_name(names.PROMPT_TOKENS), "Prompt tokens the server reported (Ollama "
                              "prompt_eval_count, OpenAI usage.prompt_tokens).", ["route", "model"], registry=r)
        self.generation = Counter(_name(names.GENERATION_TOKENS), "Generated tokens: one per streamed chunk as it "
                                  "passes, topped up to the server's count at the end.", ["route", "model"], registry=r)
        self.estimated = Counter(_name(names.GENERATION_TOKENS_ESTIMATED), "Generated tokens no server count "
                                 "confirmed (one per content delta).", ["route", "model"], registry=r)
        self.ttft = Histogram(names.TTFT, "From the request reaching the meter to the first generated token "
                              "passing it.", ["route", "model"], buckets=names.TTFT_BUCKETS, registry=r)
        self.itl = Histogram(names.ITL, "Gap between consecutive token-bearing chunks of a stream.",
                             ["route", "model"], buckets=names.ITL_BUCKETS, registry=r)
        self.eval_s = Counter(_name(names.ENGINE_EVAL_SECONDS), "Ollama eval_duration of finished requests.",
                              ["route", "model"], registry=r)
        self.prompt_eval_s = Counter(_name(names.ENGINE_PROMPT_EVAL_SECONDS), "Ollama prompt_eval_duration of "
                                     "finished requests.", ["route", "model"], registry=r)
        self.load_s = Counter(_name(names.ENGINE_LOAD_SECONDS), "Ollama load_duration of finished requests.",
                              ["route", "model"], registry=r)
        self.request_bytes = Counter(_name(names.REQUEST_BYTES), "Request body bytes from clients.", ["route"],
                                     registry=r)
        self.response_bytes = Counter(_name(names.RESPONSE_BYTES), "Response body bytes to clients.", ["route"],
                                      registry=r)
        self._models: dict[str, dict[str, _ModelSeries]] = {}
        self._routes: dict[str, _RouteSeries] = {}
        for listen in routes:
            self.route(listen)

    def route(self, route: str) -> _RouteSeries:
        got = self._routes.get(route)
        if got is None:
            got = self._routes[route] = _RouteSeries(self, route)
        return got

    def series(self, route: str, model: str | None) -> _ModelSeries:
        per = self._models.setdefault(route, {})
        model = clean_model(model)
        got = per.get(model)
        if got is None:
            if len(per) >= MAX_MODELS_PER_ROUTE:
                model = "other"
                got = per.get(model)
            if got is None:
                got = per[model] = _ModelSeries(self, route, model)
        return got

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _RouteSeries:
    __slots__ = ("running", "request_bytes", "response_bytes", "connect_errors", "reset_errors")

    def __init__(self, m: MeterMetrics, route: str) -> None:
        self.running = m.running.labels(route)
        self.request_bytes = m.request_bytes.labels(route)
        self.response_bytes = m.response_bytes.labels(route)
        self.connect_errors = m.upstream_errors.labels(route, "connect")
        self.reset_errors = m.upstream_errors.labels(route, "reset")


class _ModelSeries:
    """The children of one (route, model): looked up once, then incremented directly."""

    __slots__ = ("m", "route", "model", "generation", "estimated", "prompt", "ttft", "itl", "disconnects",
                 "eval_s", "prompt_eval_s", "load_s")

    def __init__(self, m: MeterMetrics, route: str, model: str) -> None:
        self.m, self.route, self.model = m, route, model
        self.generation = m.generation.labels(route, model)
        self.estimated = m.estimated.labels(route, model)
        self.prompt = m.prompt.labels(route, model)
        self.ttft = m.ttft.labels(route, model)
        self.itl = m.itl.labels(route, model)
        self.disconnects = m.disconnects.labels(route, model)
        self.eval_s = m.eval_s.labels(route, model)
        self.prompt_eval_s = m.prompt_eval_s.labels(route, model)
        self.load_s = m.load_s.labels(route, model)

    def finished(self, code: int | str) -> None:
        self.m.requests.labels(self.route, self.model, str(code)).inc()


class Tally:
    """One inference request: a :class:`~gpuwatch.meter.parse.Sink` that counts into the
    route's series as the response passes."""

    __slots__ = ("metrics", "route", "start", "guess", "series", "chunks", "last", "reported_completion",
                 "clock")

    def __init__(self, metrics: MeterMetrics, route: str, start: float, guess: str | None = None,
                 clock=time.perf_counter) -> None:
        self.metrics = metrics
        self.route = route
        self.start = start
        self.guess = guess  # the model named in the request, until the response names one
        self.series: _ModelSeries | None = None
        self.chunks = 0
        self.last: float | None = None
        self.reported_completion: int | None = None
        self.clock = clock

    def _series(self) -> _ModelSeries:
        s = self.series
        if s is None:
            s = self.series = self.metrics.series(self.route, self.guess)
        return s

    # ---- Sink ---------------------------------------------------------------------------
    def model(self, name: str) -> None:
        if self.series is None:
            self.series = self.metrics.series(self.route, name)

    def tokens(self, n: int) -> None:
        now = self.clock()
        s = self._series()
        if self.last is None:
            s.ttft.observe(now - self.start)
        else:
            s.itl.observe(now - self.last)
        self.last = now
        self.chunks += n
        s.generation.inc(n)

    def reported(self, prompt: int | None, completion: int | None, durations_s: dict[str, float]) -> None:
        s = self._series()
        if prompt:
            s.prompt.inc(prompt)
        if completion is not None:
            self.reported_completion = completion
            if completion > self.chunks:
                s.generation.inc(completion - self.chunks)
        for key, child in (("eval_duration", s.eval_s), ("prompt_eval_duration", s.prompt_eval_s),
                           ("load_duration", s.load_s)):
            v = durations_s.get(key)
            if v:
                child.inc(v)

    # ---- end of the request -------------------------------------------------------------
    def done(self, code: int | str, disconnected: bool = False) -> None:
        s = self._series()
        if self.reported_completion is None and self.chunks:
            s.estimated.inc(self.chunks)
        if disconnected:
            s.disconnects.inc()
        s.finished(code)
