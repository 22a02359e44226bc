"""A small client of Prometheus's HTTP API: instant queries (``/api/v1/query``) in bounded time.

Every failure is a :class:`PromError` whose text is one sentence a status line can show: the
server is down, slow, not Prometheus, or refused the query (with Prometheus's own reason).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import json
import math
import threading
import time
from dataclasses import dataclass, field

import httpx

from .. import gcpause
from ..collect.bounded import ACCEPT_ENCODING, BodyError, read_async
from ..collect.engines.base import connection_refused
from ..sanitize import clean_message, clean_text


class PromError(Exception):
    """Prometheus could not answer; ``str()`` is the one-line reason."""


class Sample:
    """One sample of an instant vector. (A plain class with slots: a fleet's answer has tens of
    thousands, and a dataclass's creation cost twice as much.)"""

    __slots__ = ("labels", "value", "t")

    def __init__(self, labels: dict[str, str], value: float, t: float) -> None:
        self.labels = labels
        self.value = value
        self.t = t

    def __repr__(self) -> str:
        return f"Sample({self.labels!r}, {self.value!r}, {self.t!r})"


@dataclass
class QueryResult:
    samples: list[Sample] = field(default_factory=list)
    eval_time: float | None = None
    ms: float = 0.0
    bytes: int = 0
    skipped: int = 0  # malformed result items left out


# the largest query answer read (decompressed): the gauges of a box with 8 GPUs and three servers
# are 37 kB of JSON (recorded: tests/fixtures/prometheus/gpuwatch-gauges.json), so about 880 such
# boxes fit (before the static properties and inactive throttle reasons left that query, 74 kB a
# box: a fleet of 460 failed); the parsed samples take about 5x the text
MAX_ANSWER_BYTES = 32 * 1024 * 1024


def parse_vector(data: dict) -> QueryResult:
    """The JSON document of an instant query -> samples. Raises PromError for an error answer
    or a result that is not a vector. A malformed item (not an object, labels that are not
    text, a value that is not a number) is skipped, not the whole answer."""
    if not isinstance(data, dict):
        raise PromError("Prometheus answered something that is not a JSON object")
    if data.get("status") != "success":
        kind = clean_text(data.get("errorType") or "error", 40)
        raise PromError(f"Prometheus refused the query ({kind}): {clean_message(data.get('error') or 'no reason given')}")
    body = data.get("data")
    body = body if isinstance(body, dict) else {}
    rtype = body.get("resultType")
    result = body.get("result")
    result = result if isinstance(result, list) else []
    out = QueryResult()
    if rtype == "scalar":
        return out
    if rtype != "vector":
        raise PromError(f"Prometheus answered a {clean_text(rtype, 40)!r} where an instant vector was expected")
    append = out.samples.append
    isfinite = math.isfinite
    last_t = None
    for item in result:  # (exact type checks: what json.loads makes, at a fraction of isinstance's cost)
        if type(item) is not dict:
            out.skipped += 1
            continue
        metric = item.get("metric") or {}
        pair = item.get("value")
        if type(metric) is not dict or type(pair) is not list or len(pair) != 2:
            out.skipped += 1
            continue
        for text in metric.values():
            if type(text) is not str:
                metric = {k: v for k, v in metric.items() if isinstance(v, str)}
                break
        try:
            v = float(pair[1])  # "NaN", "+Inf" parse too: the sanitiser makes them bad readings
            t = float(pair[0])
        except (TypeError, ValueError, OverflowError):
            out.skipped += 1
            continue
        if v != v:  # NaN: no value
            continue
        append(Sample(metric, v, t))
        if isfinite(t):
            last_t = t
    if last_t is not None:
        out.eval_time = last_t
    return out


@dataclass
class Target:
    """One scrape target as Prometheus sees it (``/api/v1/targets``; fields as documented at
    https://prometheus.io/docs/prometheus/latest/querying/api/#targets: ``health`` is
    ``up``/``down``/``unknown`` (not scraped yet, e.g. just after a restart), ``lastScrape`` an
    RFC 3339 time, ``scrapeInterval`` a duration such as ``15s``)."""
    instance: str
    job: str
    health: str
    last_scrape: float | None  # epoch seconds; None when never scraped
    last_error: str
    interval_s: float | None


def parse_targets(data: dict) -> list[Target]:
    if not isinstance(data, dict) or data.get("status") != "success":
        raise PromError("Prometheus did not list its targets")
    out = []
    body = data.get("data")
    items = body.get("activeTargets") if isinstance(body, dict) else None
    for t in items if isinstance(items, list) else []:
        if not isinstance(t, dict):
            continue  # one malformed item is skipped, not the list
        labels = t.get("labels") if isinstance(t.get("labels"), dict) else {}
        out.append(Target(instance=clean_text(labels.get("instance", "")), job=clean_text(labels.get("job", "")),
                          health=clean_text(t.get("health") or "unknown", 40),
                          last_scrape=_rfc3339(t.get("lastScrape")),
                          last_error=clean_message(t.get("lastError") or ""),
                          interval_s=_duration(t.get("scrapeInterval"))))
    return out


def _rfc3339(text) -> float | None:
    from datetime import datetime
    if not isinstance(text, str) or text.startswith("0001-"):  # Go's zero time: never scraped
        return None
    try:
        # Prometheus writes nanoseconds; Python's parser takes up to microseconds
        head, _, frac = text.rstrip("Z").partition(".")
        digits = "".join(ch for ch in frac if ch.isdigit())[:6]
        tz = "+00:00" if text.endswith("Z") else ""
        if not tz and ("+" in frac or "-" in frac):
            tz = frac[len("".join(ch for ch in frac if ch.isdigit())):]
        return datetime.fromisoformat(f"{head}.{digits or '0'}{tz or '+00:00'}").timestamp()
    except ValueError:
        return None


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text) -> float | None:
    """A Prometheus duration (``15s``, ``1m30s``, ``500ms``) in seconds."""
    import re
    if not isinstance(text, str) or not text:
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if not parts:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


class PromClient:
    """Instant queries against one Prometheus server (``url`` is its base, e.g.
    ``http://127.0.0.1:9090``). Thread-safe; queries of one refresh run in parallel on a
    private event loop, each bounded as a whole by ``timeout_s`` (connect, headers and body:
    a server sending one byte a second is cut off) and by :data:`MAX_ANSWER_BYTES` decoded."""

    def __init__(self, url: str, timeout_s: float = 3.0, transport=None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._transport = transport
        self._loop = asyncio.new_event_loop()
        # a daemon thread: a query stuck in a peer's socket never holds up the exit
        self._thread = threading.Thread(target=self._loop.run_forever, name="gpuwatch-promql", daemon=True)
        self._thread.start()
        self._client: httpx.AsyncClient | None = None

    def _client_now(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.url, timeout=httpx.Timeout(self.timeout_s), transport=self._transport,
                headers={"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING},
                follow_redirects=False, trust_env=False)
        return self._client

    async def _query(self, promql: str, at: float | None) -> QueryResult:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        params["timeout"] = f"{max(0.1, self.timeout_s):g}s"
        start = time.perf_counter()
        try:
            # POST: long queries (one per metric family, all hosts) would overflow a URL
            async with self._client_now().stream("POST", "/api/v1/query", data=params) as r:
                content = await read_async(r, MAX_ANSWER_BYTES)
                code, ctype = r.status_code, r.headers.get("content-type", "?").split(";")[0]
        except BodyError as e:
            raise PromError(f"Prometheus at {self.url}: answer {e}") from None
        except httpx.TimeoutException:
            raise PromError(f"Prometheus at {self.url} did not answer within {self.timeout_s:g} s") from None
        except httpx.ConnectError as e:
            raise PromError(f"Prometheus at {self.url} is unreachable: {_reason(e)}") from None
        except httpx.HTTPError as e:
            raise PromError(f"Prometheus at {self.url} failed: {_reason(e)}") from None
        with gcpause.paused():  # a fleet's answer is megabytes of JSON: see gcpause
            try:
                data = json.loads(content)
            except (ValueError, RecursionError):
                raise PromError(f"{self.url} answered HTTP {code} with {clean_text(ctype, 60)}, not Prometheus's "
                                f"JSON API (is this the Prometheus server's URL?)") from None
            if code >= 400 and not (isinstance(data, dict) and data.get("status") == "error"):
                raise PromError(f"Prometheus at {self.url} answered HTTP {code}")
            out = parse_vector(data)
            del data  # before the collector is back: see gcpause.paused
        out.ms = (time.perf_counter() - start) * 1000
        out.bytes = len(content)
        return out

    async def _bounded(self, promql: str, at: float | None) -> QueryResult:
        try:
            return await asyncio.wait_for(self._query(promql, at), self.timeout_s)
        except asyncio.TimeoutError:
            raise PromError(f"Prometheus at {self.url} did not answer within {self.timeout_s:g} s") from None

    async def _targets(self) -> list[Target]:
        try:
            async with self._client_now().stream("GET", "/api/v1/targets", params={"state": "active"}) as r:
                content = await read_async(r, MAX_ANSWER_BYTES)
                code = r.status_code
        except BodyError as e:
            raise PromError(f"Prometheus at {self.url} did not list its targets: answer {e}") from None
        except httpx.HTTPError as e:
            raise PromError(f"Prometheus at {self.url} did not list its targets: {_reason(e)}") from None
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):
            raise PromError(f"Prometheus at {self.url} did not list its targets (HTTP {code})") from None
        return parse_targets(data)

    async def _bounded_targets(self) -> list[Target]:
        try:
            return await asyncio.wait_for(self._targets(), self.timeout_s)
        except asyncio.TimeoutError:
            raise PromError(f"Prometheus at {self.url} did not list its targets within {self.timeout_s:g} s") from None

    async def _many(self, queries: dict[str, str], at: float | None, with_targets: bool) -> list:
        jobs = [self._bounded(q, at) for q in queries.values()]
        if with_targets:
            jobs.append(self._bounded_targets())
        return await asyncio.gather(*jobs, return_exceptions=True)

    def targets(self) -> list[Target]:
        """The scrape targets and their health (``/api/v1/targets?state=active``)."""
        _, _, got = self.query_many_and_targets({}, with_targets=True)
        if got is None:
            raise PromError(f"Prometheus at {self.url} did not list its targets")
        return got

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        results, errors = self.query_many({"q": promql}, at)
        if errors:
            raise PromError(errors["q"])
        return results["q"]

    def query_many(self, queries: dict[str, str], at: float | None = None) -> tuple[dict[str, QueryResult],
                                                                                      dict[str, str]]:
        """Run several queries in parallel: (results by name, error sentence by name). Returns
        within about ``timeout_s`` whatever the server does."""
        results, errors, _ = self.query_many_and_targets(queries, at, with_targets=False)
        return results, errors

    def query_many_and_targets(self, queries: dict[str, str], at: float | None = None, with_targets: bool = True
                               ) -> tuple[dict[str, QueryResult], dict[str, str], list[Target] | None]:
        """The queries and the target list, all in parallel, within about ``timeout_s``. The
        targets are None when Prometheus did not list them (a federating front may not): that
        is no error of the refresh."""
        fut = asyncio.run_coroutine_threadsafe(self._many(queries, at, with_targets), self._loop)
        try:
            answers = fut.result(timeout=self.timeout_s + 1.0)
        except (cf.TimeoutError, RuntimeError):
            fut.cancel()
            why = f"Prometheus at {self.url} did not answer within {self.timeout_s:g} s"
            return {}, {name: why for name in queries}, None
        targets = None
        if with_targets:
            got = answers.pop()
            targets = got if isinstance(got, list) else None
        results: dict[str, QueryResult] = {}
        errors: dict[str, str] = {}
        for name, a in zip(queries, answers):
            if isinstance(a, QueryResult):
                results[name] = a
            elif isinstance(a, PromError):
                errors[name] = str(a)
            else:  # never a traceback on screen
                errors[name] = clean_message(f"{type(a).__name__}: {a}")
        return results, errors, targets

    def close(self) -> None:
        async def shut():
            if self._client is not None:
                await self._client.aclose()
        try:
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=1.0)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=1.0)
        if not self._thread.is_alive():
            self._loop.close()


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    low = text.lower()
    if "connection refused" in low or "errno 111" in low or connection_refused(e):
        return "connection refused"
    if "name or service not known" in low or "nodename nor servname" in low:
        return "unknown host name"
    return clean_text(text.split("\n")[0], 200)
