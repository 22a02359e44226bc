"""The keep-alive client that polls plain-HTTP servers (collect/http11.py), through the Fetcher the
engines use: connections are reused across ticks, every body framing reads the same bytes, a
connection the server closed between ticks costs no failed poll, and what the Fetcher did with
httpx (gzip within the cap, auth header, errors worded as a status and a reason) still holds."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading

import pytest

from gpuwatch.collect.engines.base import FetchError, Fetcher
from gpuwatch.collect.http11 import KeepAliveClient


class KeepAlivePeer:
    """A loopback server that answers every request on a connection with ``answer(head) -> bytes``
    (raw response bytes; after an HTTP/1.0 answer it closes the connection). Counts connections
    and keeps request heads."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.heads: list[bytes] = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                self.heads.append(head)
                out = self.answer(head)
                conn.sendall(out)
                if out.startswith(b"HTTP/1.0"):
                    conn.close()
                    return
        except OSError:
            return

    def close_idle(self) -> None:
        """The server drops its kept-alive connections (as one does after its keep-alive timeout)."""
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.conns.clear()

    def stop(self) -> None:
        self.sock.close()
        self.close_idle()


def _response(body: bytes, *, extra: str = "", status: str = "200 OK") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def _fetch(url: str, paths: list[str], *, between=None, headers=None, max_body: int = 1 << 20):
    async def go():
        # a loopback connect takes no time, but a test process starved by a CPU hog may not run
        # its loop for a while: the bound is for a test that fails, not a speed to hold
        client = KeepAliveClient(connect_timeout_s=10.0)
        f = Fetcher(client, url, headers or {}, max_body=max_body)
        out = []
        for p in paths:
            try:
                out.append(await asyncio.wait_for(f.get(p), 30))
            except FetchError as e:
                out.append(e)
            if between is not None:
                between()
        await client.aclose()
        return out
    return asyncio.run(go())


def test_one_connection_serves_every_tick():
    peer = KeepAlivePeer(lambda head: _response(b"vllm:x 1\n"))
    try:
        got = _fetch(peer.url, ["/metrics"] * 5)
    finally:
        peer.stop()
    assert got == [b"vllm:x 1\n"] * 5
    assert peer.connections == 1


def test_chunked_and_close_delimited_bodies_read_whole():
    body = b"".join(f"vllm:series_{i} {i}\n".encode() for i in range(3000))

    def chunked(head):
        parts = [body[i:i + 1000] for i in range(0, len(body), 1000)]
        data = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\nX-Trailer: 1\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + data

    peer = KeepAlivePeer(chunked)
    try:
        got = _fetch(peer.url, ["/metrics", "/metrics"])
    finally:
        peer.stop()
    assert got == [body, body] and peer.connections == 1  # the chunked answer left the connection reusable

    # no length: the body ends when the server closes
    peer = KeepAlivePeer(lambda head: b"HTTP/1.0 200 OK\r\n\r\n" + body)
    try:
        got = _fetch(peer.url, ["/metrics", "/metrics"])
    finally:
        peer.stop()
    # a body delimited by the close cannot share its connection: each poll opens one, and reads all
    assert got == [body, body] and peer.connections == 2


def test_a_connection_the_server_closed_between_ticks_is_replaced_without_an_error():
    peer = KeepAlivePeer(lambda head: _response(b"ok"))
    try:
        got = _fetch(peer.url, ["/metrics"] * 3, between=peer.close_idle)
    finally:
        peer.stop()
    assert got == [b"ok"] * 3
    assert peer.connections == 3


def test_gzip_is_decoded_within_the_cap_and_the_auth_header_is_sent():
    page = b"vllm:num_requests_running 3\n" * 100
    peer = KeepAlivePeer(lambda head: _response(gzip.compress(page), extra="Content-Encoding: gzip\r\n"))
    try:
        got = _fetch(peer.url, ["/metrics"], headers={"Authorization": "Bearer s3cret"})
        small = _fetch(peer.url, ["/metrics"], max_body=1000)
    finally:
        peer.stop()
    assert got == [page]
    assert b"authorization: bearer s3cret" in peer.heads[0].lower()
    assert b"accept-encoding: gzip, deflate" in peer.heads[0].lower()
    assert isinstance(small[0], FetchError) and "larger than" in small[0].message


@pytest.mark.parametrize("raw, words", [
    (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 12\r\n\r\nengine dead!", "HTTP 500 from /metrics"),
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "bad HTTP response"),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\nshort", "bad HTTP response"),  # then closed
    (b"HTTP/1.1 200 OK\r\nX-Junk: " + b"a" * 70_000 + b"\r\n\r\n", "bad HTTP response"),
    (b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", "needs API key"),
])
def test_bad_answers_are_one_line_errors(raw, words):
    peer = KeepAlivePeer(lambda head: raw)
    try:
        got = _fetch(peer.url, ["/metrics"])
    finally:
        peer.stop()
    assert isinstance(got[0], FetchError), got
    assert words in got[0].message


def test_refused_and_optional_endpoints():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()  # nothing listens there now
    got = _fetch(url, ["/metrics"])
    assert isinstance(got[0], FetchError) and got[0].status == "down" and got[0].message == "connection refused"

    peer = KeepAlivePeer(lambda head: _response(b"not here", status="404 Not Found"))

    async def go():
        client = KeepAliveClient(connect_timeout_s=10.0)  # (as in _fetch)
        f = Fetcher(client, peer.url)
        try:
            return await f.get("/slots", optional=True), await f.get("/slots", optional=True)
        finally:
            await client.aclose()
    try:
        assert asyncio.run(go()) == (None, None)
    finally:
        peer.stop()
