"""gpuwatch finds a running `gpuwatch meter` by itself and shows live Ollama tok/s that match
what the clients received (long generations: Ollama's final chunk never comes in the window)."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime

import httpx
import pytest
from conftest import run_cli
from meter_support import MeterProcess, wait_until

from gpuwatch.collect.instances import BackendConfig, InstanceCollector
from gpuwatch.collect.procs import ProcessTable
from gpuwatch.sim.ollama_stream import StreamingOllama

RATE, CLIENTS = 25.0, 3  # tok/s per stream


class Clients:
    """``n`` clients streaming long generations through ``url``, counting the tokens they get."""

    def __init__(self, url: str, n: int, path: str = "/api/generate") -> None:
        self.received = 0
        self.times: list[float] = []  # wall-clock time of each token received (comparable across processes)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(url, path), daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, url: str, path: str) -> None:
        with httpx.Client(timeout=60) as c:
            while not self.stop.is_set():
                with c.stream("POST", url + path, json={"model": "llama3.2:3b", "prompt": "tell a long story"}) as r:
                    for line in r.iter_lines():
                        if self.stop.is_set():
                            return
                        if line and not json.loads(line)["done"]:
                            with self.lock:
                                self.received += 1
                                self.times.append(time.time())

    def count(self) -> int:
        with self.lock:
            return self.received

    def rate_between(self, start: float, end: float) -> float:
        """Tokens a second the clients received between two wall-clock times."""
        with self.lock:
            return sum(start < t <= end for t in self.times) / (end - start)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


@pytest.fixture
def streaming():
    up = StreamingOllama(rate_tok_s=RATE, tokens=100_000).start()  # 66 minutes per generation
    m = MeterProcess([up.url])
    clients = Clients(m.url, CLIENTS)
    try:
        assert wait_until(lambda: up.active == CLIENTS and clients.count() > 3 * CLIENTS, timeout=20)
        yield up, m, clients
    finally:
        clients.close()
        m.stop()
        up.close()


def test_the_ollama_instance_shows_the_tok_s_its_clients_receive(streaming):
    up, m, clients = streaming
    # the meter's LISTEN port is probed as a default port would be: through it an Ollama answers
    collector = InstanceCollector([BackendConfig(url=up.url, name="ollama-a")], discover=True,
                                  process_table=ProcessTable(), timeout_s=5.0, probe_ports=(m.listen_ports[0],))
    try:
        collector.collect()
        c0, t0 = clients.count(), time.monotonic()
        time.sleep(3.0)
        insts = {i.name: i for i in collector.collect()}
        c1, t1 = clients.count(), time.monotonic()
    finally:
        collector.close()
    inst = insts["ollama-a"]
    truth = (c1 - c0) / (t1 - t0)
    assert truth == pytest.approx(RATE * CLIENTS, rel=0.25)  # the stand-in kept its pace
    assert inst.kind == "ollama" and inst.meter == m.metrics_url.removesuffix("/metrics")
    assert inst.meter_routes == [f"127.0.0.1:{m.listen_ports[0]}"]  # where clients reach it through the meter
    assert inst.generation_tokens_per_s == pytest.approx(truth, rel=0.10)
    assert inst.requests_running == CLIENTS
    assert inst.itl_p50_s == pytest.approx(1 / RATE, rel=0.5)
    # the meter's own LISTEN address is not a second Ollama: only the upstream is listed
    assert [i.name for i in insts.values() if i.kind == "ollama"] == ["ollama-a"]


def test_gpuwatch_snapshot_reads_a_configured_meter(streaming, tmp_path):
    up, m, clients = streaming
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[meters]]\nurl = "{m.metrics_url.removesuffix("/metrics")}"\n')
    r = run_cli("snapshot", "--json", "--no-discover", "--backend", up.url, "--config", str(cfg), "--interval", "3")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (inst,) = doc["instances"]
    assert inst["kind"] == "ollama" and inst["meter"]
    # what the clients received over the snapshot's own window (the 3 s before its second sample),
    # not over the process's whole run: a loaded machine slows the start-up, not the rate
    end = datetime.fromisoformat(doc["time"].replace("Z", "+00:00")).timestamp()
    assert inst["generation_tokens_per_s"] == pytest.approx(clients.rate_between(end - 3.0, end), rel=0.15)
    assert inst["requests_running"] == CLIENTS
    assert inst["ttft_p50_s"] is not None or inst["itl_p50_s"] is not None


def test_a_bad_meters_entry_is_one_line(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[[meters]]\nurl = "127.0.0.1:9836"\n')
    r = run_cli("snapshot", "--json", "--demo", "rtx4090x2", "--config", str(cfg))
    assert r.returncode == 2 and "meters[0].url" in r.stderr and "Traceback" not in r.stderr


def _ollama_routes(metrics=None):
    from _instances_servers import fixture
    routes = {"/api/version": fixture("ollama-api-version-docs.json"), "/api/ps": fixture("ollama-api-ps-docs.json")}
    if metrics is not None:
        routes["/metrics"] = metrics
    return routes


def test_an_ollama_built_with_metrics_is_read_through_its_table(servers):
    from gpuwatch.sim.box import ManualClock
    clock = ManualClock()
    total = {"eval": 1000.0}
    text = lambda h: ("# TYPE ollama_eval_total counter\n"  # noqa: E731
                      f'ollama_eval_total{{model="llama3.2",reason="stop"}} {total["eval"]}\n'
                      '# TYPE ollama_prompt_eval_total counter\nollama_prompt_eval_total{model="llama3.2",reason="stop"} 70\n'
                      "# TYPE ollama_requests_queued gauge\nollama_requests_queued 2\n")
    srv = servers(_ollama_routes(text))
    with InstanceCollector([BackendConfig(url=srv.url)], discover=False, clock=clock.now) as col:
        col.collect()
        clock.advance(2.0)
        total["eval"] += 90
        (inst,) = col.collect()
    assert inst.kind == "ollama" and inst.status == "up"
    assert inst.generation_tokens_per_s == pytest.approx(45.0)
    assert inst.requests_waiting == 2 and inst.meter is None


def test_an_ollama_without_metrics_is_asked_for_them_only_now_and_then(servers):
    from gpuwatch.sim.box import ManualClock
    clock = ManualClock()
    srv = servers(_ollama_routes())
    with InstanceCollector([BackendConfig(url=srv.url)], discover=False, clock=clock.now) as col:
        col.collect()  # recognises the engine, and finds no /metrics
        before = len(srv.requests)
        for _ in range(10):
            clock.advance(1.0)
            (inst,) = col.collect()
        assert [p for _, p, _ in srv.requests[before:]] == ["/api/ps"] * 10  # one request per refresh
        clock.advance(10.0)
        col.collect()
    assert inst.status == "up" and inst.models
    assert "/metrics" in [p for _, p, _ in srv.requests[before + 10:]]  # asked again after 15 s


def test_a_meter_in_front_of_ollama_wins_over_its_end_of_request_counters_but_not_over_vllms():
    from gpuwatch.collect.engines.base import Reading
    from gpuwatch.collect.meters import attach
    meter_reading = Reading(gauges={"requests_running": 3.0}, counters={"generation_tokens": 500.0})
    ollama = Reading(gauges={"requests_waiting": 1.0}, counters={"generation_tokens": 320.0})
    attach(ollama, meter_reading, prefer_meter=True)
    assert ollama.counters["generation_tokens"] == 500.0 and ollama.gauges["requests_running"] == 3.0
    vllm = Reading(gauges={"requests_running": 7.0}, counters={"generation_tokens": 9000.0})
    attach(vllm, meter_reading, prefer_meter=False)
    assert vllm.counters["generation_tokens"] == 9000.0 and vllm.gauges["requests_running"] == 7.0


@pytest.mark.parametrize("argv,url", [
    (["/usr/bin/python3", "/home/u/.local/bin/gpuwatch", "meter", "--route", "11534=http://127.0.0.1:11434"],
     "http://127.0.0.1:9836"),
    (["python3", "-m", "gpuwatch", "meter", "--route", "a=b", "--metrics", "0.0.0.0:9900"], "http://127.0.0.1:9900"),
    (["gpuwatch", "meter", "--metrics=[::1]:9901"], "http://[::1]:9901"),
    (["gpuwatch", "meter", "--metrics", "none"], None),
])
def test_a_meter_is_recognised_by_its_command_line(argv, url):
    from gpuwatch.collect.meters import is_meter_process, metrics_url
    assert is_meter_process("python3", argv)
    assert metrics_url(argv) == url


@pytest.mark.parametrize("argv", [["gpuwatch", "serve"], ["ollama", "serve"], ["python3", "meter.py"],
                                  ["python3", "-m", "gpuwatch", "snapshot", "meter"]])
def test_other_processes_are_not_meters(argv):
    from gpuwatch.collect.meters import is_meter_process
    assert not is_meter_process(argv[0], argv)


def test_what_a_meter_says_is_bounded():
    from gpuwatch.collect.engines.base import PromScrape
    from gpuwatch.collect.meters import routes_of
    lines = [f'gpuwatch_meter_route_info{{route="127.0.0.1:{10000 + i}",upstream="http://127.0.0.1:1"}} 1'
             for i in range(1000)]
    lines += ['gpuwatch_meter_route_info{route="' + "x" * 5000 + '",upstream="http://127.0.0.1:1"} 1',
              'gpuwatch_meter_route_info{upstream="http://127.0.0.1:1"} 1']
    got = routes_of(PromScrape("\n".join(lines) + "\n"))
    assert len(got) == 256 and all(len(route) < 100 for _, route, _ in got)
