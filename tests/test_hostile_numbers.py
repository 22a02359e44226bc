"""Hostile input, findings 1 and 9 (numbers): a non-finite or absurd value is a bad reading --
null, with the reason in the object's ``errors`` -- never drawn, never written as invalid JSON;
an Ollama model with a bad size is a bad reading of that model only; a series given twice
counts once."""

from __future__ import annotations

import json
import time

import pytest

from gpuwatch.model import GPU, Instance, Snapshot
from _tables import StubServers
from hostile_support import Peer, path_of, run_measured, send, send_json


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def vllm_with(lines: str):
    def answer(peer, conn, request):
        if path_of(request) == "/metrics":
            send(conn, lines)
        else:
            send(conn, "no", status="404 Not Found")
    return answer


INF_COUNTER = ('vllm:num_requests_running{model_name="m"} 2\n'
               'vllm:num_requests_waiting{model_name="m"} +Inf\n'
               'vllm:kv_cache_usage_perc{model_name="m"} NaN\n'
               'vllm:generation_tokens_total{model_name="m"} +Inf\n'
               'vllm:prompt_tokens_total{model_name="m"} 1e400\n')


def _collect_twice(url):
    from gpuwatch.collect.instances import BackendConfig, InstanceCollector
    with InstanceCollector([BackendConfig(url, kind="vllm")], discover=False, timeout_s=3) as col:
        col.collect()
        time.sleep(0.3)
        return col.collect()[0]


def test_an_infinite_counter_is_a_bad_reading_not_a_crash():
    peer = Peer(vllm_with(INF_COUNTER))
    try:
        inst = _collect_twice(peer.url)
    finally:
        peer.close()
    from gpuwatch.sanitize import clean
    clean(inst)
    assert inst.status == "up" and inst.requests_running == 2
    assert inst.requests_waiting is None and "Inf" in inst.errors["requests_waiting"]
    assert inst.generation_tokens_per_s is None and "generation_tokens_per_s" in inst.errors
    assert inst.prompt_tokens_per_s is None
    strict_json(json.dumps(inst.__dict__, default=lambda o: o.__dict__))


def test_snapshot_json_of_a_server_sending_inf_is_valid_json():
    peer = Peer(vllm_with(INF_COUNTER))
    try:
        rc, out, err, _, _ = run_measured(["snapshot", "--json", "--no-discover", "--interval", "0.3",
                                           "--backend", peer.url], timeout=60)
    finally:
        peer.close()
    assert rc == 0, err
    doc = strict_json(out)
    inst = doc["instances"][0]
    assert inst["status"] == "up" and inst["requests_waiting"] is None
    assert "not a finite number" in inst["errors"]["requests_waiting"]


async def test_dashboard_with_a_server_sending_inf_keeps_running():
    from gpuwatch.frontends.tui.app import GpuWatchApp, LiveSource
    from gpuwatch.pipeline import Monitor
    from gpuwatch.runtime import make_sampler
    from gpuwatch.config import BackendConfig as Backend

    peer = Peer(vllm_with(INF_COUNTER))
    monitor = Monitor(make_sampler(demo="h100x8", backends=[Backend(url=peer.url, kind="vllm")], discover=False))
    app = GpuWatchApp(LiveSource(monitor), interval=0.25)
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            for _ in range(12):  # a few seconds of ticks: rates exist from the second poll on
                await pilot.pause(0.25)
            assert app.is_running and app.collector_error is None
            assert monitor.last is not None and any(i.url.startswith(peer.url) for i in monitor.last.instances)
    finally:
        monitor.close()
        peer.close()


RECORDED = ('{"schema_version":1,"time":"2026-11-23T10:00:0%dZ","host":"h","gpus":[{"index":0,"temperature_c":%s,'
            '"memory_used_bytes":%s,"utilization_gpu_pct":%s,"pcie":{"tx_bytes_per_s":%s}}],"instances":[{"name":"i",'
            '"kind":"vllm","url":"u","generation_tokens_per_s":%s}]}\n')


@pytest.fixture
def inf_recording(tmp_path):
    p = tmp_path / "rec.ndjson"
    rows = [("55", "1", "10", "1", "1"), ("Infinity", "1e999", "NaN", "-Infinity", "Infinity"),
            ("56", str(10**400), "-5", "1e30", "NaN")]
    p.write_text("".join(RECORDED % (i, *r) for i, r in enumerate(rows)))
    return p


def test_replaying_non_finite_values_gives_bad_readings(inf_recording):
    from gpuwatch.recording import open_recording
    with open_recording(inf_recording) as rec:
        assert len(rec) == 3
        a, b, c = rec[0], rec[1], rec[2]
    assert a.gpus[0].temperature_c == 55.0 and a.gpus[0].errors == {}
    g = b.gpus[0]
    assert g.temperature_c is None and g.memory_used_bytes is None and g.utilization_gpu_pct is None
    assert g.pcie.tx_bytes_per_s is None and set(g.errors) >= {"temperature_c", "memory_used_bytes", "pcie.tx_bytes_per_s"}
    assert b.instances[0].generation_tokens_per_s is None and b.instances[0].errors
    assert c.gpus[0].memory_used_bytes is None and c.gpus[0].utilization_gpu_pct is None  # 10**400, -5 %
    assert c.gpus[0].pcie.tx_bytes_per_s == 1e30 or c.gpus[0].pcie.tx_bytes_per_s is None
    for s in (a, b, c):
        strict_json(json.dumps(s.to_dict()))


async def test_replay_dashboard_of_non_finite_values_does_not_crash(inf_recording):
    from gpuwatch.recording import open_recording
    from gpuwatch.frontends.tui.replay import ReplayApp, ReplaySource

    rec = open_recording(inf_recording)
    app = ReplayApp(ReplaySource(rec, speed=600.0))
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(8):
            await pilot.pause(0.25)
        await pilot.press("end")
        await pilot.pause(0.3)
        assert app.is_running and app.collector_error is None
    rec.close()


def test_fleet_gauges_of_inf_are_bad_readings_not_tracebacks():
    from gpuwatch.fleet.mapping import build_snapshots
    from gpuwatch.fleet.promql import parse_vector

    def item(name, value, **labels):
        return {"metric": {"__name__": name, "host": "box", "gpu": "0", "uuid": "u", **labels}, "value": [1.0, value]}
    doc = {"status": "success", "data": {"resultType": "vector", "result": [
        item("gpuwatch_gpu_temperature_celsius", "+Inf"),
        item("gpuwatch_gpu_memory_used_bytes", "+Inf"),
        item("gpuwatch_gpu_sm_clock_hertz", "-Inf"),
        item("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "+Inf", Hostname="box2"),
        item("DCGM_FI_DEV_FB_USED", "1e308", Hostname="box2"),
        item("gpuwatch_instance_gpu_memory_bytes", "+Inf", instance_name="i", kind="vllm"),
        item("gpuwatch_instance_requests_running", "+Inf", instance_name="i", kind="vllm"),
        item("gpuwatch_gpu_power_watts", "300"),
    ]}}
    hosts = {s.host: s for s in build_snapshots([parse_vector(doc)], "2026-11-23T10:00:00.000Z")}
    g = hosts["box"].gpus[0]
    assert g.temperature_c is None and g.memory_used_bytes is None and g.sm_clock_mhz is None and g.power_w == 300
    assert "temperature_c" in g.errors and "memory_used_bytes" in g.errors
    assert hosts["box"].instances[0].requests_running is None
    assert hosts["box2"].gpus[0].memory_used_bytes is None
    for s in hosts.values():
        strict_json(json.dumps(s.to_dict()))


def test_sampler_snapshots_never_hold_non_finite_values():
    from gpuwatch.pipeline import Sampler

    class Reading:
        driver_version = cuda_version = nvml_version = error = pid_namespace = None
        gpus = [GPU(index=0, temperature_c=float("nan"), power_w=float("inf"), fan_pct=-3.0, sm_clock_mhz=10**30)]

    class Nvml:
        def collect(self):
            return Reading()

        def close(self):
            pass

    class Servers(StubServers):
        def collect(self):
            return [Instance(name="i", kind="vllm", url="u", status="up", requests_running=float("inf"),
                             ttft_p95_s=float("nan"), slots_busy=10**400)]

    s = Sampler(nvml=Nvml(), instances=Servers())
    snap = s.sample(wait_instances=True)
    s.close()
    g, i = snap.gpus[0], snap.instances[0]
    assert (g.temperature_c, g.power_w, g.fan_pct, g.sm_clock_mhz) == (None, None, None, None)
    assert set(g.errors) == {"temperature_c", "power_w", "fan_pct", "sm_clock_mhz"}
    assert (i.requests_running, i.ttft_p95_s, i.slots_busy) == (None, None, None)
    from gpuwatch.recording import encode_snapshot
    strict_json(encode_snapshot(snap).decode())


def test_json_writers_refuse_nan_instead_of_writing_invalid_json():
    from gpuwatch.frontends.jsonout import dumps
    from gpuwatch.recording import encode_snapshot
    with pytest.raises(ValueError):
        dumps({"x": float("nan")})
    snap = Snapshot(time="t", host="h", collect_ms=float("inf"))
    with pytest.raises(ValueError):
        encode_snapshot(snap)  # unsanitised: refused, never "Infinity" in a recording


# ---- Ollama sizes (finding 9) -------------------------------------------------------------------

def ollama_with(models):
    def answer(peer, conn, request):
        path = path_of(request)
        if path == "/api/version":
            send_json(conn, {"version": "0.5.1"})
        elif path == "/api/ps":
            body = json.dumps({"models": models}).replace('"HUGE"', str(10**400))
            send(conn, body, ctype="application/json")
        else:
            send(conn, "no", status="404 Not Found")
    return answer


def test_bad_ollama_sizes_are_bad_readings_of_that_model_only():
    from gpuwatch.collect.instances import BackendConfig, InstanceCollector
    models = [{"name": "neg", "size": -5, "size_vram": 10},
              {"name": "huge", "size": "HUGE", "size_vram": 1},
              {"name": "vram-over", "size": 100, "size_vram": 400},
              {"name": "good", "size": 1000, "size_vram": 750, "context_length": 4096}]
    peer = Peer(ollama_with(models))
    try:
        with InstanceCollector([BackendConfig(peer.url, kind="ollama")], discover=False, timeout_s=3) as col:
            inst = col.collect()[0]
    finally:
        peer.close()
    assert inst.status == "up", inst.error
    by = {m.name: m for m in inst.models}
    assert by["neg"].size_bytes is None and "negative" in by["neg"].errors["size_bytes"]
    assert by["neg"].cpu_offload_pct is None
    assert by["huge"].size_bytes is None and "absurdly large" in by["huge"].errors["size_bytes"]
    assert by["vram-over"].cpu_offload_pct is None and by["vram-over"].errors
    assert by["good"].size_bytes == 1000 and by["good"].cpu_offload_pct == 25.0 and by["good"].errors == {}


# ---- duplicate series (finding 9) ----------------------------------------------------------------

def test_a_series_given_twice_counts_once():
    from gpuwatch.collect.engines.base import PromScrape
    text = ('vllm:num_requests_running{model_name="m",engine="0"} 4\n'
            'vllm:num_requests_running{engine="0",model_name="m"} 4\n'
            'vllm:num_requests_running{model_name="m",engine="0"} 4\n'
            'vllm:num_requests_running{model_name="m",engine="1"} 1\n')
    for series in (None, {}):
        s = PromScrape(text, wanted={"vllm:num_requests_running"}, series=series)
        assert s.sum(("vllm:num_requests_running",)) == 5
    peer = Peer(vllm_with(text))
    try:
        inst = _collect_twice(peer.url)
    finally:
        peer.close()
    assert inst.requests_running == 5  # not 13


def test_the_clean_fast_paths_let_nothing_bad_through():
    """A recording line whose lists, dicts and numbers look almost clean: each bad item is
    still caught (the sanitiser's quick checks accept only values that need nothing done)."""
    from gpuwatch.sanitize import TEXT_LIMIT, clean_snapshot

    gpu = GPU(index=0, name="H100")
    gpu.cpu_affinity = [0, 1, True, 2**70, 3]  # a bool and an absurd CPU number among good ones
    gpu.topology = {"GPU1": "NV18", "GPU2": "x" * (TEXT_LIMIT + 10), "GPU3\x1b[2J": "SYS"}
    gpu.memory_used_bytes = -5  # a count that cannot be negative
    gpu.temperature_c = 2**63  # an int beyond any reading
    gpu.power_w = float("nan")
    snap = clean_snapshot(Snapshot(time="t", host="h", gpus=[gpu]))
    g = snap.gpus[0]
    assert g.cpu_affinity == [0, 1, 3]
    assert g.topology["GPU1"] == "NV18" and len(g.topology["GPU2"]) == TEXT_LIMIT and g.topology["GPU2"].endswith("…")
    assert "GPU3\\x1b[2J" in g.topology
    assert g.memory_used_bytes is None and g.temperature_c is None and g.power_w is None
    assert set(g.errors) >= {"memory_used_bytes", "temperature_c", "power_w"}
    clean = clean_snapshot(Snapshot(time="t", host="h", gpus=[GPU(index=1, name="A", cpu_affinity=list(range(64)),
                                                                   topology={"GPU0": "NV18"})]))
    assert clean.gpus[0].cpu_affinity == list(range(64)) and clean.gpus[0].topology == {"GPU0": "NV18"}
    only_ints = clean_snapshot(Snapshot(time="t", host="h", gpus=[GPU(index=2, name="A", cpu_affinity=[4, 2**70])]))
    assert only_ints.gpus[0].cpu_affinity == [4]
