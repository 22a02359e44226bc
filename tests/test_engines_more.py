"""TGI, TabbyAPI, LM Studio and llama-swap through the real collector, recognised by probing;
vLLM's sleep mode and the loading/sleeping status with its ``status_since``."""

from __future__ import annotations

import dataclasses

import pytest
from _instances_servers import histogram_lines

from gpuwatch.collect.instances import BackendConfig, InstanceCollector
from gpuwatch.sim.box import ManualClock, SimBox
from gpuwatch.sim.scenarios import parse_scenario
from gpuwatch.sim.servers import start_sim_servers


def collector(urls_kinds, clock, **kw):
    backends = [BackendConfig(url=u, kind=k) for u, k in urls_kinds]
    return InstanceCollector(backends, discover=False, clock=clock.now, **kw)


@pytest.fixture
def sim_kinds():
    """The demo box with its servers speaking other engines' formats."""
    handles = []

    def make(*kinds):
        clock = ManualClock()
        scenario, faults = parse_scenario("h100x8:none")
        specs = [dataclasses.replace(s, kind=k, name=f"{k}-{i}")
                 for i, (s, k) in enumerate(zip(scenario.instances, kinds))]
        box = SimBox(dataclasses.replace(scenario, instances=tuple(specs)), faults, clock=clock)
        handle = start_sim_servers(box)
        handles.append(handle)
        return box, clock, handle

    yield make
    for h in handles:
        h.close()


def test_new_engines_recognised_by_probing(sim_kinds):
    box, clock, handle = sim_kinds("tgi", "tabbyapi", "lmstudio")
    clock.advance(30.0)
    urls = [handle.url(s.name) for s in box.scenario.instances]
    # probing asks 8 paths at once: a generous time bound for a loaded test machine
    with collector([(u, None) for u in urls], clock, timeout_s=10.0) as col:
        col.collect()
        t1 = box.t()
        clock.advance(2.0)
        got = {i.url: i for i in col.collect()}
        t2 = box.t()
    tgi, tabby, lms = (got[u] for u in urls)
    assert (tgi.kind, tabby.kind, lms.kind) == ("tgi", "tabbyapi", "lmstudio"), (tgi.error, tabby.error, lms.error)
    assert all(i.status == "up" for i in (tgi, tabby, lms))
    spec = box.scenario.instances[0]
    expected = (box.instance_state(spec.name, t2).generation_tokens_total
                - box.instance_state(spec.name, t1).generation_tokens_total) / 2.0
    assert tgi.generation_tokens_per_s == pytest.approx(expected, rel=0.05)
    assert tgi.models[0].name == spec.model and tgi.version == (spec.version or "3.3.6")
    assert tgi.requests_running == box.instance_state(spec.name, t2).requests_running
    # TabbyAPI answers llama.cpp's /props too, but is not taken for llama.cpp
    assert tabby.models[0].name == box.scenario.instances[1].model and tabby.models[0].context_length == 32768
    assert tabby.slots_total == 8
    # LM Studio: only the loaded LLM, with its quantization; the not-loaded embedding model is left out
    assert [(m.name, m.quantization, m.context_length) for m in lms.models] == [
        (box.scenario.instances[2].model, "Q4_K_M", 131072)]


def test_llamaswap_recognised_and_its_upstreams_become_instances(clock, servers):
    state = {"running": []}
    upstream = servers({"/metrics": "\n".join(["llamacpp:requests_processing 1", "llamacpp:requests_deferred 0",
                                               "llamacpp:tokens_predicted_total 10", ""]),
                        "/props": {"total_slots": 2, "model_path": "/m/qwen.gguf",
                                   "default_generation_settings": {"n_ctx": 4096}}})
    swap = servers({"/running": lambda h: state, "/health": "OK",
                    "/metrics": (503, "# performance monitor not available\n")})
    state["running"] = [{"model": "qwen", "state": "starting", "cmd": "llama-server --port 5800",
                         "proxy": upstream.url, "ttl": 0, "name": "", "description": ""}]
    with InstanceCollector([BackendConfig(url=swap.url, name="swap")], discover=False, clock=clock.now) as col:
        first = {i.name: i for i in col.collect()}
        assert first["swap"].kind == "llamaswap"
        assert first["swap"].status == "loading" and "qwen" in first["swap"].status_detail
        state["running"][0]["state"] = "ready"
        clock.advance(1.0)
        second = {i.name: i for i in col.collect()}
        assert second["swap"].status == "up"
        assert second["swap/qwen"].kind == "llamacpp" and second["swap/qwen"].status == "up"
        state["running"] = []  # llama-swap stopped it (ttl)
        clock.advance(1.0)
        third = {i.name: i for i in col.collect()}
    assert "swap/qwen" not in third and third["swap"].models == []


def test_tabbyapi_without_a_loaded_model_is_up(clock, servers):
    srv = servers({"/health": {"status": "healthy", "issues": []},
                   "/.well-known/serviceinfo": {"software": {"name": "TabbyAPI"}},
                   "/v1/model": (503, '{"detail": "No models are currently loaded."}')})
    with collector([(srv.url, None)], clock) as col:
        inst = col.collect()[0]
    assert (inst.kind, inst.status, inst.models) == ("tabbyapi", "up", [])


def vllm_body(awake: int, level: str | None, gen: float) -> str:
    lb = 'engine="0",model_name="llama-8b"'
    lines = [f"vllm:num_requests_running{{{lb}}} 0", f"vllm:generation_tokens_total{{{lb}}} {gen}",
             "# TYPE vllm:engine_sleep_state gauge"]
    for state in ("awake", "weights_offloaded", "discard_all"):
        v = awake if state == "awake" else int(state == level)
        lines.append(f'vllm:engine_sleep_state{{{lb},sleep_state="{state}"}} {v}')
    lines += histogram_lines("vllm:time_to_first_token_seconds", {0.1: 0, float("inf"): 0}, lb)
    return "\n".join(lines) + "\n"


def test_vllm_sleep_mode_is_sleeping_not_down_with_since(clock, servers):
    state = {"body": vllm_body(1, None, 100)}
    srv = servers({"/metrics": lambda h: state["body"], "/version": {"version": "0.26.0"}})
    with collector([(srv.url, "vllm")], clock) as col:
        awake = col.collect()[0]
        assert awake.status == "up" and awake.status_since
        state["body"] = vllm_body(0, "weights_offloaded", 100)
        clock.advance(1.0)
        asleep = col.collect()[0]
        clock.advance(1.0)
        still = col.collect()[0]
        state["body"] = vllm_body(0, "discard_all", 100)
        deeper = col.collect()[0]
    assert asleep.status == "sleeping" and asleep.status_detail == "sleep level 1: weights offloaded to CPU memory"
    assert still.status_since == asleep.status_since  # kept while the status stays
    assert deeper.status_detail == "sleep level 2: weights discarded"
    assert asleep.error is None and asleep.generation_tokens_per_s == 0


def test_sglang_rate_gauge_without_step_counter_goes_to_zero_when_it_stops_changing(clock, servers):
    """An SGLang without cuda_graph_passes_total: a gen_throughput that has not changed for
    5 s is a value left over from finished work (idle refresh is only every 30 s)."""
    lb = 'model_name="m"'
    state = {"thr": 100.0}
    srv = servers({"/metrics": lambda h: f"sglang:num_running_reqs{{{lb}}} 2\n"
                                         f"sglang:gen_throughput{{{lb}}} {state['thr']}\n"})
    readings = []
    with collector([(srv.url, "sglang")], clock) as col:
        for i in range(10):
            state["thr"] = 100.0 + i if i < 4 else 103.0  # moves while working, then stuck
            readings.append(col.collect()[0].generation_tokens_per_s)
            clock.advance(1.0)
    assert readings[:4] == [100.0, 101.0, 102.0, 103.0]
    assert readings[-1] == 0.0 and readings[6] == 103.0


class StartingProcesses:
    """A process table in which a vLLM server process runs but nothing listens yet."""

    probe_default_ports = False
    discovered_source = "discovered"

    def server_name(self, pid):
        return None

    def __init__(self, port):
        self.procs = [(4242, "python3", ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "m",
                                         "--port", str(port)], 1764662400.0)]

    def listeners(self):
        return []

    def info(self, pid):
        return None

    def children(self, pid):
        return []

    def processes(self):
        return self.procs


def test_vllm_loading_its_model_is_loading_not_down(clock):
    from _instances_servers import free_port

    from gpuwatch.analysis.alerts import evaluate_once
    from gpuwatch.model import Snapshot

    port = free_port()
    table = StartingProcesses(port)
    with InstanceCollector([BackendConfig(url=f"http://127.0.0.1:{port}", kind="vllm")], discover=False,
                           process_table=table, clock=clock.now) as col:
        loading = col.collect()[0]
        table.procs = []  # the process died: now it is down
        clock.advance(60.0)
        down = col.collect()[0]
    assert loading.status == "loading" and loading.pid == 4242 and loading.error is None
    assert loading.status_since == "2025-12-02T08:00:00+00:00"  # the process start time
    assert "does not listen yet" in loading.status_detail
    assert down.status == "down" and "refused" in down.error
    alerts = evaluate_once([Snapshot(time="t", host="h", instances=[loading])])
    assert not [a for a in alerts if a.kind == "backend_down"]
    alerts = evaluate_once([Snapshot(time="t", host="h", instances=[down])])
    assert [a.kind for a in alerts if a.kind == "backend_down"] == ["backend_down"]


def test_bench_on_lmstudio_and_tabbyapi_uses_the_loaded_model(sim_kinds):
    from gpuwatch.collect.bench import run_bench

    box, clock, handle = sim_kinds("lmstudio", "tabbyapi")
    clock.advance(30.0)
    for spec in box.scenario.instances[:2]:
        result = run_bench(handle.url(spec.name))
        assert result.error is None, result.error
        assert result.model == spec.model and result.generation_tokens_per_s > 0


def test_instance_panel_shows_loading_and_energy_lines():
    from gpuwatch.frontends.tui.render import instance_lines
    from gpuwatch.model import Instance

    loading = Instance(name="v", kind="vllm", url="u", status="loading", status_since="2026-12-02T08:00:00+00:00",
                       status_detail="vllm process 42 runs but does not listen yet (loading its model)")
    text = [line.plain for line in instance_lines(loading, [], 80)]
    assert text[0].startswith(" LOADING ") and "does not listen yet" in text[0]
    assert text[1] == "since 2026-12-02T08:00:00+00:00"
    up = Instance(name="v", kind="vllm", url="u", status="up", generation_tokens_per_s=1200.0, power_w=600.0,
                  power_shared=True, joules_per_token=0.5, tokens_per_s_per_kw=2000.0, mfu_pct=25.0,
                  mem_bw_util_pct=50.0)
    energy = [line.plain for line in instance_lines(up, [], 80) if line.plain.startswith("energy")]
    assert energy == ["energy 0.50 J/tok 2000 tok/s/kW  600 W (shared GPUs split by memory)  MFU 25%  mem BW 50%"]


def test_discovery_shows_a_loading_vllm_that_does_not_listen_yet(clock):
    from _instances_servers import free_port

    port = free_port()
    table = StartingProcesses(port)
    with InstanceCollector([], discover=True, process_table=table, clock=clock.now, probe_ports=()) as col:
        first = col.collect()
        table.procs = []  # it crashed while loading
        clock.advance(15.0)
        crashed = col.collect()
        clock.advance(400.0)
        later = col.collect()
    assert [(i.name, i.status, i.pid) for i in first] == [(f"vllm:{port}", "loading", 4242)]
    assert [(i.name, i.status) for i in crashed] == [(f"vllm:{port}", "down")]
    assert later == []  # forgotten, as any discovered server that has gone
