"""A simulated ``gpuwatch meter`` in front of the scenario's Ollama instances: a real HTTP server
on loopback whose ``/metrics`` is what the real meter would export (names from
``gpuwatch.meter.names``) with the box's own token counters, and a process in the simulated
process table (``gpuwatch meter --route ... --metrics ...``) so that the demo finds it the way
gpuwatch finds a real one.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

from ..meter import names
from .box import SimBox
from .quiet import QuietHTTPServer

PORT_KEY = "gpuwatch-meter"  # the simulated meter's metrics port, in ``box.ports``
PID = 29000
FIRST_LISTEN_PORT = 11534  # routes' LISTEN addresses (nothing listens there: the clients are simulated)


def metered(box: SimBox) -> list:
    """The scenario's instances that a meter fronts: every Ollama (it has no counters)."""
    return [s for s in box.scenario.instances if s.kind == "ollama"]


def routes(box: SimBox) -> list[tuple[str, str, object]]:
    """(LISTEN, upstream URL, instance spec) per metered instance."""
    out = []
    for i, spec in enumerate(metered(box)):
        port = box.ports.get(spec.name)
        if port is not None:
            out.append((f"127.0.0.1:{FIRST_LISTEN_PORT + i}", f"http://127.0.0.1:{port}", spec))
    return out


def cmdline(box: SimBox) -> list[str]:
    argv = ["/usr/bin/python3", "-m", "gpuwatch", "meter"]
    for listen, upstream, _ in routes(box):
        argv += ["--route", f"{listen}={upstream}"]
    return argv + ["--metrics", f"127.0.0.1:{box.ports.get(PORT_KEY, 0)}"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _SimMeter

    def log_message(self, format, *args):
        pass

    def do_GET(self):  # noqa: N802
        if self.path.split("?")[0] != "/metrics":
            body, code = b"gpuwatch meter: metrics are at /metrics\n", 404
        else:
            body, code = self.server.exposition().encode(), 200
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _SimMeter(QuietHTTPServer):
    def __init__(self, box: SimBox, histogram) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.box = box
        self.lock = threading.Lock()
        self.hists = {s.name: (histogram(names.TTFT_BUCKETS), histogram(names.ITL_BUCKETS)) for s in metered(box)}

    def exposition(self) -> str:
        lines = []

        def family(name, kind, rows):
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(rows)

        rs = routes(self.box)
        states = {listen: self.box.instance_state(spec.name) for listen, _, spec in rs}
        family(names.ROUTE_INFO, "gauge", [f'{names.ROUTE_INFO}{{route="{lst}",upstream="{up}"}} 1.0'
                                           for lst, up, _ in rs])
        family(names.REQUESTS_RUNNING, "gauge", [f'{names.REQUESTS_RUNNING}{{route="{lst}"}} '
                                                 f"{float(states[lst].requests_running)}" for lst, _, _ in rs])
        for name, attr in ((names.GENERATION_TOKENS, "generation_tokens_total"),
                           (names.PROMPT_TOKENS, "prompt_tokens_total"), (names.REQUESTS, "requests_total")):
            extra = ',code="200"' if name == names.REQUESTS else ""
            family(name, "counter", [f'{name}{{route="{lst}",model="{spec.model}"{extra}}} '
                                     f"{float(getattr(states[lst], attr))}" for lst, _, spec in rs])
        with self.lock:
            for lst, _, spec in rs:
                st = states[lst]
                ttft, itl = self.hists[spec.name]
                ttft.advance(st.requests_total, max(st.ttft_s, 0.001))
                itl.advance(st.generation_tokens_total, max(st.itl_s, 0.005))
                labels = f'route="{lst}",model="{spec.model}"'
                lines.extend(ttft.lines(names.TTFT, labels))
                lines.extend(itl.lines(names.ITL, labels))
        return "\n".join(lines) + "\n"


class SimMeter:
    def __init__(self, box: SimBox, histogram) -> None:
        self.server = _SimMeter(box, histogram)
        box.ports[PORT_KEY] = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="sim-meter", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=1)


def start_sim_meter(box: SimBox, histogram) -> SimMeter | None:
    """A meter when the scenario has an instance to front (after the instances' servers).
    ``histogram(bounds)``: the simulated servers' growing histogram (``servers._Hist``)."""
    return SimMeter(box, histogram) if metered(box) else None
