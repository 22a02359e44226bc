"""Hostile peers on loopback for the hostile-input matrix (tests/test_hostile_*.py): a raw HTTP
server whose every answer is a function of the request (trickle a byte a second, a gzip bomb,
hostile text), the strings that must never reach a terminal raw, and a child's peak memory."""

from __future__ import annotations

import functools
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

from conftest import ROOT

# every kind of text a peer can send that a terminal would act on, or that shifts a layout
ESC_TITLE = "\x1b]0;PWNED\x07"  # OSC: renames the terminal / tmux pane
ESC_CLEAR = "\x1b[2J"  # wipes the screen
HOSTILE = (ESC_TITLE + "m" + ESC_CLEAR + "\x08\r\x7f\u009b31m\u202eevil\u2066\u2028\u0085\x1c\x0b\u200d\ufe0f"
           + "名前😀")
# what must never appear raw in anything gpuwatch prints
RAW_BAD = ["\x1b", "\x07", "\x08", "\x7f", "\u009b", "\u202e", "\u2066", "\u2028", "\u0085", "\x1c", "\x0b",
           "\u200d", "\ufe0f"]


def raw_bad_in(text: str) -> list[str]:
    return [repr(c) for c in RAW_BAD if c in text]


class Peer:
    """A loopback TCP server: ``answer(conn, request_head: bytes)`` runs for each connection on
    its own daemon thread (it writes whatever it likes, as slowly as it likes)."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.stop = threading.Event()
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            head = b""
            conn.settimeout(10)
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            # a request body (form data of a PromQL query, JSON of a generation): read it too
            hdr, _, body = head.partition(b"\r\n\r\n")
            for line in hdr.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    want = int(line.split(b":", 1)[1])
                    while len(body) < want:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        body += chunk
            self.requests.append(hdr)
            self.answer(self, conn, hdr + b"\r\n\r\n" + body)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def path_of(request: bytes) -> str:
    return request.split(b" ", 2)[1].decode("latin-1").split("?")[0]


def send(conn: socket.socket, body: bytes | str, status: str = "200 OK", ctype: str = "text/plain",
         headers: dict[str, str] | None = None) -> None:
    if isinstance(body, str):
        body = body.encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                 f"Connection: close\r\n{extra}\r\n".encode() + body)


def send_json(conn, data, status: str = "200 OK") -> None:
    send(conn, json.dumps(data), status, "application/json")


def trickle(peer: Peer, conn: socket.socket, data: bytes, per_s: float = 1.0) -> None:
    """Send ``data`` one byte every 1/per_s seconds (headers included), until stopped."""
    for i in range(len(data)):
        if peer.stop.is_set():
            return
        conn.sendall(data[i:i + 1])
        peer.stop.wait(1.0 / per_s)


TRICKLED = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            + b'{"status":"success","data":{"resultType":"vector","result":[' + b" " * 99000)


@functools.lru_cache(maxsize=4)
def gzip_bomb(unpacked_mib: int) -> bytes:
    """A valid gzip stream of ``unpacked_mib`` MiB of a repeated Prometheus line (~400:1 on the
    wire: 1 GiB is 2.6 MB), built in a fraction of a second: after a sync flush the deflate
    state of a repeated block is the same every time, so its compressed bytes repeat too."""
    block = (b"vllm:num_requests_running 1\n" * 37450)[: 1 << 20]
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = z.compress(block) + z.flush(zlib.Z_SYNC_FLUSH)
    steady = z.compress(block) + z.flush(zlib.Z_SYNC_FLUSH)
    tail = z.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(unpacked_mib):
        crc = zlib.crc32(block, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + first + steady * (unpacked_mib - 1) + tail
            + struct.pack("<II", crc, (unpacked_mib << 20) & 0xFFFFFFFF))


def bomb_answer(unpacked_mib: int = 1024, ctype: str = "text/plain"):
    gzip_bomb(unpacked_mib)  # built before the server answers

    def answer(peer, conn, request):
        send(conn, gzip_bomb(unpacked_mib), ctype=ctype, headers={"Content-Encoding": "gzip"})
    return answer


def run_measured(args: list[str], env: dict | None = None, timeout: float = 60,
                 cwd=None) -> tuple[int, str, str, int, float]:
    """``python -m gpuwatch ARGS`` as a child: (exit code, stdout, stderr, peak RSS in MiB,
    seconds it ran). Killed (and the test fails) past ``timeout``."""
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    e.update(env or {})
    start = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "gpuwatch", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=e, cwd=cwd or ROOT)
    out: dict[str, bytes] = {}

    def drain(name, f):
        out[name] = f.read()
    threads = [threading.Thread(target=drain, args=("out", p.stdout)),
               threading.Thread(target=drain, args=("err", p.stderr))]
    for t in threads:
        t.start()
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
    for t in threads:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - start
    assert elapsed < timeout, f"gpuwatch {' '.join(args)} still running after {timeout} s"
    return (p.returncode, out["out"].decode("utf-8", "replace"), out["err"].decode("utf-8", "replace"),
            usage.ru_maxrss // 1024, elapsed)
