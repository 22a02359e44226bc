"""End to end, on loopback: a real nginx (started here) with an upstream of three
``gpuwatch meter`` routes in front of three streaming Ollama stand-ins; clients stream through
nginx; gpuwatch's own pipeline (real process table, real crossplane reading of the config) must
show the pool with its members resolved through the meter, and raise the pool alert naming the
member that was stopped. Skips with the reason where Debian's nginx is not installed
(``.ci/run`` installs nginx-light)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from _instances_servers import free_port
from gpuwatch.analysis.alerts import evaluate_once
from gpuwatch.sim.ollama_stream import StreamingOllama

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light)")

RATE = 40.0  # tokens per second per stream, every stand-in
TOKENS = 30  # per request: 0.75 s streams
WEIGHTS = (2, 1, 1)


def wait_port(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def nginx_conf(prefix, listen: int, routes: list[int]) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p}{f' weight={w}' if w != 1 else ''};"
                        for p, w in zip(routes, WEIGHTS))
    return f"""\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/conf.d/*.conf;
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://llm_backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
""", f"""\
# three Ollama replicas, each behind a gpuwatch meter route
upstream llm_backends {{
    least_conn;
{servers}
    keepalive 16;
}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nginx")
    os.chmod(tmp, 0o755)
    # prompt_eval_count tells the clients which replica answered
    stands = [StreamingOllama(rate_tok_s=RATE, tokens=TOKENS, model="llama3.2:3b", prompt_tokens=26 + i).start()
              for i in range(3)]
    routes = [free_port() for _ in stands]
    metrics = free_port()
    meter = subprocess.Popen(
        [sys.executable, "-m", "gpuwatch", "meter", "--metrics", f"127.0.0.1:{metrics}"]
        + [a for p, s in zip(routes, stands) for a in ("--route", f"127.0.0.1:{p}={s.url}")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    listen = free_port()
    main, pool = nginx_conf(tmp, listen, routes)
    (tmp / "conf.d").mkdir()
    (tmp / "nginx.conf").write_text(main)
    (tmp / "conf.d" / "llm.conf").write_text(pool)
    nginx = None
    try:
        for p in routes:
            wait_port(p)
        nginx = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_port(listen, 10)
        except AssertionError:
            nginx.kill()
            pytest.skip(f"nginx did not start: {nginx.stderr.read()[-300:]}")
        yield {"tmp": tmp, "stands": stands, "routes": routes, "listen": listen, "meter": meter,
               "metrics": f"http://127.0.0.1:{metrics}"}
    finally:
        for proc in (nginx, meter):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for s in stands:
            s.close()


def run_clients(url: str, clients: int, seconds: float) -> dict[int, int]:
    """Stream /api/generate through nginx from ``clients`` threads for ``seconds``; tokens
    received per replica (by its prompt_eval_count)."""
    return {who: len(stamps) for who, stamps in run_timed_clients(url, clients, seconds).items()}


def sampler_for(stack):
    from gpuwatch.runtime import make_sampler

    backends = [f"http://127.0.0.1:{s.port}" for s in stack["stands"]]
    from gpuwatch.collect.targets import BackendConfig

    # the meter as `[[meters]] url = ...` would give it: its figures go to the instances it fronts
    meter = BackendConfig(url=stack["metrics"], kind="meter")
    return make_sampler(backends=[BackendConfig(url=u, name=f"ollama-{i}") for i, u in enumerate(backends)] + [meter],
                        discover=False, nginx_conf=str(stack["tmp"] / "nginx.conf"), pool_window_s=30)


def run_timed_clients(url: str, clients: int, seconds: float) -> dict[int, list[float]]:
    """Like run_clients, with the arrival time (monotonic) of every token chunk, per replica."""
    got: dict[int, list[float]] = {}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client():
        with httpx.Client(timeout=30, trust_env=False) as c:
            while time.monotonic() < end:
                stamps, who = [], None
                with c.stream("POST", url + "/api/generate",
                              json={"model": "llama3.2:3b", "prompt": "hi", "stream": True}) as r:
                    for line in r.iter_lines():
                        if not line:
                            continue
                        chunk = json.loads(line)
                        if chunk.get("done"):
                            who = chunk.get("prompt_eval_count")
                        elif chunk.get("response"):
                            stamps.append(time.monotonic())
                with lock:
                    got.setdefault(who, []).extend(stamps)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return got


def test_live_tok_s_through_the_meter_matches_the_clients_and_shares_track_weights(stack):
    stands = stack["stands"]
    got: dict[int, list[float]] = {}
    seconds = 10.0
    load = threading.Thread(target=lambda: got.update(
        run_timed_clients(f"http://127.0.0.1:{stack['listen']}", 8, seconds)))
    sampler = sampler_for(stack)
    try:
        sampler.sample(wait_instances=True)  # first poll: counters known from here on
        load.start()
        t_start = time.monotonic()
        samples = []  # (monotonic time, snapshot)
        while time.monotonic() - t_start < seconds - 1:
            snap = sampler.sample(wait_instances=True)
            samples.append((time.monotonic(), snap))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - samples[-1][0])))
        load.join(60)
    finally:
        sampler.close()
    steady = samples[2:]  # from the third second on every client is streaming
    assert len(steady) >= 4, "too few samples on this machine"
    a, b = steady[0][0], steady[-1][0]
    for i, stand in enumerate(stands):
        name = f"ollama-{i}"
        counted = 0.0
        for (t0, _), (t1, snap) in zip(steady, steady[1:]):
            inst = next(x for x in snap.instances if x.name == name)
            assert inst.generation_tokens_per_s is not None, f"{name}: no tok/s from the meter"
            counted += inst.generation_tokens_per_s * (t1 - t0)
        received = sum(1 for t in got.get(26 + i, []) if a <= t <= b)
        assert received > 0
        print(f"{name}: gpuwatch {counted / (b - a):.1f} tok/s, clients received {received / (b - a):.1f} tok/s")
        assert counted == pytest.approx(received, rel=0.10), (name, counted / (b - a), received / (b - a))
    (pool,) = samples[-1][1].pools
    for m in pool.members:  # least_conn with weights 2:1:1: running requests 50/25/25 %
        print(f"{m.instance}: weight share {m.weight_share:.2f}, running {m.running_share:.2f}, "
              f"tokens {m.token_share:.2f}, requests {m.request_share}")
        assert m.running_share == pytest.approx(m.weight_share, abs=0.1), (m.instance, m.running_share)
        assert m.token_share == pytest.approx(m.weight_share, abs=0.1), (m.instance, m.token_share)
        assert m.request_share == pytest.approx(m.weight_share, abs=0.1), (m.instance, m.request_share)


def test_the_pool_is_seen_through_nginx_and_the_meter_and_a_stopped_replica_is_named(stack):
    got: dict[int, int] = {}
    load = threading.Thread(target=lambda: got.update(run_clients(f"http://127.0.0.1:{stack['listen']}", 8, 4.0)))
    load.start()
    sampler = sampler_for(stack)
    try:
        snaps = [sampler.sample(wait_instances=True)]
        load.join(60)
        # every replica answered through nginx and the meter
        assert sorted(k for k in got if k is not None) == [26, 27, 28], got
        assert sum(got.values()) >= 3 * TOKENS
        snaps.append(sampler.sample(wait_instances=True))
        (pool,) = snaps[-1].pools
        assert pool.name == "llm_backends" and pool.method == "least_conn"
        assert pool.source == f"{stack['tmp'] / 'conf.d' / 'llm.conf'}:2"
        assert [m.weight for m in pool.members] == list(WEIGHTS)
        assert [round(m.weight_share, 2) for m in pool.members] == [0.5, 0.25, 0.25]
        assert [m.instance for m in pool.members] == ["ollama-0", "ollama-1", "ollama-2"]
        assert [m.via for m in pool.members] == [f"http://127.0.0.1:{p}" for p in stack["routes"]]
        assert pool.model == "llama3.2:3b"
        assert [a.message for a in evaluate_once(snaps) if a.kind == "replica_imbalance"] == []

        stack["stands"][2].close()  # ollama-2 stops; nginx still lists its meter route
        after = [sampler.sample(wait_instances=True) for _ in range(2)]
        pool_alerts = [a for a in evaluate_once(after) if a.kind == "replica_imbalance"]
        assert [a.subject for a in pool_alerts] == ["pool llm_backends"]
        assert pool_alerts[0].message.startswith("pool llm_backends runs on 2 of 3 replicas: ollama-2 (down")
    finally:
        sampler.close()

