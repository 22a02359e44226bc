"""The demo's simulated servers through the real collector (discovery, rates, GPU join), and
the on-demand benchmark."""

from __future__ import annotations

import time

import pytest
from _instances_servers import fixture

from gpuwatch.analysis.groups import assign_gpus
from gpuwatch.collect.bench import format_bench, run_bench
from gpuwatch.collect.instances import BackendConfig, InstanceCollector

WAIT_ALL = 1.5  # the collector's timeout: a collect() waits for every server's poll
from gpuwatch.model import GPU, BenchResult, Process, Snapshot
from gpuwatch.sim.box import ManualClock, SimBox
from gpuwatch.sim.procs import SimProcessTable
from gpuwatch.sim.scenarios import parse_scenario
from gpuwatch.sim.servers import start_sim_servers


def sim(spec: str):
    clock = ManualClock()
    scenario, faults = parse_scenario(spec)
    box = SimBox(scenario, faults, clock=clock)
    return box, clock, start_sim_servers(box)


def test_sim_servers_discovered_with_box_rates_and_gpus():
    box, clock, handle = sim("h100x8:none")
    try:
        clock.advance(30.0)
        table = SimProcessTable(box)
        # no probe_ports given: the simulated table keeps the real machine's default ports out
        # the test's clock moves only between collects: each waits for every poll (as the simulated
        # box's own samplers do: runtime.make_sampler), not a live view's half second, which a
        # loaded machine can miss (beside a CPU hog: no tok/s for a server)
        with InstanceCollector([], discover=True, process_table=table, clock=clock.now, grace_s=WAIT_ALL) as col:
            assert col.probe_ports == ()
            col.collect()
            t1 = box.t()
            clock.advance(2.0)
            t2 = box.t()
            out = col.collect()
    finally:
        handle.close()
    by_pid = {i.pid: i for i in out}
    assert len(out) == 3 and all(i.status == "up" and i.source == "simulated" for i in out)
    assert sorted(i.name for i in out) == sorted(s.name for s in box.scenario.instances)
    gpus = []
    for g in range(box.count):
        gpus.append(GPU(index=g, processes=[Process(pid=p, used_memory_bytes=m) for p, m in box.gpu_processes(g)]))
    snap = assign_gpus(Snapshot(time="t", host="sim", gpus=gpus, instances=out))
    for spec in box.scenario.instances:
        inst = by_pid[box.server_pid(spec)]
        assert inst.kind == spec.kind
        assert inst.models[0].name == spec.model
        expected = (box.instance_state(spec.name, t2).generation_tokens_total
                    - box.instance_state(spec.name, t1).generation_tokens_total) / 2.0
        # SGLang's live rate is its gen_throughput gauge (the rate of the last decode steps, not
        # the mean over the poll interval): within a few percent while the load drifts
        assert inst.generation_tokens_per_s == pytest.approx(expected, rel=0.05 if spec.kind == "sglang" else 0.01)
        assert inst.kv_cache_usage_pct == pytest.approx(100 * box.instance_state(spec.name, t2).kv_cache_usage, rel=0.01)
        assert inst.ttft_p50_s is not None and inst.itl_p50_s is not None
        assert inst.gpus == list(spec.gpus)
        assert inst.parallelism == spec.parallelism
    assert snap.gpu(7).instances == []  # the spare GPU


def test_sim_instance_on_a_lost_gpu_answers_errors():
    box, clock, handle = sim("rtx4090x2:lost")
    try:
        with InstanceCollector(handle.backends, discover=False, clock=clock.now, grace_s=WAIT_ALL) as col:
            before = {i.name: i for i in col.collect()}
            clock.advance(25.0)  # the GPU falls off the bus after 20 s
            after = {i.name: i for i in col.collect()}
    finally:
        handle.close()
    assert before["ollama"].status == "up" and before["llama-server"].status == "up"
    off = before["ollama"].models[0]
    assert off.cpu_offload_pct == 0.0
    assert after["ollama"].status == "error" and "HTTP 500" in after["ollama"].error
    assert after["llama-server"].status == "error"


def test_sim_ollama_offload_fault_shows_cpu_share():
    box, clock, handle = sim("rtx4090x2:offload")
    try:
        with InstanceCollector(handle.backends, discover=False, clock=clock.now, grace_s=WAIT_ALL) as col:
            inst = {i.name: i for i in col.collect()}["ollama"]
    finally:
        handle.close()
    assert inst.models[0].cpu_offload_pct == pytest.approx(38.0, abs=0.1)


# ---- benchmark -----------------------------------------------------------------------------

def test_bench_ollama_uses_its_own_timings(servers):
    srv = servers({"/api/ps": fixture("ollama-api-ps-docs.json"),
                   "/api/generate": fixture("ollama-api-generate-final-chunk-docs.json")})
    res = run_bench(srv.url, "ollama", runs=2, timeout=5)
    assert res.error is None and res.model == "mistral:latest" and res.runs == 2
    assert res.generation_tokens_per_s == pytest.approx(61.19, abs=0.01)  # 259 tokens in 4.2327 s
    assert res.prompt_tokens_per_s == pytest.approx(199.88, abs=0.01)
    posts = [r for r in srv.requests if r[1] == "/api/generate"]
    assert len(posts) == 2
    line = format_bench(res)
    assert line.startswith("mistral:latest: 61.2 tok/s generation, 200 tok/s prompt") and "2 runs" in line


def test_bench_openai_counts_usage_over_wall_time(servers):
    def completion(h):
        time.sleep(0.2)
        return {"choices": [{"text": "x"}], "usage": {"prompt_tokens": 12, "completion_tokens": 50, "total_tokens": 62}}

    srv = servers({"/v1/models": {"data": [{"id": "Qwen/Qwen2.5-7B"}]}, "/v1/completions": completion,
                   "/metrics": 'vllm:num_requests_running{model_name="m"} 0\n'})
    res = run_bench(srv.url, None, timeout=5)  # kind detected
    assert res.error is None and res.model == "Qwen/Qwen2.5-7B"
    assert 180 < res.generation_tokens_per_s <= 250  # 50 tokens in a bit over 0.2 s
    assert res.generation_tokens == 50 and res.prompt_tokens_per_s is None


def test_bench_failure_is_reported_not_raised(servers):
    srv = servers({"/v1/completions": (500, "boom")})
    res = run_bench(srv.url, "vllm", model="m", timeout=5)
    assert res.error == "HTTP 500 from /v1/completions: boom"  # the server's own reason, excerpted
    assert format_bench(res) == "gpuwatch: benchmark of m failed: HTTP 500 from /v1/completions: boom"
    dead = run_bench("http://127.0.0.1:9", "ollama", model="m", timeout=2)
    assert dead.error and dead.generation_tokens_per_s is None


def test_recorded_bench_appears_on_the_instance(servers):
    srv = servers({"/api/version": {"version": "0.5.1"}, "/api/ps": {"models": []}})
    result = BenchResult(time="2026-01-01T00:00:00+00:00", model="m", generation_tokens_per_s=42.0)
    with InstanceCollector([BackendConfig(srv.url, name="box-ollama", kind="ollama")], discover=False) as col:
        assert col.collect()[0].bench is None
        col.record_bench("box-ollama", result)
        assert col.collect()[0].bench.generation_tokens_per_s == 42.0
        col.record_bench(srv.url, BenchResult(time="t2", model="m", generation_tokens_per_s=7.0))
        assert col.collect()[0].bench.generation_tokens_per_s == 7.0


def test_collect_overhead_with_four_healthy_servers():
    box, clock, handle = sim("h100x8:none")
    box2, clock2, handle2 = sim("rtx4090x2:none")
    try:
        backends = handle.backends + handle2.backends[:1]
        with InstanceCollector(backends, discover=False) as col:
            col.collect()
            # CPU time, not wall time: what a tick costs does not depend on what else the
            # machine runs (the servers' CPU, in this process, is counted too)
            t0 = time.process_time()
            for _ in range(10):
                out = col.collect()
            per_tick = (time.process_time() - t0) / 10
    finally:
        handle.close()
        handle2.close()
    assert [i.status for i in out] == ["up"] * 4
    assert per_tick < 0.25
