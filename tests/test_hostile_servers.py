"""Hostile input, findings 3, 4, 5 and 9 (servers): a big /metrics page or a hung server does not
starve the others; every read has a total deadline; size caps hold for decompressed bytes
(gzip bombs) with bounded memory; one bad label or result item spoils nothing else; a backend
URL's path is never exported."""

from __future__ import annotations

import json
import time

import pytest

from hostile_support import (TRICKLED, Peer, bomb_answer, path_of, raw_bad_in, run_measured, send, send_json,
                             trickle)


def _counting_vllm():
    def answer(peer, conn, request):
        if path_of(request) == "/metrics":
            peer.hits = getattr(peer, "hits", 0) + 1
            send(conn, f'vllm:num_requests_running{{model_name="m"}} 3\n'
                       f'vllm:generation_tokens_total{{model_name="m"}} {peer.hits * 100}\n')
        else:
            send(conn, "no", status="404 Not Found")
    return answer


def _big_page(series: int = 30_000) -> bytes:
    lines = [f'vllm:num_requests_running{{model_name="model-{i:05d}",engine="{i}"}} 1' for i in range(series)]
    return ("\n".join(lines) + "\n").encode()


def _hang(peer, conn, request):
    peer.stop.wait(60)


def test_a_big_page_and_a_hung_server_do_not_starve_the_others():
    from gpuwatch.collect.instances import BackendConfig, InstanceCollector

    page = _big_page()
    assert 1_000_000 < len(page) < 4 << 20  # under the body cap: only the series cap stops it
    good = Peer(_counting_vllm())
    big = Peer(lambda peer, conn, req: send(conn, page))
    hung = Peer(_hang)
    timeout = 3.0
    col = InstanceCollector([BackendConfig(good.url, name="good", kind="vllm"),
                             BackendConfig(big.url, name="big", kind="vllm"),
                             BackendConfig(hung.url, name="hung", kind="vllm")], discover=False, timeout_s=timeout)
    try:
        col.collect()  # the first call waits for every server's first answer (or timeout)
        durations, hits = [], []
        for _ in range(4):
            start = time.monotonic()
            got = {i.name: i for i in col.collect()}
            durations.append(time.monotonic() - start)
            hits.append(good.hits)
            assert got["good"].status == "up" and got["good"].requests_running == 3
        assert "too many series" in got["big"].error
        assert got["hung"].status == "down"
    finally:
        col.close()
        for p in (good, big, hung):
            p.close()
    # the good server was read afresh on every call, and no call waited out the hung one
    assert hits == sorted(set(hits)) and len(set(hits)) == 4, hits
    assert max(durations) < timeout, durations


def test_prometheus_text_labels_with_line_separators_parse():
    from gpuwatch.collect.engines.base import PromScrape
    for sep in ("\u2028", "\u0085", "\r", "\x1c", "\x0b", "\x1d", "\x1e", "\u2029", "\x0c"):
        text = (f'vllm:num_requests_running{{model_name="a{sep}b"}} 2\n'
                f'vllm:num_requests_waiting{{model_name="a{sep}b"}} 1\n')
        s = PromScrape(text, wanted={"vllm:num_requests_running", "vllm:num_requests_waiting"}, series={})
        assert s.sum(("vllm:num_requests_running",)) == 2, repr(sep)
        assert s.label_values(("vllm:num_requests_running",), "model_name") == [f"a{sep}b"]


def test_a_server_with_line_separators_in_labels_is_up_and_shown_escaped():
    def answer(peer, conn, request):
        if path_of(request) == "/metrics":
            send(conn, 'vllm:num_requests_running{model_name="a\u2028b\u0085c\rd\x1ce\x0bf"} 2\n')
        else:
            send(conn, "no", status="404 Not Found")
    peer = Peer(answer)
    try:
        rc, out, err, _, _ = run_measured(["snapshot", "--json", "--no-discover", "--interval", "0.2",
                                           "--backend", peer.url], timeout=60)
    finally:
        peer.close()
    assert rc == 0, err
    inst = json.loads(out)["instances"][0]
    assert inst["status"] == "up", inst["error"]
    assert inst["models"][0]["name"] == "a\\u2028b\\x85c\\x0dd\\x1ce\\x0bf"
    assert raw_bad_in(out) == []


# ---- total deadlines ----------------------------------------------------------------------------------

def test_snapshot_prometheus_against_a_one_byte_per_second_server_ends(tmp_path):
    peer = Peer(lambda p, conn, req: trickle(p, conn, TRICKLED, per_s=1.0))
    cfg = tmp_path / "c.toml"
    cfg.write_text('[prometheus]\ntimeout_s = 1.5\n')
    try:
        rc, out, err, _, elapsed = run_measured(["snapshot", "--text", "--config", str(cfg), "--prometheus",
                                                 peer.url], timeout=30)
    finally:
        peer.close()
    assert rc == 1 and "did not answer within 1.5 s" in err and len(err.strip().splitlines()) == 1, err
    assert elapsed < 15


def test_bench_against_a_one_byte_per_second_server_ends():
    from gpuwatch.collect.bench import run_bench
    slow = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
            b'{"data": [{"id": "m"}], "pad": "' + b" " * 4900)
    peer = Peer(lambda p, conn, req: trickle(p, conn, slow, per_s=20.0))
    try:
        start = time.monotonic()
        res = run_bench(peer.url, "vllm", setup_timeout=1.0, timeout=1.0)
        elapsed = time.monotonic() - start
    finally:
        peer.close()
    assert res.error == "no answer within 1 s" and elapsed < 8, (res, elapsed)


def test_prometheus_client_deadline_covers_slow_headers_too():
    from gpuwatch.fleet.promql import PromClient
    peer = Peer(lambda p, conn, req: trickle(p, conn, TRICKLED, per_s=5.0))
    c = PromClient(peer.url, timeout_s=1.0)
    try:
        start = time.monotonic()
        results, errors = c.query_many({"a": "up", "b": "up"})
        elapsed = time.monotonic() - start
    finally:
        c.close()
        peer.close()
    assert not results and all("within 1 s" in e for e in errors.values()) and elapsed < 5


# ---- gzip bombs and big answers: caps on decompressed bytes, bounded memory ---------------------------

RSS_BOUND_MIB = 300  # a gpuwatch process reading any of these stays well under this


def test_gzip_bomb_as_a_backend_is_refused_with_bounded_memory():
    peer = Peer(bomb_answer(1024))
    try:
        rc, out, err, rss, _ = run_measured(["snapshot", "--json", "--no-discover", "--interval", "0.2",
                                             "--backend", peer.url], timeout=120)
    finally:
        peer.close()
    assert rc == 0, err
    inst = json.loads(out)["instances"][0]
    assert inst["status"] == "error" and "larger than 4 MiB" in inst["error"], inst
    assert rss < RSS_BOUND_MIB, f"peak RSS {rss} MiB"


def test_gzip_bomb_as_the_fleet_prometheus_is_one_line_with_bounded_memory():
    peer = Peer(bomb_answer(1024, ctype="application/json"))
    try:
        rc, out, err, rss, _ = run_measured(["snapshot", "--text", "--prometheus", peer.url], timeout=120)
    finally:
        peer.close()
    assert rc == 1 and "larger than 32 MiB" in err and len(err.strip().splitlines()) == 1, err
    assert rss < RSS_BOUND_MIB, f"peak RSS {rss} MiB"


def test_gzip_bomb_as_a_bench_target_is_refused_with_bounded_memory():
    bomb = bomb_answer(1024, ctype="application/json")

    def answer(p, conn, request):  # a vLLM by its /version, whose model list is the bomb
        path = path_of(request)
        if path == "/version":
            send_json(conn, {"version": "0.9"})
        elif path == "/v1/models":
            bomb(p, conn, request)
        else:
            send(conn, "no", status="404 Not Found")
    peer = Peer(answer)
    try:
        rc, out, err, rss, _ = run_measured(["bench", peer.url], timeout=120)
    finally:
        peer.close()
    assert rc == 1 and "larger than 4 MiB" in out + err, out + err
    assert rss < RSS_BOUND_MIB, f"peak RSS {rss} MiB"


def test_decoder_caps_decompressed_bytes():
    import zlib

    from gpuwatch.collect.bounded import BodyError, Decoder
    from hostile_support import gzip_bomb
    d = Decoder("gzip", 1 << 20)
    with pytest.raises(BodyError, match="larger than 1 MiB"):
        for i in range(0, len(gzip_bomb(64)), 65536):
            d.feed(gzip_bomb(64)[i:i + 65536])
    assert d.produced <= 1 << 20
    t = Decoder("gzip", 100, truncate=True)
    assert len(t.feed(zlib.compress(b"x" * 10_000, wbits=31))) == 100
    with pytest.raises(BodyError, match="unsupported Content-Encoding"):
        Decoder("br", 10)


# ---- malformed Prometheus answers (finding 9) ----------------------------------------------------------

def test_one_malformed_result_item_is_skipped_not_the_refresh():
    from gpuwatch.fleet.promql import parse_vector
    good = {"metric": {"__name__": "gpuwatch_gpu_temperature_celsius", "host": "box", "gpu": "0", "uuid": "u"},
            "value": [1.0, "55"]}
    doc = {"status": "success", "data": {"resultType": "vector", "result": [
        1, None, "x", [], {"metric": 5, "value": [1, "2"]}, {"metric": {}, "value": "zz"},
        {"metric": {"host": ["list"], "__name__": "gpuwatch_gpu_power_watts"}, "value": [1, "2"]},
        {"metric": {"__name__": "gpuwatch_gpu_info", "host": "box", "gpu": "²"}, "value": [1, "1"]},
        {"metric": {}, "value": [None, {}]}, good]}}
    r = parse_vector(doc)
    assert r.skipped >= 7 and any(s.labels.get("host") == "box" for s in r.samples)
    peer = Peer(lambda p, conn, req: send_json(conn, doc))
    try:
        rc, out, err, _, _ = run_measured(["snapshot", "--json", "--prometheus", peer.url], timeout=60)
    finally:
        peer.close()
    assert rc == 0, err
    hosts = json.loads(out)["hosts"]
    assert [h["host"] for h in hosts] == ["box"] and hosts[0]["gpus"][0]["temperature_c"] == 55


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"status": "success", "data": 5}',
                                  b'{"status": "error", "errorType": "bad_data", "error": "\\u001b]0;PWNED\\u0007gone"}', b"\xff\xfe junk"],
                         ids=["nested-100000", "data-not-object", "escape-in-error", "not-utf8"])
def test_junk_prometheus_answers_are_one_line(body):
    peer = Peer(lambda p, conn, req: send(conn, body, ctype="application/json"))
    try:
        rc, out, err, _, _ = run_measured(["snapshot", "--text", "--prometheus", peer.url], timeout=60)
    finally:
        peer.close()
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1 and raw_bad_in(out + err) == []


# ---- a backend URL's path is never exported (finding 9) ----------------------------------------------

def test_backend_url_path_is_not_in_the_instance_name_or_the_export():
    from gpuwatch.collect.instances import BackendConfig, InstanceCollector
    from gpuwatch.frontends.exporter import _Integrator, build_families
    from gpuwatch.model import Snapshot
    from prometheus_client import CollectorRegistry, generate_latest
    from gpuwatch.frontends.exporter import _LastSnapshotCollector

    peer = Peer(_counting_vllm())
    token = "TOKEN-s3cr3t-4711"
    try:
        with InstanceCollector([BackendConfig(f"{peer.url}/proxy/{token}", kind="vllm"),
                                BackendConfig(f"{peer.url}/other/{token}", kind="vllm")], discover=False) as col:
            insts = col.collect()
    finally:
        peer.close()
    names = [i.name for i in insts]
    assert names == [f"localhost:{peer.port}", f"localhost:{peer.port}#2"], names
    reg = CollectorRegistry(auto_describe=False)
    c = _LastSnapshotCollector()
    reg.register(c)
    c.set(build_families(Snapshot(time="t", host="h", instances=insts), _Integrator(), 1.0))
    text = generate_latest(reg).decode()
    assert "instance_name" in text and token not in text
