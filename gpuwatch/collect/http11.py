"""The keep-alive HTTP client that polls plain-HTTP inference servers every tick: aiohttp's.

Why not httpx here: gpuwatch polls each server once a second, forever, and httpx's per-request
machinery (request and URL models, auth and redirect layers, cookie extraction, httpcore's pool
bookkeeping, anyio streams) costs about 1 ms of CPU per request on the benchmark machine, several
times what the request itself needs. Measured against one server's /metrics (7.9 kB), CPU per
request, keep-alive: ``Fetcher`` on an httpx client 1.32 ms; ``AsyncClient.get`` 1.13 ms; a
pre-built request through ``AsyncClient.send`` 1.02 ms; httpcore's pool alone 0.70 ms. aiohttp's
client (a compiled response parser) costs a quarter of httpx's: 0.36 against 1.62 ms in the same
run (``python bench/http_clients.py``, loaded 2-core VM). With four servers httpx was most of
``gpuwatch serve``'s CPU. aiohttp is already gpuwatch's HTTP stack for ``gpuwatch meter``: no
new dependency, and no HTTP code of gpuwatch's own.

:class:`KeepAliveClient` looks like an ``httpx.AsyncClient`` to
:class:`~gpuwatch.collect.engines.base.Fetcher`: ``stream()`` yields a response with
``status_code``, ``headers`` and ``aiter_raw()`` (bytes as sent: aiohttp's decompression is off,
so the body cap and gzip/deflate decoding stay :func:`gpuwatch.collect.bounded.read_async`'s),
and failures raise httpx's exception classes, which the Fetcher already turns into a status and a
reason. The time bound is the caller's (``asyncio.wait_for`` around a whole poll), plus a connect
timeout here. No cookies are kept and no redirect is followed, as with the httpx client before.
Only ``http://`` URLs: TLS targets keep the httpx client with the shared TLS context
(instances.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import httpx

CHUNK_BYTES = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024  # status line and each header line of one response
USER_AGENT = "gpuwatch"


class Response:
    """One response whose body is read with ``aiter_raw()`` (raw bytes: not decompressed)."""

    def __init__(self, r: aiohttp.ClientResponse) -> None:
        self._r = r
        self.status_code = r.status
        self.headers = r.headers  # case-insensitive

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        async for data in self._r.content.iter_chunked(CHUNK_BYTES):
            yield data


class KeepAliveClient:
    """Keep-alive HTTP/1.1 to one ``http://`` server through one aiohttp session (made on the
    event loop that first uses it). Not thread-safe: one event loop uses it."""

    def __init__(self, connect_timeout_s: float, max_idle: int = 4) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.max_idle = max_idle
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # no trace config: with one, aiohttp builds a Trace and awaits its signals at every
            # stage of every request, even for events nobody listens to (~70-170 µs of the
            # ~420-620 µs a /metrics poll costs here: bench/http_clients.py's server, 1,500
            # requests). Tests count connections on the server's side.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_idle, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s),
                auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(), headers={"User-Agent": USER_AGENT},
                max_line_size=MAX_HEAD_BYTES, max_field_size=MAX_HEAD_BYTES)
        return self._session

    @contextlib.asynccontextmanager
    async def stream(self, method: str, url: str, *, headers: dict[str, str] | None = None, json: object = None):
        if not url.startswith("http://"):
            raise httpx.UnsupportedProtocol(f"not an http:// URL: {url[:60]}")
        try:
            async with self._get_session().request(method, url, headers=headers, json=json,
                                                   allow_redirects=False) as r:
                yield Response(r)
        except aiohttp.InvalidURL:
            raise httpx.InvalidURL("bad URL") from None
        except (aiohttp.ConnectionTimeoutError, aiohttp.SocketTimeoutError):
            raise httpx.ConnectTimeout("connect timed out") from None
        except aiohttp.ClientConnectorError as e:
            raise httpx.ConnectError(str(e.os_error) if e.os_error else str(e)) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError,
                aiohttp.ClientOSError):
            raise httpx.RemoteProtocolError("bad or cut-short HTTP response") from None
        except aiohttp.ClientError as e:
            raise httpx.RemoteProtocolError(type(e).__name__) from None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
            await asyncio.sleep(0)  # let the closed transports finish
