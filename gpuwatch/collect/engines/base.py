"""What every engine module shares: bounded HTTP reads, Prometheus parsing, the reading an
engine returns, and histogram quantiles.

An engine module turns one server's endpoints into a :class:`Reading` (gauges, cumulative
counters, cumulative histograms, models, version). Rates and quantiles over the poll
interval are computed from two readings by the collector (``gpuwatch.collect.instances``),
the same way for every engine.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ...model import ModelInfo
from ..bounded import ACCEPT_ENCODING, BodyError, read_async
from .names import LOADING_ANSWERS

MAX_BODY_BYTES = 4 * 1024 * 1024
ERROR_EXCERPT_CHARS = 80


class FetchError(Exception):
    """A server could not be read. ``status`` is "down" (unreachable, no answer), "error"
    (it answered, but not with what we need) or "loading" (it says it is still loading its
    model: ``names.LOADING_ANSWERS``). The message is shown to the user; ``code`` is the HTTP
    status when there was one."""

    def __init__(self, message: str, status: str = "error", path: str | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.path = path
        self.code = code


def _excerpt(body: bytes) -> str:
    """A short printable excerpt of an error body (for 'HTTP 500 from /metrics: ...')."""
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            for key in ("error", "detail", "message"):
                v = data.get(key)
                if isinstance(v, dict):
                    v = v.get("message")
                if isinstance(v, str):
                    body = v.encode()
                    break
    except (ValueError, UnicodeDecodeError):
        pass
    text = body.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    if len(text) > ERROR_EXCERPT_CHARS:
        text = text[: ERROR_EXCERPT_CHARS - 1] + "…"
    return text


# what a server changes rarely (its version, the loaded model's properties) is asked for at most
# this often, not on every tick; a failed poll forgets it (the server may have been restarted)
RARELY_S = 15.0


class Fetcher:
    """GETs/POSTs relative to one server's base URL with a cap on the body size.

    Bodies are streamed and reading stops at ``max_body`` bytes, so an endless or huge body
    costs at most that much memory; the time bound is the caller's (``asyncio.wait_for``).
    """

    def __init__(self, client: httpx.AsyncClient, base_url: str, headers: dict[str, str] | None = None,
                 max_body: int = MAX_BODY_BYTES, api_key_env: str | None = None, clock=time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.headers = headers or {}
        self.max_body = max_body
        self.api_key_env = api_key_env

    async def rarely(self, cache: dict[str, Any], key: str, fetch, ttl: float = RARELY_S):
        """``await fetch()`` at most once per ``ttl`` seconds for this server (``cache`` is
        the server's), its answer kept in between. An exception is not kept: the next tick
        asks again."""
        now = self.clock()
        hit = cache.get(key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        value = await fetch()
        cache[key] = (now, value)
        return value

    def _auth_message(self, code: int, path: str) -> str:
        if "Authorization" in self.headers:
            return f"API key rejected (HTTP {code} from {path})"
        if self.api_key_env:
            return f"needs API key (HTTP {code} from {path}; env var {self.api_key_env} is not set)"
        return f"needs API key (HTTP {code} from {path})"

    async def request(self, method: str, path: str, *, optional: bool = False, json_body: Any = None) -> bytes | None:
        """The body, or None when ``optional`` and the endpoint does not exist (404/405/501)."""
        url = self.base_url + path
        headers = {"Accept-Encoding": ACCEPT_ENCODING, **self.headers}
        try:
            async with self.client.stream(method, url, headers=headers, json=json_body) as r:
                code = r.status_code
                if code in (401, 403):
                    raise FetchError(self._auth_message(code, path), path=path)
                if optional and code in (404, 405, 501):
                    return None
                if code >= 400:
                    body = await self._read(r, path, limit=4096, truncate=True)
                    excerpt = _excerpt(body)
                    if _is_loading(code, excerpt):
                        raise FetchError(f"loading model ({path} answers HTTP {code}: {excerpt})", status="loading",
                                         path=path, code=code)
                    raise FetchError(f"HTTP {code} from {path}" + (f": {excerpt}" if excerpt else ""), path=path,
                                     code=code)
                declared = r.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.max_body:
                    raise FetchError(f"response from {path} larger than {self.max_body // 1048576} MiB", path=path)
                return await self._read(r, path, limit=self.max_body)
        except FetchError:
            raise
        except httpx.ConnectTimeout:
            raise FetchError("no answer (connect timed out)", status="down", path=path) from None
        except httpx.ConnectError as e:
            reason = "connection refused" if connection_refused(e) else "unreachable"
            raise FetchError(reason, status="down", path=path) from None
        except httpx.TimeoutException:
            raise FetchError(f"no answer from {path} (timed out)", status="down", path=path) from None
        except (httpx.RemoteProtocolError, httpx.DecodingError):
            raise FetchError(f"bad HTTP response from {path}", path=path) from None
        except httpx.HTTPError as e:
            raise FetchError(f"{type(e).__name__} on {path}", status="down", path=path) from None

    async def _read(self, r: httpx.Response, path: str, limit: int, truncate: bool = False) -> bytes:
        # decoded here, not by httpx: the cap holds for decompressed bytes (gzip bombs)
        try:
            return await read_async(r, limit, truncate=truncate)
        except BodyError as e:
            raise FetchError(f"response from {path} {e}", path=path) from None

    async def get(self, path: str, optional: bool = False) -> bytes | None:
        return await self.request("GET", path, optional=optional)

    async def get_json(self, path: str, optional: bool = False) -> Any:
        body = await self.get(path, optional=optional)
        if body is None:
            return None
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise FetchError(f"not JSON from {path}", path=path) from None

    async def json_field(self, path: str, key: str) -> str | None:
        """One field of a JSON endpoint a server may lack or fail on (a version, a model path):
        its text, or None."""
        try:
            data = await self.get_json(path, optional=True)
        except FetchError:
            return None
        v = data.get(key) if isinstance(data, dict) else None
        return str(v) if v is not None else None

    async def get_text(self, path: str, optional: bool = False) -> str | None:
        body = await self.get(path, optional=optional)
        if body is None:
            return None
        return body.decode("utf-8", "replace")


def _is_loading(code: int, excerpt: str) -> bool:
    return any(code == c and excerpt.startswith(text) for c, text in LOADING_ANSWERS)


def connection_refused(e: BaseException) -> bool:
    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 8:
        if isinstance(cur, ConnectionRefusedError) or "refused" in str(cur).lower():
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False


# ---- Prometheus --------------------------------------------------------------------------

@dataclass
class Histogram:
    """Cumulative bucket counts, sorted by upper bound (the last one is +Inf)."""

    buckets: list[tuple[float, float]]

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0

    def minus(self, older: Histogram) -> Histogram | None:
        """Observations since ``older``; None when the two do not line up or a bucket went
        down (the server restarted)."""
        if [le for le, _ in older.buckets] != [le for le, _ in self.buckets]:
            return None
        out = []
        for (le, c), (_, c0) in zip(self.buckets, older.buckets):
            if c < c0:
                return None
            out.append((le, c - c0))
        return Histogram(out)

    def quantile(self, q: float) -> float | None:
        """Prometheus ``histogram_quantile``: linear interpolation inside the bucket that holds
        the q-th observation; the highest finite bound when it falls in +Inf."""
        if not self.buckets or self.count <= 0:
            return None
        rank = q * self.count
        prev_le, prev_c = 0.0, 0.0
        for le, c in self.buckets:
            if c >= rank and c > prev_c:
                if math.isinf(le):
                    return prev_le
                return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
            prev_le, prev_c = (le if not math.isinf(le) else prev_le), c
        return prev_le


# the most samples of the wanted series one /metrics page may carry: a real vLLM page has
# ~1000 lines in all (a few hundred wanted); 30,000 series is a misbehaving or hostile server.
# prometheus_client parses ~25k lines/s, so this also bounds the parse to well under a second
MAX_WANTED_SAMPLES = 5000


def _ident(name: str, labels: dict[str, str]) -> tuple:
    """One series' identity: its name and its labels in order (a series given twice is one)."""
    return (name, *sorted(labels.items())) if labels else (name,)


_WANTED_LINES: dict[frozenset, re.Pattern] = {}
_INDENTED = re.compile(r"\n[^\S\n]")  # a line (after the first) that starts with a blank


def _wanted_lines(wanted) -> re.Pattern:
    """A pattern that finds, in a page with a newline put before it, the lines of the wanted
    series: (name, the rest of the line). The names go in as a trie (``vllm:`` once, then each
    branch), so a line of another series is left after a few characters, in C: on a 617-line
    vLLM-style page (the derived vLLM series plus 25 histograms gpuwatch does not read, as
    vLLM's request-parameter histograms sit among the ones it does), 6 wanted lines were found in
    0.13 ms against 0.81 ms for splitting every line in Python. Made once per set of names."""
    key = wanted if isinstance(wanted, frozenset) else frozenset(wanted)
    got = _WANTED_LINES.get(key)
    if got is None:
        if len(_WANTED_LINES) > 64:
            _WANTED_LINES.clear()
        got = _WANTED_LINES[key] = re.compile(r"\n(" + _trie(key) + r")(?=[{\s]|$)([^\n]*)")
    return got


def _trie(words) -> str:
    """A regular expression matching exactly ``words``, their common starts written once."""
    root: dict = {}
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        alts = [re.escape(ch) + build(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return "(?:" + body + ")?" if "" in node else body

    return build(root) if words else "(?!)"


class PromScrape:
    """Samples of one /metrics body, looked up by exposition name."""

    def __init__(self, text: str, path: str = "/metrics", wanted: set[str] | None = None,
                 series: dict[str, tuple[str, dict[str, str], tuple]] | None = None) -> None:
        """``wanted``: sample names to keep (None: all). Lines of other series are dropped
        before parsing, by their leading name only: a real vLLM body has ~1000 lines and
        prometheus_client parses ~25k lines/s, so this keeps the per-tick cost small. More
        than :data:`MAX_WANTED_SAMPLES` wanted samples is an error, not a parse.

        ``series``: a dict kept between scrapes of one server (with ``wanted``). A series seen
        in the previous scrape -- same name and labels, the text up to its closing brace -- keeps
        the name and labels prometheus_client parsed then, and only its value is read (with
        ``float``); new series go through the parser. Label parsing is most of the parser's
        time, and a server's series stay the same from one second to the next.

        Lines are split on ``\\n`` only, as the exposition format defines them: label values
        may hold U+2028, U+0085, ``\\r``, ``\\x1c``... (``str.splitlines`` breaks on those).
        A series given twice (same name and labels) counts once: the last value wins.

        The wanted lines are found by one regular expression over the page
        (:func:`_wanted_lines`) before any work per line: most of a real page is series gpuwatch
        does not read (vLLM's other histograms, the process metrics), and splitting every line
        for its name was most of a scrape."""
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        self.names: set[str] = set()  # names of the wanted samples (all, without ``wanted``)
        self._text = text
        self._seen: dict[tuple, int] = {}
        if wanted is None:
            self._parse(text, path)
            return
        keep = []
        if text[:1].isspace() or _INDENTED.search(text):
            # lines with leading blanks (rare): one at a time, each stripped first
            for line in text.split("\n"):
                line = line.strip()
                if not line or line[0] == "#":
                    continue  # HELP/TYPE: without them samples parse as untyped, names and labels intact
                name = line.split("{", 1)[0].split(None, 1)[0] if line[0] != "{" else ""
                if name in wanted:
                    self.names.add(name)
                    keep.append(line)
        else:
            for name, rest in _wanted_lines(wanted).findall("\n" + text):
                self.names.add(name)
                keep.append((name + rest).strip())
        if len(keep) > MAX_WANTED_SAMPLES:
            raise FetchError(f"too many series in {path} ({len(keep):,} samples of the ones gpuwatch reads; "
                             f"at most {MAX_WANTED_SAMPLES:,})", path=path)
        if series is None:
            self._parse("\n".join(keep) + "\n", path)
            return
        fresh: dict[str, tuple[str, dict[str, str]]] = {}
        new: list[tuple[str, str]] = []
        for line in keep:
            close = line.rfind("}")
            if close >= 0:
                key, rest = line[:close + 1], line[close + 1:]
            else:
                key, _, rest = line.partition(" ")
            known = series.get(key)
            parts = rest.split()
            if known is not None and 1 <= len(parts) <= 2:
                try:
                    value = float(parts[0])
                except ValueError:
                    new.append((key, line))  # the parser says what is wrong with it
                    continue
                self._add(known[0], known[1], value, known[2])
                fresh[key] = known
            else:
                new.append((key, line))
        if new:
            got = self._parse("\n".join(line for _, line in new) + "\n", path)
            if len(got) == len(new):  # one sample per line, in order: remember their labels
                for (key, _), s in zip(new, got):
                    fresh[key] = (s.name, s.labels, _ident(s.name, s.labels))
        series.clear()
        series.update(fresh)

    def _add(self, name: str, labels: dict[str, str], value: float, ident: tuple | None = None) -> None:
        if ident is None:
            ident = _ident(name, labels)
        got = self.samples.setdefault(name, [])
        at = self._seen.get(ident)
        if at is not None:  # the same series twice in one page: one series, the last value
            got[at] = (labels, value)
            return
        self._seen[ident] = len(got)
        got.append((labels, value))

    def _parse(self, text: str, path: str) -> list:
        out = []
        try:
            for fam in text_string_to_metric_families(text):
                for s in fam.samples:
                    self._add(s.name, s.labels, float(s.value))
                    self.names.add(s.name)
                    out.append(s)
        except Exception as e:  # the parser raises ValueError, TypeError, IndexError... on junk
            raise FetchError(f"unparseable Prometheus text from {path} ({type(e).__name__})", path=path) from None
        return out

    def has_prefix(self, prefix: str) -> bool:
        """Does any sample on the page (wanted or not) have a name starting with ``prefix``?"""
        if any(name.startswith(prefix) for name in self.names):
            return True
        text = self._text
        if prefix not in text:
            return False
        if text.startswith(prefix) or ("\n" + prefix) in text:
            return True
        return any(line.strip().startswith(prefix) for line in text.split("\n"))  # indented lines

    def _pick(self, candidates: tuple[str, ...], suffix: str = "") -> list[tuple[dict[str, str], float]] | None:
        """Samples of the first candidate present. A candidate may carry a label selector,
        ``name{mode="decode"}``: only samples with those label values count."""
        for cand in candidates:
            name, want = split_selector(cand)
            got = self.samples.get(name + suffix)
            if got and want:
                got = [(labels, v) for labels, v in got if all(labels.get(k) == x for k, x in want.items())]
            if got:
                return got
        return None

    def _numbers(self, candidates: tuple[str, ...]) -> list[float]:
        return [v for _, v in self._pick(candidates) or () if not math.isnan(v)]

    def sum(self, candidates: tuple[str, ...]) -> float | None:
        values = self._numbers(candidates)
        return sum(values) if values else None

    def mean(self, candidates: tuple[str, ...]) -> float | None:
        values = self._numbers(candidates)
        return sum(values) / len(values) if values else None

    def max(self, candidates: tuple[str, ...]) -> float | None:
        values = self._numbers(candidates)
        return max(values) if values else None

    def histogram(self, candidates: tuple[str, ...]) -> Histogram | None:
        got = self._pick(candidates, "_bucket")
        if got is None:
            return None
        by_le: dict[float, float] = {}
        for labels, v in got:
            try:
                le = float(labels.get("le", "nan"))
            except ValueError:
                continue
            if math.isnan(le) or math.isnan(v):
                continue
            by_le[le] = by_le.get(le, 0.0) + v
        if not by_le:
            return None
        return Histogram(sorted(by_le.items()))

    def label_values(self, candidates: tuple[str, ...], label: str) -> list[str]:
        seen: list[str] = []
        for cand in candidates:
            for labels, _ in self.samples.get(split_selector(cand)[0], ()):
                v = labels.get(label)
                if v and v not in seen:
                    seen.append(v)
        return seen


def split_selector(candidate: str) -> tuple[str, dict[str, str]]:
    """``'name{a="x",b="y"}'`` -> ``('name', {'a': 'x', 'b': 'y'})``; a bare name has no selector."""
    name, brace, rest = candidate.partition("{")
    if not brace:
        return candidate, {}
    want = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return name, want


# a page up to this long is parsed on the event loop itself: a worker thread's hand-off cost more
# than the parse (bench box: vLLM 7.8 kB parsed in 0.32 ms, 0.52 ms through a thread; llama.cpp
# 2.4 kB 0.05 against 0.20 ms). A 262 kB vLLM-style page (3,000 lines, 6 of them read) took
# 0.62 ms on the loop: nothing a neighbour's poll would notice; only a bigger page goes to a thread.
INLINE_PARSE_CHARS = 256 * 1024


async def scrape_off_loop(text: str, **kw) -> PromScrape:
    """:class:`PromScrape` parsed on a worker thread when the page is big (it must not hold up
    the other servers' polls, which share one event loop), else right here."""
    if len(text) <= INLINE_PARSE_CHARS:
        return PromScrape(text, **kw)
    return await asyncio.to_thread(PromScrape, text, **kw)


# ---- what an engine returns ----------------------------------------------------------------

@dataclass
class Reading:
    """One poll of one server: instantaneous values plus cumulative counters/histograms."""

    version: str | None = None
    models: list[ModelInfo] = field(default_factory=list)
    # requests_running, requests_waiting, kv_cache_usage_pct, prefix_cache_hit_pct, slots_busy, slots_total
    gauges: dict[str, float | None] = field(default_factory=dict)
    # generation_tokens, prompt_tokens, preemptions, prefix_cache_hits, prefix_cache_queries
    counters: dict[str, float] = field(default_factory=dict)
    # ttft, itl
    histograms: dict[str, Histogram] = field(default_factory=dict)
    # None: serving. "loading" (weights being loaded, no model ready yet) or "sleeping" (vLLM
    # sleep mode: weights offloaded or discarded; llama.cpp --sleep-idle-seconds: model unloaded),
    # with a short reason in ``state_detail``
    state: str | None = None
    state_detail: str | None = None
    # servers this one fronts (llama-swap's upstream llama-servers): (name, base URL, state)
    upstreams: list[tuple[str, str, str]] = field(default_factory=list)


class Engine:
    """One inference engine. Subclasses fill ``kind`` and ``poll``; ``cache`` is a per-server
    dict kept between polls for what rarely changes (version, model properties: see
    ``Fetcher.rarely``)."""

    kind: str = "unknown"

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:  # pragma: no cover - interface
        raise NotImplementedError

    def parallelism(self, argv: list[str]) -> tuple[str, int | None]:
        """(hint, group size) from the server's command line: tensor | pipeline | single | unknown."""
        return "unknown", None

    async def scrape(self, f: Fetcher, cache: dict[str, Any], missing_hint: str = "") -> tuple[PromScrape, Reading]:
        """``/metrics`` parsed for this engine's table (``kind``, ``table``, ``wanted``); a page
        without the engine's prefix is an error (another server on the port, metrics disabled)."""
        from . import names

        text = await f.get_text("/metrics")
        scrape = await scrape_off_loop(text or "", wanted=self.wanted, series=cache.setdefault("series", {}))
        prefix = names.METRIC_PREFIX[self.kind]
        if not scrape.has_prefix(prefix):
            raise FetchError(f"no {prefix} series in /metrics{missing_hint}", path="/metrics")
        return scrape, prometheus_reading(scrape, self.table)


def flag_value(argv: list[str], flags: tuple[str, ...]) -> str | None:
    """Value of the last occurrence of any of ``flags`` (``--flag V`` or ``--flag=V``)."""
    value = None
    for i, arg in enumerate(argv):
        for flag in flags:
            if arg == flag and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(flag + "="):
                value = arg[len(flag) + 1:]
    return value


def int_flag(argv: list[str], flags: tuple[str, ...]) -> int | None:
    v = flag_value(argv, flags)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def wanted_names(table: dict[str, tuple[str, ...]]) -> set[str]:
    """Every sample name an engine's table may read (histograms by their ``_bucket`` series)."""
    out: set[str] = set()
    for candidates in table.values():
        for cand in candidates:
            name = split_selector(cand)[0]
            out.update((name, name + "_bucket"))
    return out


def prometheus_reading(scrape: PromScrape, table: dict[str, tuple[str, ...]]) -> Reading:
    """The parts of a Reading every Prometheus engine reads the same way from its table."""
    r = Reading()
    for key in ("requests_running", "requests_waiting", "generation_rate"):
        if key in table:
            r.gauges[key] = scrape.sum(table[key])
    if "kv_cache_fraction" in table:
        frac = scrape.max(table["kv_cache_fraction"])
        r.gauges["kv_cache_usage_pct"] = None if frac is None else 100.0 * frac
    if "prefix_cache_hit_fraction" in table:
        frac = scrape.max(table["prefix_cache_hit_fraction"])
        r.gauges["prefix_cache_hit_pct"] = None if frac is None else 100.0 * frac
    for key in ("generation_tokens", "generation_tokens_iter", "prompt_tokens", "preemptions", "prefix_cache_hits",
                "prefix_cache_queries", "requests"):
        if key in table:
            v = scrape.sum(table[key])
            if v is not None:
                r.counters[key] = v
    for key in ("flops_per_gpu", "read_bytes_per_gpu"):
        # per GPU already, one label set per engine / rank: their mean, not their sum
        if key in table:
            v = scrape.mean(table[key])
            if v is not None:
                r.counters[key] = v
    for key in ("ttft", "itl"):
        if key in table:
            h = scrape.histogram(table[key])
            if h is not None:
                r.histograms[key] = h
    return r
