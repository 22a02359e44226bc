"""nginx upstreams as replica pools: reading the config (crossplane), resolving members to
instances (directly and through meter routes), shares over the window, and the pool half of
``replica_imbalance``."""

from __future__ import annotations

import json
import os

import pytest

from _tables import EmptyProcessTable
from alerts_support import T0, Feed, gpu, inst, snap
from gpuwatch.analysis.pools import PoolAnalysis, model_key
from gpuwatch.collect.nginx import NginxPools, member_url, nginx_seconds, read_nginx_conf
from gpuwatch.model import Snapshot

MAIN = """\
user www-data;
events { worker_connections 64; }
http {
    include conf.d/*.conf;
    server { listen 8081; location /web { proxy_pass http://webapp; } }
}
"""
LLM = """\
# three Ollama instances, one per GPU
upstream llm_backends {
    least_conn;
    server 127.0.0.1:11434 weight=2 max_fails=3 fail_timeout=30s;
    server localhost:11435;
    server 127.0.0.1:11436;
    server 127.0.0.1:11437 backup;
    server unix:/run/ollama.sock down;
    keepalive 16;
}
upstream secure { ip_hash; server [::1]:8443; }
upstream webapp { server 10.0.0.5:3000; }
server { listen 8080; location / { proxy_pass http://llm_backends; }
         location /s { proxy_pass https://secure; } }
"""


@pytest.fixture
def conf(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "nginx.conf").write_text(MAIN)
    (tmp_path / "conf.d" / "llm.conf").write_text(LLM)
    return tmp_path


# ---- reading ------------------------------------------------------------------------------------
def test_upstreams_are_read_through_includes_with_their_parameters(conf):
    pools, files, error = read_nginx_conf(str(conf / "nginx.conf"))
    assert error is None
    assert str(conf / "conf.d" / "llm.conf") in files
    by = {p.name: p for p in pools}
    assert set(by) == {"llm_backends", "secure", "webapp"}
    llm = by["llm_backends"]
    assert llm.method == "least_conn" and llm.source == f"{conf / 'conf.d' / 'llm.conf'}:2"
    urls = [m.url for m in llm.members]
    assert urls == ["http://127.0.0.1:11434", "http://localhost:11435", "http://127.0.0.1:11436",
                    "http://127.0.0.1:11437", "unix:/run/ollama.sock"]
    first, _, _, backup, down = llm.members
    assert (first.weight, first.max_fails, first.fail_timeout_s) == (2, 3, 30.0)
    assert (llm.members[1].weight, llm.members[1].max_fails, llm.members[1].fail_timeout_s) == (1, 1, 10.0)
    assert backup.backup and not backup.down and down.down
    assert by["secure"].method == "ip_hash" and by["secure"].members[0].url == "https://[::1]:8443"
    assert by["webapp"].method == "round_robin"


def test_a_broken_file_is_named_in_one_line(tmp_path):
    (tmp_path / "nginx.conf").write_text("http { upstream x { server 127.0.0.1:1; }\n")  # missing }
    pools, _, error = read_nginx_conf(str(tmp_path / "nginx.conf"))
    assert error is not None and "nginx.conf" in error and "\n" not in error


def test_the_config_is_read_again_when_a_file_changes(conf):
    clock = [0.0]
    pools = NginxPools(str(conf / "nginx.conf"), recheck_s=10, clock=lambda: clock[0])
    assert len(pools.collect()[0].members) == 5
    llm = conf / "conf.d" / "llm.conf"
    llm.write_text(LLM.replace("    server 127.0.0.1:11436;\n", ""))
    os.utime(llm, (1, 1))  # a different mtime whatever the file system's resolution
    assert len(pools.collect()[0].members) == 5  # not looked at before recheck_s
    clock[0] = 11
    assert len(pools.collect()[0].members) == 4


def test_a_missing_default_config_is_no_nginx_and_an_explicit_one_is_an_error(tmp_path):
    assert NginxPools(str(tmp_path / "none.conf")).collect() == []
    explicit = NginxPools(str(tmp_path / "none.conf"), required=True)
    assert explicit.collect() == [] and "does not exist" in explicit.error


def test_nginx_addresses_and_times():
    assert member_url("127.0.0.1") == "http://127.0.0.1:80"
    assert member_url("[::1]:11434") == "http://[::1]:11434"
    assert (nginx_seconds("1m30s"), nginx_seconds("500ms"), nginx_seconds("10"), nginx_seconds("x")) == (90, 0.5, 10, None)


# ---- model names -----------------------------------------------------------------------------------
@pytest.mark.parametrize("a,b", [
    ("llama3", "llama3:latest"),
    ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b-instruct"),
    ("registry.ollama.ai/library/llama3:latest", "llama3"),
    ("hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M", "llama-3.2-3b-instruct-gguf:q4_k_m"),
    ("/models/qwen2.5-coder-7b-instruct-q8_0.gguf", "qwen2.5-coder-7b-instruct-q8_0"),
])
def test_replicas_of_one_model_are_recognised_across_spellings(a, b):
    assert model_key(a) == model_key(b)


def test_different_tags_are_different_models():
    assert model_key("llama3:8b-q4_0") != model_key("llama3:8b-q8_0")
    assert model_key(None) is None and model_key("  ") is None


# ---- resolving and shares ------------------------------------------------------------------------------
def ollama(name, port, gpus, **kw):
    kw.setdefault("model", "llama3.1:8b")
    return inst(name, gpus, kind="ollama", url=f"http://127.0.0.1:{port}", parallelism="single", **kw)


def pool_snapshot(conf, t, instances):
    pools, _, _ = read_nginx_conf(str(conf / "nginx.conf"))
    return snap(t, gpus=[gpu(i) for i in range(4)], instances=instances, pools=pools)


def test_members_resolve_directly_and_through_meter_routes_and_foreign_upstreams_are_dropped(conf):
    analysis = PoolAnalysis(routes=lambda: {"http://127.0.0.1:11436": "http://127.0.0.1:21436"})
    s = analysis(pool_snapshot(conf, T0, [ollama("ollama-0", 11434, [0]), ollama("ollama-1", 11435, [1]),
                                          ollama("ollama-2", 21436, [2], model="library/llama3.1:8b")]))
    assert [p.name for p in s.pools] == ["llm_backends"]  # secure and webapp front nothing watched
    (pool,) = s.pools
    members = {m.url: m for m in pool.members}
    assert members["http://127.0.0.1:11434"].instance == "ollama-0"
    assert members["http://localhost:11435"].instance == "ollama-1"
    third = members["http://127.0.0.1:11436"]
    assert third.instance == "ollama-2" and third.via == "http://127.0.0.1:11436"
    assert members["http://127.0.0.1:11437"].instance is None
    assert pool.model == "llama3.1:8b"  # library/llama3.1:8b is the same model
    assert [round(m.weight_share, 2) for m in pool.members] == [0.5, 0.25, 0.25, 0.0, 0.0]
    # and it survives the JSON round trip of recordings and replay
    back = Snapshot.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back.pools == s.pools


def test_shares_are_taken_over_the_window(conf):
    analysis = PoolAnalysis(window_s=60)
    last = None
    for k in range(90):
        busy = 6.0 if k < 30 else 2.0  # ollama-0 is busy early on only: it leaves the window
        insts = [ollama("ollama-0", 11434, [0], requests_running=busy, generation_tokens_per_s=300.0),
                 ollama("ollama-1", 11435, [1], requests_running=2.0, generation_tokens_per_s=100.0,
                        requests_per_s=None if k < 80 else 1.0),
                 ollama("ollama-2", 11436, [2], requests_running=0.0, generation_tokens_per_s=0.0)]
        last = analysis(pool_snapshot(conf, T0 + k, insts))
    m = {x.instance: x for x in last.pools[0].members}
    assert m["ollama-0"].running_share == pytest.approx(0.5)
    assert m["ollama-2"].running_share == 0.0
    assert m["ollama-0"].token_share == pytest.approx(0.75)
    assert m["ollama-0"].request_share is None  # nothing counts its requests
    assert m["ollama-1"].request_share == 1.0  # the only member whose requests are counted
    assert last.pools[0].window_s == 60


# ---- the alert ----------------------------------------------------------------------------------------
def feed(conf, make, **kw):
    analysis = PoolAnalysis(window_s=60)
    return Feed(lambda t: analysis(pool_snapshot(conf, T0 + t, make(t))), **kw)


def only_pool(alerts):
    return [a for a in alerts if a.kind == "replica_imbalance" and a.subject == "pool llm_backends"]


def balanced(t, third_up=True, gpus=(0, 1, 2)):
    third = ollama("ollama-2", 11436, [gpus[2]], requests_running=2.0)
    if not third_up:
        third.status, third.error, third.requests_running = "down", "connection refused", None
    return [ollama("ollama-0", 11434, [gpus[0]], requests_running=4.0),
            ollama("ollama-1", 11435, [gpus[1]], requests_running=2.0), third]


def running(r0, r1, r2):
    """Every tick: the pool's three replicas (weights 2:1:1), with these requests running."""
    return lambda t: [ollama("ollama-0", 11434, [0], requests_running=r0),
                      ollama("ollama-1", 11435, [1], requests_running=r1),
                      ollama("ollama-2", 11436, [2], requests_running=r2)]


def test_a_listed_replica_that_is_down_raises_the_pool_alert_naming_it(conf):
    f = feed(conf, lambda t: balanced(t, third_up=t < 20))
    assert only_pool(f.run(20)) == []
    [a] = only_pool(f.run(15))
    assert a.message.startswith("pool llm_backends runs on 2 of 3 replicas: ollama-2 (down: connection refused)")
    assert "max_fails=1 in 10 s" in a.message and "llm.conf:2" in a.message


def test_a_replica_with_nothing_listening_counts_as_down(conf):
    f = feed(conf, lambda t: balanced(t)[:2])
    [a] = only_pool(f.run(15))
    assert "2 of 3 replicas" in a.message and "http://127.0.0.1:11436 (no inference server answers there)" in a.message


def test_a_meter_route_with_no_server_behind_it_is_named_as_such(conf):
    analysis = PoolAnalysis(window_s=60, routes=lambda: {"http://127.0.0.1:11436": "http://127.0.0.1:21436"})
    f = Feed(lambda t: analysis(pool_snapshot(conf, T0 + t, balanced(t)[:2])))
    [a] = only_pool(f.run(15))
    assert "http://127.0.0.1:11436 (no inference server answers behind this meter route)" in a.message


def test_balanced_pool_raises_nothing(conf):
    f = feed(conf, balanced)
    f.run(90)
    assert only_pool(f.ever("replica_imbalance")) == []


def test_shares_departing_from_weights_under_load(conf):
    # weight 2:1:1 asks for 50/25/25 % of the running requests; ollama-1 gets none
    f = feed(conf, running(6.0, 0.0, 3.0))
    [a] = only_pool(f.run(30))
    assert "ollama-1 takes 0 % of the running requests (weight 1 of 4: 25 %)" in a.message
    assert "max_fails=1" in a.message


def test_least_conn_at_low_concurrency_is_not_an_imbalance(conf):
    """Three requests over weights 2:1:1: least_conn runs one on each replica (a third each, 50 %
    asked of ollama-0): as close as three whole requests get. Off by a whole request, it is."""
    f = feed(conf, running(1.0, 1.0, 1.0))
    f.run(60)
    assert only_pool(f.ever("replica_imbalance")) == []
    # three running, none on ollama-0: a whole request and a half from its weight
    [a] = only_pool(feed(conf, running(0.0, 2.0, 1.0)).run(30))
    assert "ollama-0 takes 0 % of the running requests (weight 2 of 4: 50 %)" in a.message


def test_an_idle_pool_is_not_judged_on_shares(conf):
    f = feed(conf, running(1.0, 0.0, 0.0))
    f.run(60)
    assert only_pool(f.ever("replica_imbalance")) == []


def test_all_replicas_on_one_gpu(conf):
    f = feed(conf, lambda t: balanced(t, gpus=(0, 0, 0)))
    [a] = only_pool(f.run(15))
    assert "all 3 replicas run on GPU 0 while GPU 1, 2, 3 hold none of them" in a.message
    assert "CUDA_VISIBLE_DEVICES" in a.message


def test_a_pooled_replica_is_not_judged_again_by_model(conf):
    # the same load that trips the model-based check (13 vs 0 requests) is the pool's business
    def insts(t):
        return [ollama("ollama-0", 11434, [0], requests_running=4.0, requests_waiting=9.0),
                ollama("ollama-1", 11435, [1], requests_running=0.0, requests_waiting=0.0),
                ollama("ollama-2", 11436, [2], requests_running=4.0)]
    f = feed(conf, insts)
    f.run(20)
    subjects = {a.subject for a in f.ever("replica_imbalance")}
    assert subjects == {"pool llm_backends"}


def test_unpooled_replicas_are_grouped_across_spellings():
    def insts(t):
        return [inst("a", [0], kind="ollama", model="llama3:latest", requests_running=4.0, requests_waiting=9.0),
                inst("b", [1], kind="ollama", model="library/llama3", requests_running=0.0, requests_waiting=0.0)]
    f = Feed(lambda t: snap(T0 + t, gpus=[gpu(0), gpu(1)], instances=insts(t)))
    [a] = [x for x in f.run(12) if x.kind == "replica_imbalance"]
    assert "a carries 13.0" in a.message



def test_meter_routes_are_read_from_the_meters_command_line():
    from gpuwatch.collect.nginx import meter_routes_in

    argv = ["/usr/bin/python3", "/usr/local/bin/gpuwatch", "meter", "--route", "127.0.0.1:11534=http://127.0.0.1:11434",
            "--route=11535=127.0.0.1:11435", "--route", "junk", "--metrics", "127.0.0.1:9836"]
    assert meter_routes_in("python3", argv) == {"http://127.0.0.1:11534": "http://127.0.0.1:11434",
                                     "http://127.0.0.1:11535": "http://127.0.0.1:11435"}
    assert meter_routes_in("nginx", ["nginx", "--route", "1=2"]) == {}


def test_servers_nginx_names_are_looked_for_like_default_ports(conf):
    """An Ollama on 11435 is neither a default port nor (as a stand-in) an `ollama` process:
    listed in an upstream (directly or behind a meter route), it is found and polled."""
    from _instances_servers import free_port
    from gpuwatch.collect.instances import InstanceCollector
    from gpuwatch.collect.nginx import probe_urls
    from gpuwatch.sim.ollama_stream import StreamingOllama

    with StreamingOllama() as direct, StreamingOllama() as behind:
        route = free_port()
        pools, _, _ = read_nginx_conf(str(conf / "nginx.conf"))
        for m in pools[0].members:  # nothing listens on these
            m.url = f"http://127.0.0.1:{free_port()}"
        pools[0].members[1].url = direct.url
        pools[0].members[2].url = f"http://127.0.0.1:{route}"
        urls = probe_urls(pools, {f"http://127.0.0.1:{route}": behind.url})
        assert direct.url in urls and behind.url in urls
        with InstanceCollector([], discover=True, probe_ports=(), discovery_interval_s=0,
                               process_table=EmptyProcessTable(probe_default_ports=False)) as c:
            assert c.collect() == []
            c.probe(urls)
            found = {i.url: i for i in c.collect()}
            assert found[direct.url].kind == "ollama" and found[direct.url].status == "up"
            assert found[behind.url].name == f"ollama:{behind.port}"
            assert len(found) == 2  # members where nothing answers are not shown


def test_vllm_finished_requests_become_a_rate():
    """vLLM's request_success_total (and SGLang's num_requests_total) give requests_per_s, the
    basis of a round-robin pool's request shares."""
    from gpuwatch.runtime import make_sampler
    from gpuwatch.sim.box import ManualClock

    clock = ManualClock()
    sampler = make_sampler(demo="h100x8", clock=clock)
    try:
        sampler.sample(wait_instances=True)
        clock.advance(5.0)
        by = {i.name: i for i in sampler.sample(wait_instances=True).instances}
    finally:
        sampler.close()
    assert by["vllm-llama70b"].requests_per_s > 0 and by["sglang-mistral"].requests_per_s > 0
