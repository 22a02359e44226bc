"""Each engine's numbers as a user sees them: tok/s from counters growing at known rates,
latency quantiles from histogram deltas, KV-cache %, Ollama's CPU offload from the real
/api/ps example, restarts, and detection of the engine behind a bare URL."""

from __future__ import annotations

import json

import pytest
from _instances_servers import FIXTURES, Counters, fixture, histogram_lines

from gpuwatch.collect.engines import names
from gpuwatch.collect.engines.base import split_selector
from gpuwatch.collect.instances import BackendConfig, InstanceCollector

INF = float("inf")


def collector(urls_kinds, clock, **kw):
    backends = [BackendConfig(url=u, kind=k) for u, k in urls_kinds]
    # no server here hangs: a generous timeout only keeps a loaded machine from turning a slow
    # answer (engine detection asks several paths) into "no answer"
    kw.setdefault("timeout_s", 10.0)
    return InstanceCollector(backends, discover=False, clock=clock.now, **kw)


# ---- vLLM -------------------------------------------------------------------------------------

class VllmState:
    """A vLLM /metrics body built from the real series names (fixture), two model label sets."""

    def __init__(self, clock, old_names=False):
        self.c = Counters(clock, gen=150.0, prompt=600.0, preempt=0.5, hits=300.0, queries=600.0)
        self.kv = (0.42, 0.17)  # per label set
        self.ttft = {0.1: 100, 0.5: 100, 1.0: 100, INF: 100}
        self.itl = {0.01: 1000, 0.05: 1000, 0.1: 1000, INF: 1000}
        self.old = old_names

    def body(self, handler=None):
        real = set(fixture("vllm-metric-names-subset.txt").split())
        kv_name = "vllm:gpu_cache_usage_perc" if self.old else "vllm:kv_cache_usage_perc"
        itl_name = "vllm:time_per_output_token_seconds" if self.old else "vllm:inter_token_latency_seconds"
        lines = []
        for i, model in enumerate(("llama-8b", "qwen-7b")):
            lb = f'engine="{i}",model_name="{model}"'
            half = lambda v: v / 2  # noqa: E731 - each label set holds half of the totals
            values = {
                "vllm:num_requests_running": 3 + i, "vllm:num_requests_waiting": 1,
                kv_name: self.kv[i],
                "vllm:generation_tokens_total": half(self.c.value("gen")),
                "vllm:prompt_tokens_total": half(self.c.value("prompt")),
                "vllm:num_preemptions_total": half(self.c.value("preempt")),
                "vllm:prefix_cache_hits_total": half(self.c.value("hits")),
                "vllm:prefix_cache_queries_total": half(self.c.value("queries")),
                "vllm:request_success_total": 7,
            }
            for name, v in values.items():
                assert self.old or name in real, name  # the body uses real series names
                lines.append(f"{name}{{{lb}}} {v}")
            # only label set 0 has observations, label set 1 has empty histograms
            zero = {k: 0 for k in self.ttft}
            lines += histogram_lines("vllm:time_to_first_token_seconds", self.ttft if i == 0 else zero, lb)
            lines += histogram_lines(itl_name, self.itl if i == 0 else {k: 0 for k in self.itl}, lb)
            lines.append(f'vllm:generation_tokens_created{{{lb}}} 1.7e9')
        return "\n".join(lines) + "\n"


def test_vllm_rates_kv_models_and_latency_from_bucket_deltas(clock, servers):
    st = VllmState(clock)
    srv = servers({"/metrics": st.body, "/version": {"version": "0.11.0"}})
    with collector([(srv.url, "vllm")], clock) as c:
        first = c.collect()[0]
        assert first.status == "up"
        assert first.generation_tokens_per_s is None  # no rate without a previous poll
        # first poll: latency over everything observed so far (all under 0.1 s)
        assert first.ttft_p50_s is not None and first.ttft_p50_s <= 0.1

        clock.advance(2.0)
        st.ttft = {0.1: 100, 0.5: 100, 1.0: 110, INF: 110}  # 10 new requests, all 0.5..1 s
        st.itl = {0.01: 1000, 0.05: 1100, 0.1: 1100, INF: 1100}  # 100 new tokens, 10..50 ms
        inst = c.collect()[0]

    assert inst.generation_tokens_per_s == pytest.approx(150.0, rel=0.02)
    assert inst.prompt_tokens_per_s == pytest.approx(600.0, rel=0.02)
    assert inst.preemptions_per_s == pytest.approx(0.5, rel=0.02)
    assert inst.prefix_cache_hit_pct == pytest.approx(50.0, rel=0.02)
    assert inst.requests_running == 7 and inst.requests_waiting == 2  # summed over both models
    assert inst.kv_cache_usage_pct == pytest.approx(42.0)  # the fullest engine, as a percentage
    assert [m.name for m in inst.models] == ["llama-8b", "qwen-7b"]
    assert inst.version == "0.11.0"
    # only the 10 new requests count: p50 in the middle of the 0.5..1 s bucket
    assert inst.ttft_p50_s == pytest.approx(0.75)
    assert inst.ttft_p95_s == pytest.approx(0.975)
    assert inst.itl_p50_s == pytest.approx(0.03)
    assert inst.itl_p95_s == pytest.approx(0.048)


def test_vllm_older_metric_names_still_read(clock, servers):
    st = VllmState(clock, old_names=True)
    srv = servers({"/metrics": st.body})
    with collector([(srv.url, "vllm")], clock) as c:
        c.collect()
        clock.advance(1.0)
        st.itl = {0.01: 1000, 0.05: 1000, 0.1: 1010, INF: 1010}
        inst = c.collect()[0]
    assert inst.kv_cache_usage_pct == pytest.approx(42.0)
    assert inst.itl_p50_s == pytest.approx(0.075)
    assert inst.version is None  # no /version endpoint: unknown, not an error
    assert inst.status == "up"


def test_restart_gives_no_rate_then_recovers(clock, servers):
    st = VllmState(clock)
    srv = servers({"/metrics": st.body})
    with collector([(srv.url, "vllm")], clock) as c:
        c.collect()
        clock.advance(5.0)
        assert c.collect()[0].generation_tokens_per_s == pytest.approx(150.0, rel=0.02)
        clock.advance(1.0)
        st.c.restart()
        clock.advance(1.0)  # counters are now far below their last value
        st.ttft = {0.1: 0, 0.5: 4, 1.0: 4, INF: 4}  # histograms restarted too: 4 requests since
        restarted = c.collect()[0]
        clock.advance(2.0)
        after = c.collect()[0]
    assert restarted.status == "up"
    assert restarted.generation_tokens_per_s is None and restarted.prompt_tokens_per_s is None
    assert restarted.ttft_p50_s == pytest.approx(0.3)  # the 4 requests since the restart
    assert after.generation_tokens_per_s == pytest.approx(150.0, rel=0.02)


# ---- llama.cpp -----------------------------------------------------------------------------

def llamacpp_body(c: Counters):
    real = fixture("llamacpp-metric-names.txt").split()
    values = {
        "llamacpp:tokens_predicted_total": c.value("gen"),
        "llamacpp:prompt_tokens_total": c.value("prompt"),
        "llamacpp:predicted_tokens_seconds": 9999.0,  # reset on every scrape: must be ignored
        "llamacpp:prompt_tokens_seconds": 9999.0,
        "llamacpp:requests_processing": 2,
        "llamacpp:requests_deferred": 1,
    }
    return "\n".join(f"{n} {values.get(n, 1.0)}" for n in real) + "\n"


PROPS = {"default_generation_settings": {"n_ctx": 16384}, "total_slots": 4,
         "model_path": "/models/qwen2.5-coder-7b-instruct-q8_0.gguf", "build_info": "b6500-abc"}


def test_llamacpp_tok_s_from_counters_slots_and_props(clock, servers):
    c = Counters(clock, gen=42.0, prompt=300.0)
    srv = servers({"/metrics": lambda h: llamacpp_body(c), "/props": PROPS,
                   "/slots": [{"id": i, "is_processing": i < 3} for i in range(4)]})
    with collector([(srv.url, "llamacpp")], clock) as col:
        col.collect()
        clock.advance(3.0)
        inst = col.collect()[0]
    assert inst.generation_tokens_per_s == pytest.approx(42.0, rel=0.02)
    assert inst.prompt_tokens_per_s == pytest.approx(300.0, rel=0.02)
    assert (inst.requests_running, inst.requests_waiting) == (2, 1)
    # busy slots are the processing requests of /metrics; the slot count comes from /props
    assert (inst.slots_busy, inst.slots_total) == (2, 4)
    assert inst.models[0].name == "qwen2.5-coder-7b-instruct-q8_0"  # the file's stem, as clients name it
    assert inst.models[0].context_length == 16384
    assert inst.version == "b6500-abc"
    paths = [p for _, p, _ in srv.requests]
    # requests are running: /slots is read for the tokens they generated so far
    assert paths.count("/metrics") >= 2 and "/slots" in paths


def test_llamacpp_props_are_asked_rarely_and_again_after_a_restart(clock, servers):
    """/props (model, build) is read once per 15 s, not on every tick -- and at once when the
    server comes back from being down, since it may come back with another model."""
    c = Counters(clock, gen=10.0, prompt=10.0)
    props = dict(PROPS)
    srv = servers({"/metrics": lambda h: llamacpp_body(c), "/props": lambda h: props})
    with collector([(srv.url, "llamacpp")], clock) as col:
        for _ in range(5):
            col.collect()
            clock.advance(1.0)
        assert [p for _, p, _ in srv.requests].count("/props") == 1
        clock.advance(15.0)
        col.collect()
        assert [p for _, p, _ in srv.requests].count("/props") == 2
        # down for a tick, back with another model and build: shown on the first tick back
        srv.routes["/metrics"] = (500, "boom")
        srv.routes["/props"] = (500, "boom")
        assert col.collect()[0].status != "up"
        srv.routes["/metrics"] = lambda h: llamacpp_body(c)
        srv.routes["/props"] = lambda h: props
        props.update(model_path="/models/llama-3.1-8b-q4.gguf", build_info="b7000-new")
        clock.advance(1.0)
        inst = col.collect()[0]
    assert inst.status == "up" and inst.version == "b7000-new"
    assert inst.models[0].name == "llama-3.1-8b-q4"


def test_llamacpp_without_metrics_reads_slots(clock, servers):
    srv = servers({"/metrics": (501, "This server does not support metrics endpoint."), "/props": PROPS,
                   "/slots": [{"id": i, "is_processing": i < 3} for i in range(4)]})
    with collector([(srv.url, "llamacpp")], clock) as col:
        inst = col.collect()[0]
    assert inst.status == "up" and (inst.slots_busy, inst.slots_total) == (3, 4)
    assert inst.generation_tokens_per_s is None


def test_llamacpp_without_metrics_or_slots_endpoint_is_still_up(clock, servers):
    srv = servers({"/metrics": (501, "This server does not support metrics endpoint."), "/props": PROPS,
                   "/slots": (501, '{"error": {"message": "This server does not support slots endpoint."}}')})
    with collector([(srv.url, "llamacpp")], clock) as col:
        inst = col.collect()[0]
    assert inst.status == "up" and inst.slots_busy is None and inst.slots_total == 4
    assert inst.models[0].name == "qwen2.5-coder-7b-instruct-q8_0"


# ---- SGLang --------------------------------------------------------------------------------

def test_sglang_tok_s_queue_and_token_usage(clock, servers):
    real = set(fixture("sglang-metric-names.txt").split())
    c = Counters(clock, gen=900.0, prompt=2500.0)
    ttft = {"v": {0.1: 50, 0.25: 50, INF: 50}}

    def body(h):
        lb = 'model_name="mistralai/Mistral-7B-Instruct-v0.3"'
        values = {"sglang:generation_tokens_total": c.value("gen"), "sglang:prompt_tokens_total": c.value("prompt"),
                  "sglang:num_running_reqs": 12, "sglang:num_queue_reqs": 5, "sglang:token_usage": 0.61,
                  "sglang:gen_throughput": 880.0}
        lines = [f"{n}{{{lb}}} {v}" for n, v in values.items() if n in real]
        lines += histogram_lines("sglang:time_to_first_token_seconds", ttft["v"], lb)
        return "\n".join(lines) + "\n"

    srv = servers({"/metrics": body, "/get_server_info": {"version": "0.5.3"}})
    with collector([(srv.url, "sglang")], clock) as col:
        col.collect()
        clock.advance(2.0)
        ttft["v"] = {0.1: 50, 0.25: 60, INF: 60}
        inst = col.collect()[0]
    # SGLang's token counters move when requests finish; its gen_throughput gauge is the live
    # decode rate (names.SGLANG), so that is what is shown
    assert inst.generation_tokens_per_s == pytest.approx(880.0)
    assert inst.prompt_tokens_per_s == pytest.approx(2500.0, rel=0.02)
    assert (inst.requests_running, inst.requests_waiting) == (12, 5)
    assert inst.kv_cache_usage_pct == pytest.approx(61.0)
    assert inst.ttft_p50_s == pytest.approx(0.175)
    assert inst.models[0].name == "mistralai/Mistral-7B-Instruct-v0.3"
    assert inst.version == "0.5.3"


# ---- Ollama --------------------------------------------------------------------------------

def test_ollama_offload_from_real_api_ps_example(clock, servers):
    srv = servers({"/api/version": fixture("ollama-api-version-docs.json"),
                   "/api/ps": fixture("ollama-api-ps-openapi-example.json")})
    with collector([(srv.url, "ollama")], clock) as col:
        inst = col.collect()[0]
    assert inst.status == "up" and inst.version == "0.5.1"
    m = inst.models[0]
    assert m.name == "gemma4" and m.size_bytes == 6591830464 and m.size_vram_bytes == 5333539264
    # 1.26 GB of 6.59 GB on the CPU: what `ollama ps` shows as 19%/81% CPU/GPU
    assert m.cpu_offload_pct == pytest.approx(19.09, abs=0.01)
    assert m.context_length == 4096
    assert m.expires_at == "2025-10-17T16:47:07.93355-07:00"
    assert m.quantization == "Q4_K_M" and m.parameter_size == "8.0B"
    assert inst.generation_tokens_per_s is None  # Ollama has no counters


def test_ollama_fully_on_gpu_shows_no_offload(clock, servers):
    srv = servers({"/api/version": {"version": "0.12.6"}, "/api/ps": fixture("ollama-api-ps-docs.json")})
    with collector([(srv.url, "ollama")], clock) as col:
        inst = col.collect()[0]
    assert inst.models[0].cpu_offload_pct == 0.0
    assert inst.models[0].context_length is None  # pre-0.10 shape has no context_length


# ---- detection -----------------------------------------------------------------------------

def test_engine_detected_from_a_bare_url(clock, servers):
    c = Counters(clock, gen=1.0, prompt=1.0)
    vllm = servers({"/metrics": VllmState(clock).body, "/version": {"version": "0.11.0"}})
    llama = servers({"/metrics": lambda h: llamacpp_body(c), "/props": PROPS})
    llama_nometrics = servers({"/metrics": (501, "This server does not support metrics endpoint."), "/props": PROPS})
    sglang = servers({"/metrics": "sglang:num_running_reqs 1\nsglang:token_usage 0.2\n"})
    ollama = servers({"/api/version": {"version": "0.5.1"}, "/api/ps": {"models": []}, "/": "Ollama is running"})
    other = servers({"/": "<html>hello</html>"})
    urls = [vllm.url, llama.url, llama_nometrics.url, sglang.url, ollama.url, other.url]
    with collector([(u, None) for u in urls], clock) as col:
        got = {i.url: i for i in col.collect()}
    assert [got[u].kind for u in urls] == ["vllm", "llamacpp", "llamacpp", "sglang", "ollama", "unknown"]
    assert all(got[u].status == "up" for u in urls[:5])
    assert got[other.url].status == "error" and "not a recognised" in got[other.url].error


def test_every_current_metric_name_exists_in_a_real_scrape():
    """The names the tables read first are the ones real servers export today (fixtures);
    a rename upstream makes this fail instead of silently showing blanks."""
    real = {
        "vllm": set(fixture("vllm-metric-names-subset.txt").split()),
        # every series of a real llama-server b11434 (tests/fixtures/real/llamacpp-b11434/)
        "llamacpp": {line.split()[0] for line in fixture("real/llamacpp-b11434/llamacpp-b11434-metrics-idle.txt")
                     .splitlines() if line and not line.startswith("#")},
        "sglang": set(fixture("sglang-metric-names.txt").split()),
        "tgi": set(fixture("real/engines/tgi-metric-names.txt").split()),
        "ollama": set(fixture("ollama-metric-names-prs.txt").split()),  # unmerged PRs (issue 14)
    }
    old_only = {("llamacpp", "kv_cache_fraction")}  # removed from llama.cpp in 2025
    # opt-in or newer than the recorded scrapes (the source is cited in names.py)
    not_in_scrape = {("vllm", "flops_per_gpu"), ("vllm", "read_bytes_per_gpu"),  # --enable-mfu-metrics
                     ("sglang", "generation_tokens_iter"),  # realtime_tokens_total: newer SGLang
                     ("sglang", "flops_per_gpu"), ("sglang", "read_bytes_per_gpu")}  # --enable-mfu-metrics
    for kind, table in names.METRICS.items():
        for key, candidates in table.items():
            bare = [split_selector(n)[0] for n in candidates]
            if (kind, key) in old_only:
                assert not any(n in real[kind] for n in bare)
                continue
            if (kind, key) in not_in_scrape:
                continue
            present = [n for n in bare if n in real[kind] or n + "_bucket" in real[kind]]
            assert present, f"{kind}.{key}: none of {candidates} in the real scrape"


def test_fixture_provenance_lists_every_fixture():
    text = (FIXTURES / "PROVENANCE.md").read_text()
    for f in FIXTURES.iterdir():
        if f.name != "PROVENANCE.md" and f.name != "real":
            assert f"`{f.name}`" in text, f.name
    json.loads(fixture("ollama-api-ps-openapi-example.json"))


def test_instance_modules_do_not_pull_in_textual():
    import subprocess
    import sys

    code = ("import sys, gpuwatch.collect.instances, gpuwatch.collect.bench, gpuwatch.analysis.groups, "
            "gpuwatch.sim.servers, gpuwatch.sim.procs; print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_malformed_wanted_series_is_an_error_not_a_crash(clock, servers):
    srv = servers({"/metrics": 'vllm:num_requests_running{model_name="m"} twelve\n'})
    with collector([(srv.url, "vllm")], clock) as col:
        inst = col.collect()[0]
    assert inst.status == "error" and "unparseable Prometheus text from /metrics" in inst.error


def test_junk_on_a_known_series_is_an_error_too(clock, servers):
    """Once a series is known its labels are reused and only the value read: a junk value on
    the next scrape must still be an error, not a stale or zero reading."""
    body = {"v": 'vllm:num_requests_running{model_name="m"} 3\n'}
    srv = servers({"/metrics": lambda h: body["v"]})
    with collector([(srv.url, "vllm")], clock) as col:
        assert col.collect()[0].requests_running == 3
        body["v"] = 'vllm:num_requests_running{model_name="m"} twelve\n'
        clock.advance(1.0)
        inst = col.collect()[0]
        assert inst.status == "error" and "unparseable" in inst.error
        body["v"] = 'vllm:num_requests_running{model_name="m"} 5 1700000000000\n'  # with a timestamp
        clock.advance(1.0)
        assert col.collect()[0].requests_running == 5


def test_reused_series_read_the_same_as_a_fresh_parse():
    """Scrape after scrape with changing values, series coming and going, labels containing
    braces and spaces: the memo path gives exactly what prometheus_client gives from scratch."""
    import random

    from gpuwatch.collect.engines import ENGINES
    from gpuwatch.collect.engines.base import PromScrape

    wanted = ENGINES["vllm"].wanted
    rng = random.Random(7)
    models = ['meta-llama/Llama-3.3-70B-Instruct', 'odd} name with "quotes" and {braces}']
    memo: dict = {}
    for step in range(30):
        lines = ["# HELP vllm:num_requests_running running", "# TYPE vllm:num_requests_running gauge"]
        for m in models[: 1 + step % 2]:  # the second model comes and goes
            esc = m.replace('"', '\\"')
            lines.append(f'vllm:num_requests_running{{model_name="{esc}"}} {rng.randint(0, 40)}')
            lines.append(f'vllm:generation_tokens_total{{model_name="{esc}"}} {1000.0 * step + rng.random()}')
            for le in ("0.01", "0.1", "1.0", "+Inf"):
                lines.append(f'vllm:inter_token_latency_seconds_bucket{{le="{le}",model_name="{esc}"}} '
                             f'{rng.choice(["NaN", "+Inf", str(rng.random())]) if le == "0.01" else step * 10}')
        lines.append("process_cpu_seconds_total 12.5")
        text = "\n".join(lines) + "\n"
        fresh = PromScrape(text, wanted=wanted)
        reused = PromScrape(text, wanted=wanted, series=memo)
        assert repr(reused.samples) == repr(fresh.samples)  # repr: NaN != NaN
        assert reused.names == fresh.names
        assert len(memo) == len([ln for ln in lines if ln.startswith("vllm:")])  # only this scrape's series


@pytest.mark.parametrize("indent", ["", "  "])
def test_the_wanted_lines_are_the_samples_a_full_parse_reads(indent):
    """The lines gpuwatch reads are picked from a page by one pattern before any parsing
    (``base._wanted_lines``); they must give exactly the samples prometheus_client reads from the
    whole page, on pages with a wanted name that starts another name, CRLF line ends, comments
    naming wanted series, unlabelled samples, the first and last lines wanted, and (rare) lines
    with leading blanks."""
    from gpuwatch.collect.engines import ENGINES
    from gpuwatch.collect.engines.base import PromScrape

    wanted = ENGINES["vllm"].wanted
    lines = [
        'vllm:num_requests_waiting{model_name="m"} 2',  # the first line
        "# HELP vllm:num_requests_running Number of requests running",
        'vllm:num_requests_running{model_name="m",engine="0"} 3\r',
        'vllm:num_requests_running_total_extra{model_name="m"} 99',  # starts with a wanted name
        'vllm:num_requests_runningx 98',
        "",
        'vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 5',
        'vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 7',
        "process_cpu_seconds_total 12.5",
        'vllm:generation_tokens_total 1234',  # no labels
        'vllm:num_requests_waiting{model_name="other"} 4',  # the last line, no newline after it
    ]
    text = "\n".join(indent + line for line in lines)
    everything = PromScrape(text)
    expect = {name: got for name, got in everything.samples.items() if name in wanted}
    assert set(expect) == {"vllm:num_requests_waiting", "vllm:num_requests_running",
                           "vllm:time_to_first_token_seconds_bucket", "vllm:generation_tokens_total"}
    picked = PromScrape(text, wanted=wanted)
    assert picked.samples == expect
    assert picked.has_prefix("vllm:") and not picked.has_prefix("sglang:")
    # the same page scrape after scrape (the series memo) reads the same
    memo: dict = {}
    for _ in range(2):
        assert PromScrape(text, wanted=wanted, series=memo).samples == expect
