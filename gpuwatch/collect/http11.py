"""A small keep-alive HTTP/1.1 client for polling plain-HTTP inference servers every tick.

Why not httpx here: gpuwatch polls each server once a second, forever, and httpx's per-request
machinery (request and URL models, auth and redirect layers, cookie extraction, httpcore's pool
bookkeeping, anyio streams) costs about 1 ms of CPU per request on the benchmark machine, eight
times what the request itself needs. Measured against one server's /metrics (7.9 kB), CPU per
request, keep-alive: ``Fetcher`` on an httpx client 1.32 ms; ``AsyncClient.get`` 1.13 ms; a
pre-built request through ``AsyncClient.send`` 1.02 ms; httpcore's pool alone 0.70 ms; asyncio
streams 0.13 ms. With four servers that was most of ``gpuwatch serve``'s CPU.

This client speaks just what polling needs, over asyncio streams, and looks like an
``httpx.AsyncClient`` to :class:`~gpuwatch.collect.engines.base.Fetcher`: ``stream()`` yields a
response with ``status_code``, ``headers`` and ``aiter_raw()``, so the body cap and gzip/deflate
decoding stay :func:`gpuwatch.collect.bounded.read_async`'s, and failures raise httpx's exception
classes, which the Fetcher already turns into a status and a reason. The time bound is the
caller's (``asyncio.wait_for`` around a whole poll), plus a connect timeout here. Framing:
Content-Length, chunked, or read to close; a response head larger than MAX_HEAD_BYTES is a
protocol error. Only ``http://`` URLs: TLS targets keep the httpx client (instances.py).

Connections are kept per server (one client per server): up to ``max_idle`` idle ones for the
next tick. A connection is reused only after its response was read to the end; a request on a
reused connection that the server had closed meanwhile (no byte of an answer) is sent once more
on a new connection, as browsers and httpcore do for idempotent requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx

MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one response
CHUNK_BYTES = 64 * 1024
USER_AGENT = "gpuwatch"


class Headers:
    """Response headers, looked up case-insensitively (the last value of a repeated header)."""

    def __init__(self, items: dict[str, str]) -> None:
        self._d = items

    def get(self, key: str, default=None):
        return self._d.get(key.lower(), default)

    def __contains__(self, key: str) -> bool:
        return key.lower() in self._d


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof() and not self.reader._buffer

    def close(self) -> None:
        try:
            self.writer.transport.abort()
        except Exception:
            pass


class Response:
    """One response whose body is read with ``aiter_raw()`` (raw bytes: not decompressed)."""

    def __init__(self, status_code: int, headers: Headers, conn: _Conn, framing: str, length: int) -> None:
        self.status_code = status_code
        self.headers = headers
        self._conn = conn
        self._framing = framing  # "none" | "length" | "chunked" | "close"
        self._left = length
        self.complete = framing == "none"

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        reader = self._conn.reader
        try:
            if self._framing == "length":
                while self._left > 0:
                    data = await reader.read(min(self._left, CHUNK_BYTES))
                    if not data:
                        raise httpx.RemoteProtocolError("connection closed before the body's end")
                    self._left -= len(data)
                    yield data
            elif self._framing == "chunked":
                while True:
                    line = await reader.readuntil(b"\r\n")
                    try:
                        size = int(line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        raise httpx.RemoteProtocolError("bad chunk size") from None
                    if size < 0:
                        raise httpx.RemoteProtocolError("bad chunk size")
                    if size == 0:
                        while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                            pass
                        break
                    while size > 0:
                        data = await reader.read(min(size, CHUNK_BYTES))
                        if not data:
                            raise httpx.RemoteProtocolError("connection closed inside a chunk")
                        size -= len(data)
                        yield data
                    if await reader.readexactly(2) != b"\r\n":
                        raise httpx.RemoteProtocolError("bad chunk end")
            elif self._framing == "close":
                while data := await reader.read(CHUNK_BYTES):
                    yield data
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as e:
            raise httpx.RemoteProtocolError(f"body cut short ({type(e).__name__})") from None
        self.complete = True


def _head_bytes(method: str, target: str, host_header: str, headers: dict[str, str], body: bytes | None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}", f"User-Agent: {USER_AGENT}", "Accept: */*"]
    for k, v in headers.items():
        if any(c in k or c in v for c in "\r\n\0") or ":" in k:
            raise httpx.LocalProtocolError(f"bad header {k[:40]!r}")
        lines.append(f"{k}: {v}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise httpx.LocalProtocolError("a header is not Latin-1") from None


def _parse_head(head: bytes) -> tuple[int, bool, dict[str, str]]:
    """(status, HTTP/1.1?, lower-cased headers) of a response head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise httpx.RemoteProtocolError("not an HTTP/1 response")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        k, sep, v = line.partition(":")
        if not sep or not k or k != k.strip():
            raise httpx.RemoteProtocolError("bad header line")
        headers[k.lower()] = v.strip()
    return int(parts[1]), parts[0] == "HTTP/1.1", headers


class KeepAliveClient:
    """Keep-alive HTTP/1.1 to one ``http://`` server (see the module docstring). Not thread-safe:
    one event loop uses it."""

    def __init__(self, connect_timeout_s: float, max_idle: int = 4) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.max_idle = max_idle
        self._idle: list[_Conn] = []
        self._where: dict[str, tuple[str, int, str, str]] = {}  # url -> (host, port, Host header, target)
        self.connections_made = 0  # for tests: how many TCP connections this client opened

    def _split(self, url: str) -> tuple[str, int, str, str]:
        got = self._where.get(url)
        if got is None:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                raise httpx.UnsupportedProtocol(f"not an http:// URL: {url[:60]}")
            try:
                port = parts.port or 80
            except ValueError:
                raise httpx.InvalidURL("bad port") from None
            host_header = parts.netloc.rpartition("@")[2]
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            got = (parts.hostname, port, host_header, target)
            if len(self._where) < 256:
                self._where[url] = got
        return got

    async def _connect(self, host: str, port: int) -> _Conn:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=MAX_HEAD_BYTES), self.connect_timeout_s)
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout("connect timed out") from None
        except OSError as e:
            raise httpx.ConnectError(str(e) or type(e).__name__) from e
        self.connections_made += 1
        return _Conn(reader, writer)

    async def _exchange(self, conn: _Conn, head: bytes, body: bytes | None, method: str) -> Response:
        conn.writer.write(head + body if body else head)
        await conn.writer.drain()
        while True:
            raw = await conn.reader.readuntil(b"\r\n\r\n")
            status, http11, headers = _parse_head(raw)
            if 100 <= status < 200 and status != 101:
                continue  # an interim answer (100 Continue): the real one follows
            break
        te = headers.get("transfer-encoding", "").lower()
        keep = http11 and "close" not in headers.get("connection", "").lower()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            framing, length = "none", 0
        elif te:
            if te.split(",")[-1].strip() != "chunked":
                raise httpx.RemoteProtocolError(f"unsupported Transfer-Encoding {te[:40]!r}")
            framing, length = "chunked", 0
        elif "content-length" in headers:
            cl = headers["content-length"]
            if not cl.isdigit():
                raise httpx.RemoteProtocolError("bad Content-Length")
            framing, length = "length", int(cl)
            if length == 0:
                framing = "none"
        else:
            framing, length, keep = "close", 0, False
        r = Response(status, Headers(headers), conn, framing, length)
        r.keep_alive = keep
        return r

    @contextlib.asynccontextmanager
    async def stream(self, method: str, url: str, *, headers: dict[str, str] | None = None, json: object = None):
        host, port, host_header, target = self._split(url)
        body = None if json is None else _json_bytes(json)
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        head = _head_bytes(method, target, host_header, hdrs, body)
        conn = None
        while self._idle:
            c = self._idle.pop()
            if c.usable():
                conn = c
                break
            c.close()
        reused = conn is not None
        if conn is None:
            conn = await self._connect(host, port)
        r = None
        try:
            try:
                r = await self._exchange(conn, head, body, method)
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                # a kept-alive connection the server had closed: once more on a new one
                partial = getattr(e, "partial", b"")
                if not (reused and not partial and method in ("GET", "HEAD")):
                    raise
                conn.close()
                conn = await self._connect(host, port)
                r = await self._exchange(conn, head, body, method)
            yield r
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise httpx.RemoteProtocolError(f"connection lost ({type(e).__name__})") from None
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError("response head too large") from None
        finally:
            if r is not None and r.complete and r.keep_alive and len(self._idle) < self.max_idle and conn.usable():
                self._idle.append(conn)
            else:
                conn.close()

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
