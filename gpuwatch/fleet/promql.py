"""A small client of Prometheus's HTTP API: instant queries (``/api/v1/query``) in bounded time.

Every failure is a :class:`PromError` whose text is one sentence a status line can show: the
server is down, slow, not Prometheus, or refused the query (with Prometheus's own reason).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import time
from dataclasses import dataclass, field

import httpx


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


def parse_vector(data: dict) -> QueryResult:
    """The JSON document of an instant query -> samples. Raises PromError for an error answer
    or a result that is not a vector."""
    if not isinstance(data, dict):
        raise PromError("Prometheus answered something that is not a JSON object")
    if data.get("status") != "success":
        kind = data.get("errorType") or "error"
        raise PromError(f"Prometheus refused the query ({kind}): {data.get('error') or 'no reason given'}")
    body = data.get("data") or {}
    rtype = body.get("resultType")
    result = body.get("result") or []
    out = QueryResult()
    if rtype == "scalar":
        return out
    if rtype != "vector":
        raise PromError(f"Prometheus answered a {rtype!r} where an instant vector was expected")
    append = out.samples.append
    for item in result:
        metric = item.get("metric") or {}
        pair = item.get("value")
        if not pair or len(pair) != 2:
            continue
        try:
            v = float(pair[1])  # "NaN", "+Inf" parse too
            t = float(pair[0])
        except (TypeError, ValueError):
            continue
        if v != v:  # NaN: no value
            continue
        append(Sample(metric, v, t))
        out.eval_time = t
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
    for t in (data.get("data") or {}).get("activeTargets") or []:
        labels = t.get("labels") or {}
        out.append(Target(instance=str(labels.get("instance", "")), job=str(labels.get("job", "")),
                          health=str(t.get("health") or "unknown"), last_scrape=_rfc3339(t.get("lastScrape")),
                          last_error=str(t.get("lastError") or ""), interval_s=_duration(t.get("scrapeInterval"))))
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
    ``http://127.0.0.1:9090``). Thread-safe; queries of one refresh run in parallel."""

    def __init__(self, url: str, timeout_s: float = 3.0, transport=None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._client = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout_s), transport=transport,
                                    headers={"Accept": "application/json"}, follow_redirects=False)
        self._pool = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="gpuwatch-promql")

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        params["timeout"] = f"{max(0.1, self.timeout_s):g}s"
        start = time.perf_counter()
        try:
            # POST: long queries (one per metric family, all hosts) would overflow a URL
            r = self._client.post("/api/v1/query", data=params)
        except httpx.TimeoutException:
            raise PromError(f"Prometheus at {self.url} did not answer within {self.timeout_s:g} s") from None
        except httpx.ConnectError as e:
            raise PromError(f"Prometheus at {self.url} is unreachable: {_reason(e)}") from None
        except httpx.HTTPError as e:
            raise PromError(f"Prometheus at {self.url} failed: {_reason(e)}") from None
        content = r.content
        try:
            data = json.loads(content)
        except ValueError:
            ctype = r.headers.get("content-type", "?").split(";")[0]
            raise PromError(f"{self.url} answered HTTP {r.status_code} with {ctype}, not Prometheus's JSON API "
                            f"(is this the Prometheus server's URL?)") from None
        if r.status_code >= 400 and not (isinstance(data, dict) and data.get("status") == "error"):
            raise PromError(f"Prometheus at {self.url} answered HTTP {r.status_code}")
        out = parse_vector(data)
        out.ms = (time.perf_counter() - start) * 1000
        out.bytes = len(content)
        return out

    def targets(self) -> list[Target]:
        """The scrape targets and their health (``/api/v1/targets?state=active``)."""
        try:
            r = self._client.get("/api/v1/targets", params={"state": "active"})
            data = r.json()
        except httpx.HTTPError as e:
            raise PromError(f"Prometheus at {self.url} did not list its targets: {_reason(e)}") from None
        except ValueError:
            raise PromError(f"Prometheus at {self.url} did not list its targets (HTTP {r.status_code})") from None
        return parse_targets(data)

    def query_many(self, queries: dict[str, str], at: float | None = None) -> tuple[dict[str, QueryResult],
                                                                                      dict[str, str]]:
        """Run several queries in parallel: (results by name, error sentence by name)."""
        results, errors, _ = self.query_many_and_targets(queries, at, with_targets=False)
        return results, errors

    def query_many_and_targets(self, queries: dict[str, str], at: float | None = None, with_targets: bool = True
                               ) -> tuple[dict[str, QueryResult], dict[str, str], list[Target] | None]:
        """The queries and the target list, all in parallel. The targets are None when Prometheus
        did not list them (a federating front may not): that is no error of the refresh."""
        futures = {name: self._pool.submit(self.query, q, at) for name, q in queries.items()}
        tfut = self._pool.submit(self.targets) if with_targets else None
        results: dict[str, QueryResult] = {}
        errors: dict[str, str] = {}
        for name, fut in futures.items():
            try:
                results[name] = fut.result()
            except PromError as e:
                errors[name] = str(e)
            except Exception as e:  # never a traceback on screen
                errors[name] = f"{type(e).__name__}: {e}"
        targets = None
        if tfut is not None:
            try:
                targets = tfut.result()
            except Exception:
                targets = None
        return results, errors, targets

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    low = text.lower()
    if "connection refused" in low or "errno 111" in low:
        return "connection refused"
    if "name or service not known" in low or "nodename nor servname" in low:
        return "unknown host name"
    return text.splitlines()[0][:200]
