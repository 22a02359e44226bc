"""Hostile input, finding 7: `gpuwatch serve` under slow and hostile clients. Half-sent requests
(slowloris) are closed after the head deadline, a connection cap keeps a scraper getting in,
/metrics is rendered once per collection, and SIGTERM ends the process within 2 s even while a
collection is stuck in slow NVML calls."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from conftest import ROOT
from gpuwatch.model import GPU, Snapshot


class _Monitor:
    def __init__(self) -> None:
        self.ticks = 0

    def tick(self) -> Snapshot:
        self.ticks += 1
        return Snapshot(time="2026-11-23T10:00:00.000Z", host="box", gpus=[GPU(index=0, temperature_c=50.0)])


@pytest.fixture
def serve(monkeypatch):
    from gpuwatch.frontends import exporter
    renders = []
    real = exporter.generate_latest
    monkeypatch.setattr(exporter, "generate_latest", lambda reg: (renders.append(1), real(reg))[1])
    stop = threading.Event()
    ready = threading.Event()
    box: dict = {}

    def run(**options):
        def go():
            exporter.run_serve(_Monitor(), 0.5, ("127.0.0.1", 0), ready=lambda p: (box.update(port=p), ready.set()),
                               stop=stop, **options)
        t = threading.Thread(target=go, daemon=True)
        t.start()
        assert ready.wait(10)
        box["thread"] = t
        return box["port"]
    box["renders"] = renders
    yield run, box
    stop.set()
    if "thread" in box:
        box["thread"].join(5)


def _half_sent(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
    return s


def _closed_within(s: socket.socket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        return s.recv(1024) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


def test_slowloris_requests_are_closed_and_metrics_keep_answering(serve):
    run, box = serve
    port = run(header_timeout_s=1.0, max_connections=16)
    loris = [_half_sent(port) for _ in range(60)]  # far more than the cap
    try:
        start = time.monotonic()
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert r.status_code == 200 and "gpuwatch_gpu_temperature_celsius" in r.text
        assert time.monotonic() - start < 5
        # every half-sent request is closed: by the head deadline or to make room
        assert all(_closed_within(s, 8) for s in loris)
    finally:
        for s in loris:
            s.close()


def test_a_byte_a_second_request_head_is_cut_at_the_deadline(serve):
    run, box = serve
    port = run(header_timeout_s=1.0)
    s = socket.create_connection(("127.0.0.1", port))
    start = time.monotonic()
    closed = False
    try:
        for ch in b"GET /metrics HTTP/1.1\r\nHost: slowloris-slowloris-slowloris\r\n":
            try:
                s.sendall(bytes([ch]))
            except OSError:
                closed = True
                break
            if _closed_within(s, 0.2):
                closed = True
                break
            assert time.monotonic() - start < 8, "a trickled request head was never cut off"
    finally:
        s.close()
    assert closed and time.monotonic() - start < 8


def test_idle_keep_alive_connections_are_closed(serve):
    run, box = serve
    port = run(header_timeout_s=1.0, idle_timeout_s=1.0)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    assert s.recv(4096).startswith(b"HTTP/1.1 ")
    assert _closed_within(s, 6)
    s.close()


def test_metrics_are_rendered_once_per_collection_not_per_scrape(serve):
    run, box = serve
    port = run()
    with httpx.Client() as c:
        before = len(box["renders"])
        for _ in range(50):
            assert c.get(f"http://127.0.0.1:{port}/metrics").status_code == 200
        scraped_in = len(box["renders"]) - before
    assert scraped_in <= 4  # ~one per 0.5 s tick, not 50


def test_ticks_nobody_scrapes_render_nothing_and_a_scrape_shows_the_latest_tick():
    from prometheus_client import CollectorRegistry

    from gpuwatch.frontends import exporter

    renders = []
    registry = CollectorRegistry(auto_describe=False)
    collector = exporter._LastSnapshotCollector()
    registry.register(collector)
    state = exporter.ExporterState(registry, collector, 1.0)
    real = exporter.generate_latest
    integ = exporter._Integrator()
    try:
        exporter.generate_latest = lambda reg: (renders.append(1), real(reg))[1]
        for k in range(10):  # ten ticks, no scrape
            snap = Snapshot(time="2026-11-23T10:00:00.000Z", host="box", gpus=[GPU(index=0, temperature_c=40.0 + k)])
            state.publish(exporter.build_families(snap, integ, 1000.0 + k))
        assert renders == []
        body = exporter.respond(state, "/metrics")[2].decode()
        again = exporter.respond(state, "/metrics")[2].decode()
    finally:
        exporter.generate_latest = real
    assert re.search(r'temperature_celsius\{[^}]*\} 49\.0', body), body[:2000]  # the last tick's value
    assert again == body and len(renders) == 1  # the second scrape of the same tick sends the same bytes


def test_token_totals_count_every_tick_even_those_nobody_scraped():
    """Counters are rates integrated over the ticks: ticks that are never rendered (nobody
    scraped them) still add their tokens to the total the next scrape shows, and a scrape shows
    the totals as of the last tick."""
    from prometheus_client import CollectorRegistry

    from gpuwatch.frontends import exporter
    from gpuwatch.model import Instance

    registry = CollectorRegistry(auto_describe=False)
    collector = exporter._LastSnapshotCollector()
    registry.register(collector)
    state = exporter.ExporterState(registry, collector, 1.0)
    integ = exporter._Integrator()

    def tick(k: int) -> None:
        snap = Snapshot(time="2026-11-23T10:00:00.000Z", host="box", gpus=[GPU(index=0)],
                        instances=[Instance(name="vllm", kind="vllm", url="http://x", status="up",
                                            generation_tokens_per_s=100.0)])
        exporter.publish_tick(state, snap, integ, 1000.0 + 2.0 * k, None)  # ticks 2 s apart

    def total() -> float:
        body = exporter.respond(state, "/metrics")[2].decode()
        return float(re.search(r'gpuwatch_instance_generation_tokens_total\{[^}]*\} (\S+)', body).group(1))

    for k in range(6):  # 5 intervals of 2 s at 100 tok/s, none scraped
        tick(k)
    assert total() == 1000.0
    tick(6)
    tick(7)
    assert total() == 1400.0


def test_sigterm_exits_within_two_seconds_during_a_slow_collection(tmp_path):
    launcher = tmp_path / "slow_serve.py"
    launcher.write_text(
        "import sys\nimport gpuwatch.runtime as p\norig = p.make_sampler\n"
        "def slow(*a, **k):\n    k['latency_s'] = 0.15\n    return orig(*a, **k)\n"
        "p.make_sampler = slow\nfrom gpuwatch.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, str(launcher), "serve", "--demo", "--no-discover", "--listen",
                          "127.0.0.1:0"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                         cwd=ROOT)
    try:
        line = p.stderr.readline()
        port = int(re.search(r":(\d+)/metrics", line).group(1))
        time.sleep(1.0)  # the first collection (~30 s of 150 ms NVML calls) is under way
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 503
        start = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        elapsed = time.monotonic() - start
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    print(f"SIGTERM to exit: {elapsed:.2f} s")
    assert p.returncode == 0 and elapsed < 2.0, elapsed
