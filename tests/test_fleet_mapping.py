"""Fleet view without a server: recorded and synthetic Prometheus API answers -> Snapshots,
the PromQL client's failures, the exporter's text (no secrets), --listen parsing."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gpuwatch.fleet import names as N
from gpuwatch.fleet.mapping import NAME_LABEL, build_queries, build_snapshots
from gpuwatch.fleet.promql import PromClient, parse_vector
from gpuwatch.fleet.source import FleetSource, fleet_document
from gpuwatch.model import GPU, Alert, Instance, ModelInfo, Pcie, Process, Snapshot

FIX = Path(__file__).parent / "fixtures" / "prometheus"


def load(name):
    return json.loads((FIX / name).read_text())


def snaps(*names):
    return {s.host: s for s in build_snapshots([parse_vector(load(n)) for n in names], "2026-11-23T10:00:00.000Z")}


def test_the_queries_cover_every_table_metric():
    q = build_queries()
    assert set(q) == {"gauges", "rates", "static"}
    for s in (*N.GPU_SERIES, *N.INSTANCE_SERIES):
        if s.path.startswith("#") and s.path != "#up":
            continue
        home = "rates" if s.kind == "counter" else "static" if s.static else "gauges"
        assert s.metric in q[home], s.metric
        assert all(f'{s.metric}"' not in q[k] and f"{s.metric}|" not in q[k] for k in q if k != home), s.metric
    for m in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "vllm:num_requests_running"):
        assert m in q["gauges"]
    assert N.GPU_INFO in q["static"] and q["gauges"].endswith(f" or {N.GPU_THROTTLE} > 0.5")
    assert "rate(vllm:generation_tokens_total[1m])" in q["rates"] and NAME_LABEL in q["rates"]


def test_each_gpuwatch_gpu_series_fills_a_field_of_its_own():
    """The builder keeps no priority for gpuwatch's GPU series (mapping._applier): two of them
    filling one field would make the value depend on the answer's order."""
    from gpuwatch.fleet.mapping import GPUWATCH_GPU, GW_GPU_APPLY

    paths = [f.path for f in GPUWATCH_GPU]
    assert len(set(paths)) == len(paths) and set(GW_GPU_APPLY) == {f.metric for f in GPUWATCH_GPU}
    assert all(f.mode in ("gauge", "rate") and not f.path.startswith("#") for f in GPUWATCH_GPU)


def test_recorded_gpuwatch_series_read_back_as_the_box():
    s = snaps("gpuwatch-gauges.json", "gpuwatch-rates.json", "gpuwatch-static.json")["boxa"]
    assert s.source == "prometheus" and s.driver_version == "570.172.08" and s.scenario == "h100x8:hot"
    assert [g.index for g in s.gpus] == list(range(8))
    g2 = s.gpu(2)
    assert g2.name == "NVIDIA H100 80GB HBM3" and g2.uuid.startswith("GPU-")
    assert {"sw_thermal_slowdown", "hw_thermal_slowdown"} <= set(g2.throttle_reasons)
    assert 0 <= g2.utilization_gpu_pct <= 100 and isinstance(g2.memory_used_bytes, int)
    assert isinstance(g2.sm_clock_mhz, int) and 500 < g2.sm_clock_mhz < 2500
    assert g2.pcie.gen == 5 and g2.pcie.tx_bytes_per_s > 0 and g2.nvlink.tx_bytes_per_s > 0
    assert g2.temperature_slowdown_c == 89  # the H100 SXM5 80GB of the simulator (sim/scenarios.py)
    names = {i.name: i for i in s.instances}
    assert set(names) == {"vllm-llama70b", "vllm-qwen32b", "sglang-mistral"}
    v = names["vllm-llama70b"]
    assert v.gpus == [0, 1, 2, 3] and v.parallelism == "tensor" and v.parallel_size == 4
    assert v.generation_tokens_per_s > 0 and v.requests_running is not None and 0 <= v.kv_cache_usage_pct <= 100
    assert v.models[0].name == "meta-llama/Llama-3.3-70B-Instruct"
    assert "vllm-llama70b" in g2.instances
    assert any(a.kind == "thermal_throttle" and a.subject == "GPU 2" for a in s.alerts)
    # the JSON contract reads back
    assert Snapshot.from_dict(json.loads(json.dumps(s.to_dict()))).gpu(2).name == g2.name


def test_dcgm_and_vllm_series_map_with_units_and_names():
    hosts = snaps("dcgm-vllm-gauges.json", "dcgm-vllm-rates.json")
    assert set(hosts) == {"gpu-node-07", "gpu-node-08"}
    s = hosts["gpu-node-07"]
    assert s.driver_version == "535.154.05"
    g0, g1 = s.gpus
    assert g0.name == "NVIDIA A100-SXM4-40GB" and g0.uuid == "GPU-715daa1d-db6f-9e69-ab48-190158bd5360"
    assert g0.utilization_gpu_pct == 97 and g0.utilization_memory_pct == 41
    assert g0.memory_used_bytes == 38012 * 2**20
    assert g0.memory_total_bytes == (38012 + 2048 + 450) * 2**20
    assert g0.temperature_c == 84 and g0.temperature_slowdown_c == 88 and g0.power_w == 391.25
    assert g0.sm_clock_mhz == 1275
    assert g0.throttle_reasons == ["sw_thermal_slowdown", "hw_thermal_slowdown"]  # 0x60
    assert g1.throttle_reasons == ["gpu_idle"]
    assert g0.pcie.tx_bytes_per_s == 125000 * 1000 and g0.pcie.rx_bytes_per_s == 250000 * 1000
    assert g0.nvlink.tx_bytes_per_s == g0.nvlink.rx_bytes_per_s == 200000 * 1e6 / 2
    (inst,) = s.instances
    assert inst.name == "vllm:8000" and inst.kind == "vllm" and inst.url == "http://gpu-node-07:8000"
    assert inst.requests_running == 12 and inst.requests_waiting == 3 and inst.kv_cache_usage_pct == pytest.approx(62)
    assert inst.generation_tokens_per_s == 812.5 and inst.prompt_tokens_per_s == 2400
    assert inst.models[0].name == "meta-llama/Llama-3.1-8B-Instruct"
    s8 = hosts["gpu-node-08"]
    assert s8.gpus[0].pcie.tx_bytes_per_s == 3_000_000  # the PROF field wins over the deprecated one
    (i8,) = s8.instances
    assert i8.kv_cache_usage_pct == pytest.approx(25)  # V0 name
    assert i8.generation_tokens_per_s is None  # NaN rate: unknown, not zero


def test_gpuwatch_series_win_over_dcgm_on_the_same_host():
    gw = load("gpuwatch-gauges.json")
    dc = load("dcgm-vllm-gauges.json")
    for item in dc["data"]["result"]:
        if item["metric"].get("Hostname") == "gpu-node-07":
            item["metric"]["Hostname"] = "boxa"
    static = load("gpuwatch-static.json")
    hosts = {s.host: s for s in build_snapshots([parse_vector(gw), parse_vector(static), parse_vector(dc)],
                                                "2026-11-23T10:00:00.000Z")}
    assert len(hosts["boxa"].gpus) == 8 and hosts["boxa"].gpus[0].name.startswith("NVIDIA H100")


def _transport(routes):
    def handler(request: httpx.Request):
        body = dict(httpx.QueryParams(request.content.decode()))
        q = body.get("query", "")
        for key, answer in routes.items():
            if key in q:
                return answer() if callable(answer) else answer
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": []}})
    return httpx.MockTransport(handler)


EMPTY = {"status": "success", "data": {"resultType": "vector", "result": []}}


def _by_query(answers: dict, asked: list | None = None):
    """A Prometheus that answers each of build_queries() by its name ("gauges", "rates",
    "static"; an answer may be a callable), and lists no targets."""
    names = {q: k for k, q in build_queries().items()}

    def handler(request: httpx.Request):
        if request.url.path != "/api/v1/query":
            return httpx.Response(404)
        name = names.get(dict(httpx.QueryParams(request.content.decode())).get("query", ""), "?")
        if asked is not None:
            asked.append(name)
        answer = answers.get(name, EMPTY)
        return httpx.Response(200, json=answer() if callable(answer) else answer)
    return httpx.MockTransport(handler)


def test_fleet_source_refresh_runs_the_queries_and_alert_rules():
    calls = []
    t = _by_query({k: load(f"gpuwatch-{k}.json") for k in ("gauges", "rates", "static")})
    wrapped = httpx.MockTransport(lambda r: (calls.append(r), t.handle_request(r))[1])
    src = FleetSource("http://prom:9090", client=PromClient("http://prom:9090", transport=wrapped))
    r = src.refresh()
    src.close()
    queries = [c for c in calls if c.url.path == "/api/v1/query"]
    assert r.error is None and [s.host for s in r.hosts] == ["boxa"] and len(queries) == 3 == r.queries
    assert r.host("boxa").gpu(2).temperature_slowdown_c == 89
    # and the scrape targets' health, asked alongside (a host whose target is down is "down")
    assert [c.url.path for c in calls if c not in queries] == ["/api/v1/targets"]
    doc = fleet_document(r, "http://prom:9090")
    assert doc["schema_version"] == 1 and doc["error"] is None and doc["hosts"][0]["host"] == "boxa"
    assert doc["hosts"][0]["source"] == "prometheus"


@pytest.mark.parametrize("answer, expect", [
    (lambda: httpx.Response(400, json=load("error-bad-data.json")), "refused the query (bad_data)"),
    (lambda: httpx.Response(200, text="<html>Grafana</html>", headers={"content-type": "text/html"}),
     "not Prometheus's JSON API"),
    (lambda: httpx.Response(503, text="upstream down"), "HTTP 503"),
])
def test_prometheus_answering_errors_is_a_sentence(answer, expect):
    src = FleetSource("http://prom:9090", client=PromClient("http://prom:9090", transport=_transport({"": answer})))
    r = src.refresh()
    src.close()
    assert r.hosts == [] and expect in r.error


def test_prometheus_down_or_slow_is_a_sentence():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    # (a refused connection answers at once: the time bound only has to outlast a loaded machine
    # making its first HTTP client and connections; with 1 s a loaded CI box timed out first)
    src = FleetSource(f"http://127.0.0.1:{port}", timeout_s=10)
    r = src.refresh()
    src.close()
    assert "unreachable" in r.error and "connection refused" in r.error

    def slow(request):
        raise httpx.ReadTimeout("timed out", request=request)
    src = FleetSource("http://prom:9090", timeout_s=0.5,
                      client=PromClient("http://prom:9090", timeout_s=0.5, transport=httpx.MockTransport(slow)))
    r = src.refresh()
    src.close()
    assert "did not answer within 0.5 s" in r.error


def test_static_properties_are_read_once_a_minute_and_at_once_for_a_new_box():
    """The GPUs' memory, thresholds, maximum clocks and link are asked for at the first refresh,
    once a minute after that, and at once when a box (or GPU) appears; in between they are kept.
    On the recorded answers of a real Prometheus (fixtures/PROVENANCE.md)."""
    gauges, rates, static = (load(f"gpuwatch-{k}.json") for k in ("gauges", "rates", "static"))

    def with_boxb(doc):  # the recorded box and a copy of it named boxb
        out = json.loads(json.dumps(doc))
        out["data"]["result"] += [dict(item, metric=dict(item["metric"], host="boxb")) for item in doc["data"]["result"]]
        return out

    state = {"gauges": gauges, "static": static}
    asked = []
    now = [gauges["data"]["result"][0]["value"][0]]  # when it was recorded: the box is up
    t = _by_query({"gauges": lambda: state["gauges"], "rates": rates, "static": lambda: state["static"]}, asked)
    src = FleetSource("http://prom:9090", client=PromClient("http://prom:9090", transport=t), wall=lambda: now[0])

    def refresh(seconds_later):
        asked.clear()
        now[0] += seconds_later
        r = src.refresh()
        assert r.error is None and r.queries == len(asked)
        return r

    def properties(snap):
        return [(g.name, g.temperature_slowdown_c, g.temperature_shutdown_c, g.memory_total_bytes, g.sm_clock_max_mhz,
                 g.pcie.max_gen, g.pcie.max_width, g.power_default_limit_w, g.nvlink.links_total) for g in snap.gpus]
    try:
        r = refresh(0)
        assert sorted(asked) == ["gauges", "rates", "static"]
        first = properties(r.host("boxa"))
        assert len(first) == 8 and all(None not in p for p in first)
        assert first[2][:2] == ("NVIDIA H100 80GB HBM3", 89)
        r = refresh(5)
        assert sorted(asked) == ["gauges", "rates"]
        assert properties(r.host("boxa")) == first
        assert any(a.kind == "thermal_throttle" and a.subject == "GPU 2" for a in r.host("boxa").alerts)
        # a box joins: its properties in the same refresh, by a query after the gauges showed it
        state["gauges"], state["static"] = with_boxb(gauges), with_boxb(static)
        r = refresh(5)
        assert sorted(asked[:2]) == ["gauges", "rates"] and asked[2:] == ["static"]
        assert properties(r.host("boxb")) == first
        r = refresh(5)
        assert sorted(asked) == ["gauges", "rates"] and properties(r.host("boxb")) == first
        r = refresh(60)  # a minute after they were last read
        assert sorted(asked) == ["gauges", "rates", "static"]
    finally:
        src.close()


def test_the_fleet_is_refreshed_no_faster_than_prometheus_scrapes():
    """Samples change only when Prometheus scrapes: at most two refreshes per scrape interval of
    the targets it lists (the recorded answer of a real Prometheus 2.42: one target, every 15 s)."""
    scraped = load("targets-scraped.json")
    state = {"targets": None}

    def handler(request: httpx.Request):
        if request.url.path == "/api/v1/targets":
            return httpx.Response(200, json=state["targets"]) if state["targets"] else httpx.Response(404)
        return httpx.Response(200, json=EMPTY)

    src = FleetSource("http://prom:9090", client=PromClient("http://prom:9090", transport=httpx.MockTransport(handler)))
    try:
        src.refresh()
        assert src.pace(1.0) == 1.0  # no target listed: as asked
        state["targets"] = scraped
        src.refresh()
        assert src.pace(1.0) == 7.5 and src.pace(30.0) == 30.0
        for item in scraped["data"]["activeTargets"]:
            item["scrapeInterval"] = "1m"  # Prometheus's default
        src.refresh()
        assert src.pace(1.0) == 10.0  # never slower than this
    finally:
        src.close()


def test_a_host_that_goes_quiet_stays_listed_with_the_reason():
    state = {"gauges": load("gpuwatch-gauges.json")}
    empty = {"status": "success", "data": {"resultType": "vector", "result": []}}
    t = _transport({"label_replace": httpx.Response(200, json=empty),
                    "__name__=~": lambda: httpx.Response(200, json=state["gauges"])})
    src = FleetSource("http://prom:9090", client=PromClient("http://prom:9090", transport=t))
    assert [s.host for s in src.refresh().hosts] == ["boxa"]
    state["gauges"] = empty
    r = src.refresh()
    src.close()
    assert [s.host for s in r.hosts] == ["boxa"] and "no series from boxa" in r.hosts[0].nvml_error


def test_a_restarted_prometheus_listing_no_targets_yet_does_not_make_old_samples_current():
    """A real Prometheus lists no scrape targets for its first seconds after it starts, while it
    already serves the samples it had before it stopped (both answers recorded from Prometheus
    2.42: fixtures/PROVENANCE.md). The interval its targets had when last listed says how old is
    too old (without it: Prometheus's 60 s default, and two-minute-old numbers read as current)."""
    from gpuwatch.fleet.promql import parse_targets

    scraped, started = load("targets-scraped.json"), load("targets-just-started.json")
    (target,) = parse_targets(scraped)
    now = [target.last_scrape + 6.0]
    last = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {NAME_LABEL: "gpuwatch_host_last_sample", "host": "boxa", "instance": target.instance,
                    "job": "gpuwatch"}, "value": [now[0], str(target.last_scrape)]}]}}
    gauges = load("gpuwatch-gauges.json")
    for series in gauges["data"]["result"]:  # the recorded box, behind the recorded target
        series["metric"]["instance"] = target.instance
    state = {"targets": scraped}

    def handler(request: httpx.Request):
        if request.url.path == "/api/v1/targets":
            return httpx.Response(200, json=state["targets"])
        query = dict(httpx.QueryParams(request.content.decode())).get("query", "")
        return httpx.Response(200, json=last if query.startswith("label_replace") else gauges)

    src = FleetSource("http://prom:9090", client=PromClient("http://prom:9090", transport=httpx.MockTransport(handler)),
                      wall=lambda: now[0])
    try:
        assert src.refresh().host("boxa").status.state == "up"
        now[0] += 120  # Prometheus was down two minutes and has just started again
        state["targets"] = started
        snap = src.refresh().host("boxa")
    finally:
        src.close()
    assert snap.status.state == "stale" and "126 s old" in snap.status.reason and "every 15 s" in snap.status.reason
    assert snap.gpus  # the old numbers stay visible, marked
    assert [(a.kind, a.severity) for a in snap.alerts] == [("host_stale", "warning")]


# ---- exporter ----------------------------------------------------------------------------------------
SECRET = "sk-fleet-SECRET-4711"


def _secret_snapshot(rate=100.0):
    g = GPU(index=0, uuid="GPU-x", name="NVIDIA H100", utilization_gpu_pct=50.0, memory_used_bytes=2**30,
            throttle_reasons=["sw_power_cap"], pcie=Pcie(tx_bytes_per_s=rate, rx_bytes_per_s=None),
            processes=[Process(pid=1, name="python3", cmdline=f"python3 -m vllm serve --api-key {SECRET}", user="bob")])
    inst = Instance(name="vllm-main", kind="vllm", url=f"http://user:{SECRET}@10.0.0.1:8000", status="error",
                    error=f"401 with key {SECRET}", generation_tokens_per_s=rate, models=[ModelInfo(name="m")],
                    gpus=[0], gpu_memory_bytes={"0": 2**30}, parallelism="single", parallel_size=1)
    return Snapshot(time="2026-11-23T10:00:00.000Z", host="box", gpus=[g], instances=[inst],
                    alerts=[Alert(kind="power_cap", severity="warning", subject="GPU 0", message=f"see {SECRET}")])


def test_exporter_text_has_no_command_lines_keys_or_urls_and_counters_integrate():
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from gpuwatch.frontends.exporter import _Integrator, _LastSnapshotCollector, build_families

    reg = CollectorRegistry(auto_describe=False)
    col = _LastSnapshotCollector()
    reg.register(col)
    integ = _Integrator()
    col.set(build_families(_secret_snapshot(), integ, 1000.0, host="box-a"))
    col.set(build_families(_secret_snapshot(), integ, 1002.0, host="box-a"))
    text = generate_latest(reg).decode()
    assert SECRET not in text and "api-key" not in text and "python3 -m" not in text and "bob" not in text
    assert "10.0.0.1" not in text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    key = ("gpuwatch_gpu_pcie_tx_bytes_total", (("gpu", "0"), ("host", "box-a"), ("uuid", "GPU-x")))
    assert samples[key] == pytest.approx(200.0)  # 100 B/s x 2 s
    assert samples[("gpuwatch_gpu_throttle_reason", (("gpu", "0"), ("host", "box-a"), ("reason", "sw_power_cap"),
                                                     ("uuid", "GPU-x")))] == 1
    assert samples[("gpuwatch_alert", (("host", "box-a"), ("kind", "power_cap"), ("severity", "warning"),
                                       ("subject", "GPU 0")))] == 1
    assert samples[("gpuwatch_instance_up", (("host", "box-a"), ("instance_name", "vllm-main"), ("kind", "vllm")))] == 0


@pytest.mark.parametrize("text, want", [
    ("127.0.0.1:9835", ("127.0.0.1", 9835)), ("0.0.0.0:1", ("0.0.0.0", 1)), ("[::1]:9835", ("::1", 9835)),
    (":9000", ("127.0.0.1", 9000)), ("localhost:9835", ("127.0.0.1", 9835)),
])
def test_listen_values(text, want):
    from gpuwatch.cli.parser import parse_listen
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["9835", "host:9835", "1.2.3.4:x", "1.2.3.4:70000", "::1:9835", "[::1]9835"])
def test_bad_listen_values(text):
    from gpuwatch.cli.parser import parse_listen
    with pytest.raises(ValueError, match="invalid --listen"):
        parse_listen(text)
