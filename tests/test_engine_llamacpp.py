"""llama.cpp as a real ``llama-server`` (b11434) behaves: its bodies (tests/fixtures/real/
llamacpp-b11434/), loading, sleeping, servers without --metrics, the unified ``llama serve``
binary, aliases, CPU-only servers, and the simulated server that mimics it."""

from __future__ import annotations

import json

import pytest
from _instances_servers import fixture
from alerts_support import Feed, inst, iso, T0

from gpuwatch.analysis.alert_config import AlertConfig
from gpuwatch.analysis.groups import assign_gpus
from gpuwatch.collect.bench import run_bench
from gpuwatch.collect.engines.llamacpp import LiveCount, SlotCounter, display_model_name
from gpuwatch.collect.instances import BackendConfig, InstanceCollector, match_server_process
from gpuwatch.model import GPU, Instance, Process, Snapshot

REAL = "real/llamacpp-b11434/llamacpp-b11434-"


def real(name: str):
    text = fixture(REAL + name)
    return json.loads(text) if name.endswith(".json") else text


def collector(url, clock, kind="llamacpp", **kw):
    kw.setdefault("prime_s", 0.0)
    return InstanceCollector([BackendConfig(url=url, kind=kind)], discover=False, clock=clock.now, **kw)


def paths(srv) -> list[str]:
    return [p for _, p, _ in srv.requests]


# ---- real bodies -----------------------------------------------------------------------------

def test_real_busy_server_counts_the_tokens_running_requests_have_generated(clock, servers):
    """The real busy-long pair: the counter holds only finished requests (9,525); the two busy
    slots have generated 1,039 and 114 more. A second poll 1 s later with 110 more tokens in the
    slots reads 110 tok/s although the counter has not moved."""
    slots = real("slots-busy-long.json")
    srv = servers({"/metrics": real("metrics-busy-long.txt"), "/props": real("props-idle.json"), "/slots": slots})
    with collector(srv.url, clock) as col:
        col.collect()  # idle as far as it knows: /metrics shows 2 processing -> /slots read too
        clock.advance(1.0)
        later = json.loads(json.dumps(slots))
        for s in later:  # a generated token is in the slot's sequence (n_prompt_tokens) too
            s["next_token"][0]["n_decoded"] += 55
            s["n_prompt_tokens"] += 55
        srv.routes["/slots"] = later
        got = col.collect()[0]
    assert got.generation_tokens_per_s == pytest.approx(110.0)
    assert (got.requests_running, got.requests_waiting, got.slots_busy, got.slots_total) == (2, 1, 2, 2)
    # context the running requests hold: (1101 + 55 + 194 + 55) of 2 x 2048
    assert got.kv_cache_usage_pct == pytest.approx(100 * (1101 + 194 + 110) / 4096)
    assert got.models[0].name == "slow-llama" and got.models[0].quantization == "F32"
    assert got.models[0].context_length == 2048


def test_idle_server_with_metrics_is_not_asked_for_slots(clock, servers):
    """GET /slots wakes a sleeping llama.cpp and restarts its idle timer: an idle server with
    --metrics is read from /metrics (and /props) only."""
    srv = servers({"/metrics": real("metrics-idle.txt"), "/props": real("props-idle.json"),
                   "/slots": real("slots-busy-long.json")})
    with collector(srv.url, clock) as col:
        for _ in range(5):
            got = col.collect()[0]
            clock.advance(1.0)
    assert got.status == "up" and got.requests_running == 0 and got.generation_tokens_per_s == 0.0
    assert got.kv_cache_usage_pct == 0.0
    assert "/slots" not in paths(srv)


def test_server_without_metrics_gives_tok_s_running_and_waiting_from_slots(clock, servers):
    body = real("slots-nometrics.json")
    srv = servers({"/metrics": (501, real("metrics-nometrics.txt")), "/props": real("props-idle.json"),
                   "/slots": body})
    with collector(srv.url, clock) as col:
        col.collect()
        clock.advance(1.0)
        later = json.loads(json.dumps(body))
        for s in later:
            s["next_token"][0]["n_decoded"] += 40
        srv.routes["/slots"] = later
        got = col.collect()[0]
    assert got.status == "up"
    assert got.generation_tokens_per_s == pytest.approx(80.0)
    assert (got.requests_running, got.slots_busy, got.slots_total) == (2, 2, 2)
    assert got.requests_waiting is None  # every slot busy: /slots cannot say how many wait
    assert paths(srv).count("/props") == 2  # read every tick: it says whether /slots may be read


def test_sleeping_server_is_sleeping_and_not_woken(clock, servers):
    """Asleep (--sleep-idle-seconds), it answers /metrics and /props from a cache; a real b11434
    was woken by one GET /slots and kept awake by one a second (fixtures sleep-check.json)."""
    srv = servers({"/metrics": real("metrics-idle.txt"), "/props": real("props-sleeping.json"),
                   "/slots": real("slots-busy-long.json")})
    with collector(srv.url, clock) as col:
        for _ in range(3):
            got = col.collect()[0]
            clock.advance(1.0)
    assert got.status == "sleeping" and got.status_since is not None and got.error is None
    assert "/slots" not in paths(srv)


def test_server_without_metrics_that_sleeps_is_not_woken(clock, servers):
    props = real("props-sleeping.json")
    srv = servers({"/metrics": (501, real("metrics-nometrics.txt")), "/props": props,
                   "/slots": real("slots-nometrics.json")})
    with collector(srv.url, clock) as col:
        for _ in range(3):
            got = col.collect()[0]
            clock.advance(1.0)
    assert got.status == "sleeping" and got.status_since is not None
    assert "/slots" not in paths(srv)


def test_loading_server_is_loading_not_down(clock, servers):
    """Every endpoint answers the real 503 "Loading model" while the weights load: status
    `loading` (since when), no error; then up."""
    loading = (503, real("health-loading.json"))
    srv = servers({"/metrics": loading, "/props": loading, "/slots": loading, "/health": loading,
                   "/api/version": loading, "/version": loading})
    with collector(srv.url, clock, kind=None) as col:  # not even the kind is known yet
        first = col.collect()[0]
        clock.advance(1.0)
        again = col.collect()[0]
        srv.routes.update({"/metrics": real("metrics-idle.txt"), "/props": real("props-idle.json")})
        for p in ("/slots", "/health", "/api/version", "/version"):
            srv.routes.pop(p)
        clock.advance(1.0)
        up = col.collect()[0]
    assert first.status == "loading" and first.error is None and first.status_since
    assert "Loading model" in first.status_detail
    assert again.status_since == first.status_since
    assert up.status == "up" and up.kind == "llamacpp"


def test_loading_is_not_a_critical_alert_until_it_lasts_longer_than_the_limit():
    since = iso(T0)

    def snapshot(elapsed):
        i = inst("llama", [0], kind="llamacpp", status="loading", status_since=since,
                 generation_tokens_per_s=None, requests_running=None)
        return Snapshot(time=iso(T0 + elapsed), host="test", instances=[i])

    f = Feed(snapshot, config=AlertConfig.from_toml_dict({"backend_down": {"loading_limit_s": 120}}))
    assert f.run(120) == []
    [a] = f.run(5)
    assert a.kind == "backend_down" and a.severity == "critical" and "loading its model for 2 min" in a.message
    default = Feed(snapshot)
    assert default.run(300) == []  # 10 minutes by default


# ---- what the server is called, where it runs ------------------------------------------------

def test_alias_names_the_model_and_a_path_is_shown_as_its_stem():
    assert display_model_name("/models/Llama-3.1-8B-Instruct-Q4_K_M.gguf") == "Llama-3.1-8B-Instruct-Q4_K_M"
    assert display_model_name("/m/qwen3-235b-a22b-q4_k_m-00001-of-00003.gguf") == "qwen3-235b-a22b-q4_k_m"
    assert display_model_name("qwen/coder") == "qwen/coder"


def test_alias_from_props(clock, servers):
    props = dict(real("props-idle.json"), model_alias="coder")
    srv = servers({"/metrics": real("metrics-idle.txt"), "/props": props})
    with collector(srv.url, clock) as col:
        got = col.collect()[0]
    assert got.models[0].name == "coder"


@pytest.mark.parametrize("name,argv,kind", [
    ("llama", ["/usr/local/bin/llama", "serve", "-m", "/m/x.gguf", "--port", "8081"], "llamacpp"),
    ("llama", ["llama", "server", "-hf", "ggml-org/gemma-3-1b-it-GGUF"], "llamacpp"),
    ("llama-server", ["./llama-server", "-m", "/m/x.gguf"], "llamacpp"),
    ("llama", ["llama", "cli", "-m", "/m/x.gguf"], None),
])
def test_unified_llama_binary_is_discovered(name, argv, kind):
    assert match_server_process(name, argv) == kind


def test_cpu_only_server_is_shown_as_cpu_not_pipeline():
    from gpuwatch.collect.engines import get_engine

    assert get_engine("llamacpp").parallelism(["llama-server", "-m", "x.gguf", "-ngl", "0"]) == ("cpu", None)
    # a local llama.cpp serving while NVML lists other processes on the GPUs, none of its own
    g = GPU(index=0, processes=[Process(pid=4242, used_memory_bytes=1 << 30)])
    cpu = Instance(name="llama", kind="llamacpp", url="u", status="up", pid=777, pids=[777], parallelism="pipeline")
    gpu_box = assign_gpus(Snapshot(time=iso(T0), host="h", gpus=[g], instances=[cpu]))
    assert gpu_box.instances[0].parallelism == "cpu"
    no_gpus = Instance(name="llama", kind="llamacpp", url="u", status="up", pid=777, parallelism="pipeline")
    assert assign_gpus(Snapshot(time=iso(T0), host="h", instances=[no_gpus])).instances[0].parallelism == "cpu"
    # a remote one (no pid) or an Ollama that has not loaded a model yet keeps its hint
    remote = Instance(name="r", kind="llamacpp", url="u", status="up", parallelism="pipeline")
    ollama = Instance(name="o", kind="ollama", url="u", status="up", pid=9, parallelism="pipeline")
    snap = assign_gpus(Snapshot(time=iso(T0), host="h", gpus=[g], instances=[remote, ollama]))
    assert [i.parallelism for i in snap.instances] == ["pipeline", "pipeline"]


def test_cpu_and_loading_on_screen():
    from gpuwatch.frontends.text import render_text

    snap = Snapshot(time=iso(T0 + 90), host="h", instances=[
        Instance(name="cpu-llama", kind="llamacpp", url="u", status="up", parallelism="cpu"),
        Instance(name="big", kind="llamacpp", url="u", status="loading", status_since=iso(T0),
                 status_detail="loading model (/metrics answers HTTP 503: Loading model)")])
    text = render_text(snap)
    assert "cpu-llama" in text and " cpu " in text
    assert f"loading since {iso(T0)}: loading model" in text and "error" not in text
    from gpuwatch.frontends.tui.render import instance_lines

    cpu_card = "\n".join(c.plain for c in instance_lines(snap.instances[0], [], 40))
    loading_card = "\n".join(c.plain for c in instance_lines(snap.instances[1], [], 40))
    assert "GPUs none  CPU only" in cpu_card and "pipeline" not in cpu_card and "?" not in cpu_card
    assert loading_card.startswith(" LOADING  loading model (/metrics answers HTTP 503") and "no answer" not in loading_card


# ---- the counting itself ---------------------------------------------------------------------

def test_live_count_never_goes_back_and_restarts_with_the_server():
    live = LiveCount()
    assert live.update(100, 50) == 150
    assert live.update(100, 40) == 150  # a request ended between the two reads: hold
    assert live.update(200, 0) == 200
    assert live.update(10, 5) == 15  # counter went down: restarted


def slot(i, task, n, remain=500, busy=True, processed=20):
    return {"id": i, "id_task": task, "is_processing": busy, "n_ctx": 2048, "n_prompt_tokens": 100 + n,
            "n_prompt_tokens_processed": processed,
            "next_token": [{"n_decoded": n if busy else 0, "n_remain": remain if busy else -1}]}


def test_slot_counter_follows_tasks_and_estimates_the_end_of_a_finished_one():
    c = SlotCounter()
    c.update([slot(0, 7, 100), slot(1, 8, 10)], now=0.0)
    c.update([slot(0, 7, 150, remain=20), slot(1, 8, 60)], now=1.0)
    assert c.generated == 100 + 10 + 100  # first sight counts what it had; then 50 + 50
    # slot 0's request had 20 tokens left: it ended after them and slot 0 is idle; slot 1 goes on
    c.update([slot(0, 7, 0, busy=False), slot(1, 8, 110)], now=2.0)
    assert c.generated == 210 + 20 + 50
    # slot 1's request ends and a new one has generated 30 in the same second: 50 tok/s capacity
    c.update([slot(0, 7, 0, busy=False), slot(1, 9, 30)], now=3.0)
    assert c.generated == 280 + 20 + 30


# ---- the simulated llama.cpp server behaves as the real one ----------------------------------

def sim_llama(loading_s: float = 0.0):
    import dataclasses

    from gpuwatch.sim.box import ManualClock, SimBox
    from gpuwatch.sim.scenarios import parse_scenario
    from gpuwatch.sim.servers import start_sim_servers

    scenario, faults = parse_scenario("h100x8-4i:none")
    scenario = dataclasses.replace(scenario, instances=tuple(
        dataclasses.replace(s, loading_s=loading_s) if s.kind == "llamacpp" else s for s in scenario.instances))
    clock = ManualClock()
    box = SimBox(scenario, faults, clock=clock)
    spec = next(s for s in scenario.instances if s.kind == "llamacpp")
    return box, clock, start_sim_servers(box), spec


def test_sim_llamacpp_counter_moves_at_request_end_and_gpuwatch_stays_smooth():
    import httpx

    box, clock, handle, spec = sim_llama()
    counters, rates, truth = [], [], []
    try:
        url = handle.url(spec.name)
        with collector(url, clock) as col:
            clock.advance(20.0)
            col.collect()
            for _ in range(20):
                t1 = box.t()
                clock.advance(1.0)
                got = col.collect()[0]
                rates.append(got.generation_tokens_per_s)
                truth.append(box.instance_state(spec.name, box.t()).generation_tokens_total
                             - box.instance_state(spec.name, t1).generation_tokens_total)
                body = httpx.get(url + "/metrics", trust_env=False).text
                counters.append(float(next(line.split()[1] for line in body.splitlines()
                                           if line.startswith("llamacpp:tokens_predicted_total "))))
    finally:
        handle.close()
    assert all(c % 256 == 0 for c in counters)  # whole requests only
    assert len({b - a for a, b in zip(counters, counters[1:])}) > 1  # ... so the raw counter jumps
    assert rates == pytest.approx(truth, abs=1.0)


def test_sim_llamacpp_answers_503_while_loading_and_bench_names_the_model():
    box, clock, handle, spec = sim_llama(loading_s=30.0)
    try:
        url = handle.url(spec.name)
        with collector(url, clock) as col:
            loading = col.collect()[0]
            clock.advance(31.0)
            up = col.collect()[0]
        res = run_bench(url, "llamacpp", timeout=10)
    finally:
        handle.close()
    assert loading.status == "loading" and up.status == "up"
    assert up.models[0].name == spec.model.removesuffix(".gguf") and up.models[0].quantization == "Q8_0"
    assert res.error is None and res.model == spec.model.removesuffix(".gguf")
    assert res.prompt_tokens_per_s is not None and res.generation_tokens_per_s is not None


def test_record_first_two_lines_carry_rates(tmp_path):
    """A server's first poll is two polls 0.4 s apart, so the first line of a recording (and the
    second, which repeats it while the next poll runs) has tok/s where the counters give one."""
    from conftest import run_cli
    from gpuwatch.recording import open_recording

    out = tmp_path / "r.ndjson"
    r = run_cli("record", "--demo", "h100x8-4i", "--interval", "1", "--count", "2", "-o", str(out))
    assert r.returncode == 0, r.stderr
    rec = open_recording(out)
    assert len(rec) == 2
    for snap in (rec[0], rec[1]):
        counted = [i for i in snap.instances if i.kind in ("vllm", "sglang", "llamacpp")]
        assert counted and all(i.generation_tokens_per_s is not None for i in counted), \
            [(i.name, i.generation_tokens_per_s) for i in counted]
