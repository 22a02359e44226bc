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

from ..collect.bounded import ACCEPT_ENCODING, BodyError, read_async
from ..collect.engines.base import connection_refused
from ..sanitize import clean_message, clean_text


class PromError(Exception):
    """Prometheus could not answer; ``str()`` is the one-line reason."""


@dataclass
class Sample:
    labels: dict[str, str]
    value: float
    t: float


@dataclass
class QueryResult:
    samples: list[Sample] = field(default_factory=list)
    eval_time: float | None = None
    ms: float = 0.0
    bytes: int = 0
    skipped: int = 0  # malformed result items left out


# the largest query answer read (decompressed): a fleet of 500 hosts x 8 GPUs is ~15 MB of
# JSON; the parsed samples take about 5x the text
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
    for item in result:
        if not isinstance(item, dict):
            out.skipped += 1
            continue
        metric = item.get("metric") or {}
        pair = item.get("value")
        if not isinstance(metric, dict) or not isinstance(pair, list) or len(pair) != 2:
            out.skipped += 1
            continue
        if not all(isinstance(v, str) for v in metric.values()):
            metric = {k: v for k, v in metric.items() if isinstance(v, str)}
        try:
            v = float(pair[1])  # "NaN", "+Inf" parse too: the sanitiser makes them bad readings
            t = float(pair[0])
        except (TypeError, ValueError, OverflowError):
            out.skipped += 1
            continue
        if v != v:  # NaN: no value
            continue
        append(Sample(metric, v, t))
        if math.isfinite(t):
            out.eval_time = t
    return out


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
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):
            raise PromError(f"{self.url} answered HTTP {code} with {clean_text(ctype, 60)}, not Prometheus's JSON "
                            f"API (is this the Prometheus server's URL?)") from None
        if code >= 400 and not (isinstance(data, dict) and data.get("status") == "error"):
            raise PromError(f"Prometheus at {self.url} answered HTTP {code}")
        out = parse_vector(data)
        out.ms = (time.perf_counter() - start) * 1000
        out.bytes = len(content)
        return out

    async def _bounded(self, promql: str, at: float | None) -> QueryResult:
        try:
            return await asyncio.wait_for(self._query(promql, at), self.timeout_s)
        except asyncio.TimeoutError:
            raise PromError(f"Prometheus at {self.url} did not answer within {self.timeout_s:g} s") from None

    async def _many(self, queries: dict[str, str], at: float | None) -> list:
        return await asyncio.gather(*(self._bounded(q, at) for q in queries.values()), return_exceptions=True)

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        results, errors = self.query_many({"q": promql}, at)
        if errors:
            raise PromError(errors["q"])
        return results["q"]

    def query_many(self, queries: dict[str, str], at: float | None = None) -> tuple[dict[str, QueryResult],
                                                                                      dict[str, str]]:
        """Run several queries in parallel: (results by name, error sentence by name). Returns
        within about ``timeout_s`` whatever the server does."""
        fut = asyncio.run_coroutine_threadsafe(self._many(queries, at), self._loop)
        try:
            answers = fut.result(timeout=self.timeout_s + 1.0)
        except (cf.TimeoutError, RuntimeError):
            fut.cancel()
            why = f"Prometheus at {self.url} did not answer within {self.timeout_s:g} s"
            return {}, {name: why for name in queries}
        results: dict[str, QueryResult] = {}
        errors: dict[str, str] = {}
        for name, a in zip(queries, answers):
            if isinstance(a, QueryResult):
                results[name] = a
            elif isinstance(a, PromError):
                errors[name] = str(a)
            else:  # never a traceback on screen
                errors[name] = clean_message(f"{type(a).__name__}: {a}")
        return results, errors

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
