"""Loopback HTTP servers for the instance tests: each route answers with a function of the
test's state, or misbehaves on purpose (hang, endless body, junk bytes)."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

FIXTURES = Path(__file__).parent / "fixtures"

HANG = "hang"
ENDLESS = "endless"
JUNK = "junk"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; without this a keep-alive client waits 40 ms
    # for the delayed ACK on every request
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def setup(self):
        super().setup()
        self.server.fake.conns.append(self.connection)

    def do_GET(self):  # noqa: N802
        self._route()

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self.body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        self._route()

    def _route(self):
        srv: FakeServer = self.server.fake
        path = urlsplit(self.path).path
        srv.requests.append((self.command, path, dict(self.headers)))
        if srv.require_key is not None and self.headers.get("Authorization") != f"Bearer {srv.require_key}":
            return self._send(401, '{"error": "Unauthorized"}')
        route = srv.routes.get(path, srv.default)
        if route is None:
            return self._send(404, '{"detail": "Not Found"}')
        if route == HANG:
            srv.hold(self.connection)
            return None
        if route == JUNK:
            self.wfile.write(b"\x00\x01garbage that is not HTTP at all\r\n\r\n")
            return None
        if route == ENDLESS:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = b"vllm:num_requests_running 1\n" * 4096
            try:
                while not srv.stop.is_set():
                    self.wfile.write(chunk)
            except OSError:
                pass
            return None
        out = route(self) if callable(route) else route
        if isinstance(out, tuple):
            code, body = out
        else:
            code, body = 200, out
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        return self._send(code, body)

    def _send(self, code, body):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if body[:1] in (b"{", b"[") else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Backlogged(ThreadingHTTPServer):
    # engine probing asks up to 8 paths at once: socketserver's default backlog (5) would drop
    # connections that a real server (backlog in the hundreds) accepts
    request_queue_size = 64


class FakeServer:
    """``routes``: path -> body (str/bytes/JSON-able), callable(handler) -> body or (code, body),
    or one of HANG, ENDLESS, JUNK. ``default`` answers unknown paths (None: 404).
    ``holds`` counts the requests a HANG route holds unanswered (several servers may share one).
    ``port``: 0 for any free one."""

    def __init__(self, routes=None, default=None, require_key: str | None = None,
                 holds: HoldCount | None = None, port: int = 0) -> None:
        self.routes = dict(routes or {})
        self.default = default
        self.require_key = require_key
        self.requests: list = []
        self.conns: list = []
        self.stop = threading.Event()
        self.holds = HoldCount() if holds is None else holds
        self.httpd = _Backlogged(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def hold(self, conn) -> None:
        """Hold a request unanswered until the client gives up (closes its end) or the server
        closes (at most 30 s), counted in ``holds`` meanwhile."""
        self.holds.enter()
        given_up = False
        try:
            deadline = time.monotonic() + 30
            while not self.stop.is_set() and time.monotonic() < deadline:
                readable, _, _ = select.select([conn], [], [], 0.05)
                if readable:
                    try:
                        given_up = conn.recv(1, socket.MSG_PEEK) == b""
                    except OSError:
                        given_up = True
                    if given_up:
                        return  # the client closed the connection: it stopped waiting
                    self.stop.wait(0.05)  # bytes of a further request: keep holding
        finally:
            self.holds.leave(given_up)

    def close(self) -> None:
        """Stop as a dead process does: the listening socket and every open connection close."""
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class HoldCount:
    """Requests that hanging servers hold: how many now, the most at once, how many in all,
    how many the client gave up on, and how many were held to the end (the server closed or
    30 s passed) - a client that waited that long was not bounded by its timeout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = self.most = self.total = self.given_up = self.held_to_the_end = 0

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.total += 1
            self.most = max(self.most, self.now)

    def leave(self, given_up: bool) -> None:
        with self._lock:
            self.now -= 1
            if given_up:
                self.given_up += 1
            else:
                self.held_to_the_end += 1

    def wait_for(self, condition, timeout: float = 30.0) -> bool:
        """Wait (up to a generous ``timeout``) until ``condition(self)`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if condition(self):
                    return True
            time.sleep(0.01)
        return False


def free_port() -> int:
    """A loopback port with nothing listening on it (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def histogram_lines(name: str, buckets: dict[float, int], labels: str = "") -> list[str]:
    """Exposition lines of a cumulative histogram given {upper bound: cumulative count}."""
    sep = "," if labels else ""
    out = [f"# TYPE {name} histogram"]
    total = 0
    for le, c in sorted(buckets.items()):
        le_s = "+Inf" if le == float("inf") else repr(le)
        out.append(f'{name}_bucket{{{labels}{sep}le="{le_s}"}} {c}')
        total = c
    out.append(f"{name}_count{{{labels}}} {total}")
    out.append(f"{name}_sum{{{labels}}} 0")
    return out


class Counters:
    """Counters growing at known rates on a test-driven clock."""

    def __init__(self, clock, **rates: float) -> None:
        self.clock = clock
        self.t0 = clock.now()
        self.rates = rates
        self.offset = {k: 0.0 for k in rates}

    def value(self, name: str) -> float:
        return self.offset[name] + self.rates[name] * (self.clock.now() - self.t0)

    def restart(self) -> None:
        """The server restarts: every counter starts again from zero now."""
        for k in self.rates:
            self.offset[k] = -self.rates[k] * (self.clock.now() - self.t0)


def wait_until(pred, timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


class FakeDockerServer:
    """The Docker Engine API on a unix socket, answering with documented payload shapes
    (docs.docker.com Engine API: ContainerList, ContainerInspect, ContainerTop).
    ``containers``: dicts with ``summary`` (a /containers/json item), ``inspect`` and ``top``."""

    def __init__(self, path, containers) -> None:
        import socketserver

        self.path = str(path)
        self.containers = containers
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def address_string(self):
                return "unix"

            def do_GET(self):  # noqa: N802
                path = urlsplit(self.path).path
                fake.requests.append(path)
                body, code = fake.answer(path)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(self.path, Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def answer(self, path: str):
        if path == "/containers/json":
            return [c["summary"] for c in self.containers], 200
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "containers":
            for c in self.containers:
                if c["summary"]["Id"] == parts[1] or parts[1] in c["summary"]["Names"][0]:
                    if parts[2] == "json":
                        return c["inspect"], 200
                    if parts[2] == "top":
                        return c["top"], 200
            return {"message": f"No such container: {parts[1]}"}, 404
        return {"message": "page not found"}, 404

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def docker_container(cid: str, name: str, image: str, cmd: list[str], ports=(), gpus=None, env=(),
                     pids=(), network="bridge", ip="172.17.0.2") -> dict:
    """One container as the Engine API describes it (list item, inspect, top)."""
    summary = {"Id": cid, "Names": [f"/{name}"], "Image": image, "ImageID": "sha256:" + "0" * 64,
               "Command": " ".join(cmd), "Created": 1764633600, "State": "running", "Status": "Up 2 hours",
               "Ports": [{"IP": "0.0.0.0", "PrivatePort": priv, "PublicPort": pub, "Type": "tcp"} for priv, pub in ports],
               "Labels": {}, "HostConfig": {"NetworkMode": network},
               "NetworkSettings": {"Networks": {network: {"IPAddress": ip if network != "host" else ""}}},
               "Mounts": []}
    inspect = {"Id": cid, "Name": f"/{name}", "State": {"Status": "running", "Running": True,
                                                         "Pid": pids[0] if pids else 0},
               "Config": {"Image": image, "Cmd": cmd, "Entrypoint": None, "Env": list(env)},
               "HostConfig": {"NetworkMode": network, "DeviceRequests": gpus},
               "NetworkSettings": {"Networks": summary["NetworkSettings"]["Networks"]}}
    top = {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
           "Processes": [["root", str(p), "1", "0", "07:00", "?", "00:01:00", " ".join(cmd)] for p in pids]}
    return {"summary": summary, "inspect": inspect, "top": top}
