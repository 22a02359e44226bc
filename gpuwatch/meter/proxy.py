"""The metering proxy: aiohttp's low-level server on each LISTEN address, aiohttp's client to
each UPSTREAM, bytes forwarded as they arrive in both directions, counted on the way.

Why aiohttp: one maintained library gives both ends on one event loop with streaming bodies and
flow control (a slow reader pauses the other side's socket, so memory stays bounded whatever the
body size); ``bench/meter.py`` measures it against a direct connection (README, Performance).

HTTP rules (RFC 9110 §7.6.1): the hop-by-hop fields (``Connection`` and every field it names,
``Keep-Alive``, ``Proxy-Connection``, ``TE``, ``Transfer-Encoding``, ``Upgrade``) are not
forwarded; each hop frames the body itself (the same bytes, with the upstream's
``Content-Length`` when it sent one, chunked otherwise). ``Host`` names the upstream, as
nginx's default ``proxy_set_header Host $proxy_host`` does (Ollama refuses foreign Host
names on a loopback bind). Bodies are never decoded (``Content-Encoding`` passes as is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from . import names
from .metrics import MeterMetrics, Tally
from .parse import BodyReader, body_format, sniff_model
from .routes import Route, join_addr

HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade",
                        "trailer", "expect"))
CONNECT_TIMEOUT_S = 10.0
SNIFF_BYTES = 64 * 1024  # request body bytes searched for "model" (no parse, no copy kept)
log = logging.getLogger("gpuwatch.meter")


def _hop_fields(headers) -> set[str]:
    drop = set(HOP_BY_HOP)
    for value in headers.getall("Connection", ()):
        for opt in value.split(","):
            opt = opt.strip().lower()
            if opt:
                drop.add(opt)
    return drop


def forward_headers(headers, host: str | None = None) -> CIMultiDict:
    """A copy of ``headers`` without the hop-by-hop fields (and with ``Host`` replaced)."""
    drop = _hop_fields(headers)
    out = CIMultiDict()
    for k, v in headers.items():
        lk = k.lower()
        if lk in drop or (host is not None and lk == "host"):
            continue
        out.add(k, v)
    if host is not None:
        out["Host"] = host
    return out


def _reason(e: BaseException) -> str:
    """A few words on why the upstream could not be reached ("connection refused")."""
    if isinstance(e, asyncio.TimeoutError):
        return f"no connection within {CONNECT_TIMEOUT_S:g} s"
    cur: BaseException | None = getattr(e, "os_error", None) or e
    for _ in range(8):
        if cur is None:
            break
        if isinstance(cur, OSError) and cur.errno:
            return os.strerror(cur.errno).lower()
        cur = cur.__cause__ or cur.__context__
    text = str(e) or type(e).__name__
    return " ".join(text.split())[:160].lower()


class Meter:
    """All routes of one ``gpuwatch meter`` process."""

    def __init__(self, routes: list[Route], drain_s: float = 5.0) -> None:
        self.routes = routes
        self.drain_s = drain_s
        self.metrics = MeterMetrics({r.label: r.upstream for r in routes})
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._servers: list[asyncio.AbstractServer] = []
        self._web_servers: list[web.Server] = []
        self._session: aiohttp.ClientSession | None = None
        self._metrics_server: asyncio.AbstractServer | None = None
        self._metrics_web: web.Server | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self, metrics_addr: tuple[str, int] | None) -> None:
        loop = asyncio.get_running_loop()
        # no total or read timeout: a long generation may be silent for minutes (model load,
        # a long prompt) and then stream for many more; the connect step alone is bounded
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S)
        # no connection limit: the engine queues requests itself (OLLAMA_NUM_PARALLEL) and a
        # limit here would hide that queue from it; trust_env=False: never through an HTTP proxy
        self._session = aiohttp.ClientSession(
            timeout=timeout, auto_decompress=False, trust_env=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=60),
            cookie_jar=aiohttp.DummyCookieJar())
        for route in self.routes:
            ws = web.Server(self._handler_for(route), handler_cancellation=True, access_log=None,
                            keepalive_timeout=75.0, max_field_size=65536, max_line_size=65536)
            self._web_servers.append(ws)
            self._servers.append(await loop.create_server(ws, route.host, route.port, reuse_address=True))
        if metrics_addr is not None:
            self._metrics_web = web.Server(self._metrics_handler, access_log=None)
            self._metrics_server = await loop.create_server(self._metrics_web, metrics_addr[0], metrics_addr[1],
                                                            reuse_address=True)

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish for up to ``drain_s``, then close."""
        for s in self._servers:
            s.close()
        try:
            await asyncio.wait_for(self._idle.wait(), self.drain_s)
        except asyncio.TimeoutError:
            log.warning("gpuwatch meter: %d request(s) still running after %g s; closing them",
                        self.inflight, self.drain_s)
        for ws in self._web_servers:
            await ws.shutdown(0.5)
        if self._session is not None:
            await self._session.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
            await self._metrics_web.shutdown(0.5)

    # ---- metrics endpoint ------------------------------------------------------------------
    async def _metrics_handler(self, request: web.BaseRequest) -> web.Response:
        if request.path != "/metrics":
            return web.Response(status=404, text="gpuwatch meter: metrics are at /metrics\n")
        return web.Response(body=self.metrics.exposition(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    # ---- proxying -------------------------------------------------------------------------
    def _handler_for(self, route: Route):
        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            self.inflight += 1
            self._idle.clear()
            try:
                return await self._proxy(route, request)
            finally:
                self.inflight -= 1
                if self.inflight == 0:
                    self._idle.set()
        return handler

    async def _proxy(self, route: Route, request: web.BaseRequest) -> web.StreamResponse:
        start = time.perf_counter()
        rs = self.metrics.route(route.label)
        counted = request.method == "POST" and request.path in names.INFERENCE_PATHS
        state = {"sniff": b"", "bytes": 0}
        data = self._request_body(request, state, counted) if request.body_exists else None
        tally = Tally(self.metrics, route.label, start) if counted else None
        if counted:
            rs.running.inc()
        upstream = None
        code: int | str = "disconnect"
        disconnected = False
        try:
            try:
                upstream = await self._session.request(
                    request.method, route.upstream + request.rel_url.raw_path_qs,
                    headers=forward_headers(request.headers, route.upstream_host), data=data, allow_redirects=False)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
                rs.connect_errors.inc()
                code = 502
                if tally is not None and not state["sniff"] and request.body_exists:
                    with contextlib.suppress(Exception):  # the body was never sent: the model from its start
                        state["sniff"] = await asyncio.wait_for(request.content.read(SNIFF_BYTES), 1.0)
                return web.Response(status=502, text=f"gpuwatch meter: upstream {route.upstream} unreachable "
                                                     f"({_reason(e)})\n")
            code = upstream.status
            if tally is not None:
                tally.guess = sniff_model(state["sniff"])
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                          headers=forward_headers(upstream.headers))
            await response.prepare(request)
            reader = BodyReader(body_format(upstream.headers.get("Content-Type")), tally) if tally else None
            content = upstream.content
            sent = 0
            try:
                while True:
                    try:
                        chunk = await content.readany()
                    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                        # headers are out: the one way to say "cut short" is to close without
                        # ending the body, as the upstream did
                        rs.reset_errors.inc()
                        code = "reset"
                        if request.transport is not None:
                            request.transport.abort()
                        return response
                    if not chunk:
                        break
                    if reader is not None:
                        reader.feed(chunk)
                    sent += len(chunk)
                    await response.write(chunk)  # waits while the client's socket is full
            finally:
                rs.response_bytes.inc(sent)
                if reader is not None:
                    reader.close()
            await response.write_eof()
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            # the client went away (aiohttp cancels the handler, or a write fails): closing the
            # upstream connection cancels the request there (Ollama stops generating)
            disconnected = True
            code = "disconnect"
            raise
        finally:
            if upstream is not None:
                if disconnected:
                    upstream.close()
                else:
                    upstream.release()
            rs.request_bytes.inc(state["bytes"])
            if tally is not None:
                rs.running.dec()
                if tally.guess is None:
                    tally.guess = sniff_model(state["sniff"])
                tally.done(code, disconnected=disconnected)

    async def _request_body(self, request: web.BaseRequest, state: dict, counted: bool):
        """The client's body, chunk by chunk as it arrives (flow-controlled: never whole)."""
        if request.version >= aiohttp.HttpVersion11 and \
                request.headers.get("Expect", "").lower() == "100-continue":
            # the body is about to be forwarded: say so, as nginx does when it starts reading
            # a body (curl waits a second for this on uploads over 1 MiB)
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        async for chunk in request.content.iter_any():
            state["bytes"] += len(chunk)
            if counted and len(state["sniff"]) < SNIFF_BYTES:
                state["sniff"] += chunk[: SNIFF_BYTES - len(state["sniff"])]
            yield chunk


async def serve(routes: list[Route], metrics_addr: tuple[str, int] | None, drain_s: float,
                ready=None) -> int:
    """Run until SIGTERM/SIGINT, then drain. ``ready``: called once listening."""
    loop = asyncio.get_running_loop()
    meter = Meter(routes, drain_s=drain_s)
    try:
        await meter.start(metrics_addr)
    except OSError as e:
        await meter.stop()
        print(f"gpuwatch meter: cannot listen: {e.strerror or e}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for r in routes:
        print(f"gpuwatch meter: {r.listen} -> {r.upstream}", file=sys.stderr)
    if metrics_addr is not None:
        print(f"gpuwatch meter: metrics on http://{join_addr(metrics_addr)}/metrics", file=sys.stderr)
    sys.stderr.flush()
    if ready is not None:
        ready()
    await stop.wait()
    await meter.stop()
    return 0


def run(routes: list[Route], metrics_addr: tuple[str, int] | None, drain_s: float = 5.0) -> int:
    from prometheus_client import disable_created_metrics

    disable_created_metrics()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # never log request lines or bodies
    return asyncio.run(serve(routes, metrics_addr, drain_s))


__all__ = ["Meter", "forward_headers", "run", "serve"]
