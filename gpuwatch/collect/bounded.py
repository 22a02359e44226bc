"""HTTP bodies read within a size cap and a total deadline, whatever the peer sends.

httpx decodes ``Content-Encoding: gzip`` itself, a whole network chunk at a time, and its
timeouts are per read: a gzip bomb (1 MB on the wire, 1 GiB unpacked) or a server that sends
one byte a second gets past both. Every body gpuwatch reads from a peer (inference servers,
Prometheus, benchmark targets) goes through here instead: the raw bytes are decompressed by
zlib with ``max_length``, so the cap holds for *decompressed* bytes and memory stays within
the cap plus one network chunk; and the read as a whole has a deadline, checked between
chunks, with each read's own timeout no longer than what is left.
"""

from __future__ import annotations

import time
import zlib

import httpx

# what we accept: identity, gzip and deflate, all decoded here within the cap. No br/zstd: their
# decoders are not bounded the same way, and no inference server needs them.
ACCEPT_ENCODING = "gzip, deflate"


class BodyError(Exception):
    """A body that cannot be read within the limits; ``str()`` is the reason, e.g.
    "larger than 4 MiB" or "not finished within 3 s"."""


def _mib(n: int) -> str:
    return f"{n / 1048576:g} MiB" if n >= 1048576 else f"{n} bytes"


class Decoder:
    """Raw body bytes in, decoded bytes out, never more than ``limit`` in all."""

    def __init__(self, encoding: str | None, limit: int, truncate: bool = False) -> None:
        enc = (encoding or "").strip().lower()
        self.limit = limit
        self.truncate = truncate
        self.produced = 0
        self.full = False
        if enc in ("", "identity"):
            self._d = None
        elif enc in ("gzip", "x-gzip"):
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._d = zlib.decompressobj()
        else:
            raise BodyError(f"unsupported Content-Encoding {enc[:40]!r}")

    def feed(self, data: bytes) -> bytes:
        if self.full:
            return b""
        room = self.limit - self.produced
        if self._d is None:
            out = data[: room + 1]
        else:
            try:
                out = self._d.decompress(data, room + 1)
            except zlib.error:
                raise BodyError("damaged compressed data") from None
        if len(out) > room:
            if not self.truncate:
                raise BodyError(f"larger than {_mib(self.limit)}")
            out = out[:room]
            self.full = True
        self.produced += len(out)
        return out


def _in_memory(r: httpx.Response) -> bool:
    """A response built in memory (a test double's ``httpx.Response(200, json=...)``): its
    content is already there, and streaming it again is refused."""
    return hasattr(r, "_content")


def _capped(body: bytes, limit: int, truncate: bool) -> bytes:
    if len(body) > limit:
        if not truncate:
            raise BodyError(f"larger than {_mib(limit)}")
        return body[:limit]
    return body


def _timeout_left(deadline: float | None, total_s: float) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise BodyError(f"not finished within {total_s:g} s")
    return left


async def read_async(r: httpx.Response, limit: int, deadline: float | None = None, total_s: float = 0.0,
                     truncate: bool = False) -> bytes:
    """The body of streamed response ``r`` (async), decoded, within ``limit`` bytes and before
    ``deadline`` (``time.monotonic()``; None: the caller bounds the time, e.g. with
    ``asyncio.wait_for``); raises BodyError otherwise (with ``truncate``, a body over the
    limit is cut instead)."""
    import asyncio

    if _in_memory(r):
        return _capped(r.content, limit, truncate)
    dec = Decoder(r.headers.get("content-encoding"), limit, truncate)
    buf = bytearray()
    it = r.aiter_raw().__aiter__()
    while not dec.full:
        try:
            chunk = await asyncio.wait_for(it.__anext__(), _timeout_left(deadline, total_s))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise BodyError(f"not finished within {total_s:g} s") from None
        buf += dec.feed(chunk)
    return bytes(buf)


def read_sync(r: httpx.Response, limit: int, deadline: float, total_s: float, truncate: bool = False) -> bytes:
    """:func:`read_async` for a streamed response of a sync client. Each network read is
    bounded by the client's read timeout; the deadline is checked between reads (the client's
    read timeout should be at most the total)."""
    if _in_memory(r):
        return _capped(r.content, limit, truncate)
    dec = Decoder(r.headers.get("content-encoding"), limit, truncate)
    buf = bytearray()
    for chunk in r.iter_raw():
        _timeout_left(deadline, total_s)
        buf += dec.feed(chunk)
        if dec.full:
            break
    _timeout_left(deadline, total_s)
    return bytes(buf)
