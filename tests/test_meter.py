"""`gpuwatch meter` as a user runs it: a real subprocess between real loopback clients and a
streaming Ollama stand-in (gpuwatch/sim/ollama_stream.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path

import httpx
import psutil
import pytest
from _instances_servers import free_port
from meter_support import MeterProcess, meter, wait_until

from gpuwatch.meter import names
from gpuwatch.sim.ollama_stream import StreamingOllama

ROOT = Path(__file__).resolve().parent.parent
IGNORED_HEADERS = {"date", "server", "transfer-encoding", "connection", "keep-alive"}


@pytest.fixture(scope="module")
def upstream():
    with StreamingOllama(rate_tok_s=400, tokens=24) as up:
        yield up


@pytest.fixture(scope="module")
def metered(upstream):
    with meter([upstream.url]) as m:
        yield m


REQUESTS = [
    ("/api/generate", {"model": "llama3.2:3b", "prompt": "why is the sky blue?"}),
    ("/api/chat", {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi"}]}),
    ("/api/generate", {"model": "llama3.2:3b", "prompt": "hi", "stream": False}),
    ("/v1/chat/completions", {"model": "llama3.2:3b", "stream": True, "messages": []}),
    ("/v1/chat/completions", {"model": "llama3.2:3b", "stream": True, "stream_options": {"include_usage": True}}),
    ("/v1/completions", {"model": "llama3.2:3b", "stream": True, "prompt": "x"}),
    ("/v1/chat/completions", {"model": "llama3.2:3b", "messages": []}),
]


@pytest.mark.parametrize("path,body", REQUESTS, ids=[f"{p}{'' if b.get('stream', p.startswith('/api')) else '-nostream'}"
                                                     f"{'-usage' if 'stream_options' in b else ''}" for p, b in REQUESTS])
def test_bytes_through_the_meter_are_the_bytes_direct(upstream, metered, path, body):
    direct = httpx.post(upstream.url + path, json=body, timeout=30)
    through = httpx.post(metered.url + path, json=body, timeout=30)
    assert through.status_code == direct.status_code == 200
    assert through.content == direct.content
    strip = lambda h: {k.lower(): v for k, v in h.items() if k.lower() not in IGNORED_HEADERS}  # noqa: E731
    assert strip(through.headers) == strip(direct.headers)


def test_other_requests_pass_unchanged_and_uncounted(upstream, metered):
    for path in ("/api/version", "/api/ps", "/", "/nope"):
        d, t = httpx.get(upstream.url + path), httpx.get(metered.url + path + "")
        assert (t.status_code, t.content) == (d.status_code, d.content)
    r = httpx.get(metered.url + "/api/ps?verbose=1")
    assert r.status_code == 200 and "models" in r.json()


def test_chunks_reach_the_client_while_the_upstream_is_still_generating(upstream, metered):
    slow = StreamingOllama(rate_tok_s=10, tokens=30).start()
    try:
        with meter([slow.url]) as m, httpx.Client(timeout=30) as c:
            with c.stream("POST", m.url + "/api/generate", json={"model": "m", "prompt": "p"}) as r:
                lines = r.iter_lines()
                first = json.loads(next(lines))
                # the first token is here and the upstream has 29 more to go: nothing was buffered
                assert first["done"] is False and first["response"] == "0 "
                assert slow.active == 1 and slow.finished == 0
                rest = [json.loads(line) for line in lines if line]
            assert rest[-1]["done"] is True and rest[-1]["eval_count"] == 30
    finally:
        slow.close()


def test_counts_tokens_per_model_from_ollama_and_openai_streams(upstream):
    with meter([upstream.url]) as m:
        route = f"127.0.0.1:{m.listen_ports[0]}"
        httpx.post(m.url + "/api/generate", json={"model": "a:1b", "options": {"num_predict": 10}}, timeout=30)
        httpx.post(m.url + "/api/chat", json={"model": "a:1b", "options": {"num_predict": 5}}, timeout=30)
        httpx.post(m.url + "/v1/chat/completions", json={"model": "b", "stream": True, "max_tokens": 7}, timeout=30)
        httpx.post(m.url + "/v1/chat/completions", json={"model": "b", "stream": True, "max_tokens": 4,
                                                          "stream_options": {"include_usage": True}}, timeout=30)
        gen = lambda model: m.sample(names.GENERATION_TOKENS, route=route, model=model)  # noqa: E731
        assert gen("a:1b") == 15
        assert gen("b") == 11
        # Ollama's final chunks confirm theirs; the stream without usage is marked estimated
        assert m.sample(names.GENERATION_TOKENS_ESTIMATED, model="a:1b") == 0
        assert m.sample(names.GENERATION_TOKENS_ESTIMATED, model="b") == 7
        assert m.sample(names.PROMPT_TOKENS, model="a:1b") == 2 * upstream.prompt_tokens
        assert m.sample(names.PROMPT_TOKENS, model="b") == upstream.prompt_tokens  # usage only when asked for
        assert m.sample(names.REQUESTS, model="a:1b", code="200") == 2
        assert m.sample(names.TTFT + "_count", model="a:1b") == 2
        assert m.sample(names.ITL + "_count", model="a:1b") == 9 + 4
        assert m.sample(names.ENGINE_EVAL_SECONDS, model="a:1b") == pytest.approx(15 / upstream.rate)
        assert m.sample(names.REQUESTS_RUNNING, route=route) == 0
        info = m.sample(names.ROUTE_INFO, route=route, upstream=upstream.url)
        assert info == 1


def test_every_documented_series_is_exported_and_every_exported_one_documented(metered):
    httpx.post(metered.url + "/api/generate", json={"model": "m"}, timeout=30)
    text = metered.metrics_text()
    exported = {line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")}
    exported = {re.sub(r"_(bucket|count|sum)$", "", n) for n in exported}
    declared = {v for k, v in vars(names).items() if isinstance(v, str) and v.startswith(names.PREFIX) and k != "PREFIX"}
    assert exported == declared
    doc = (ROOT / "docs" / "METER.md").read_text()
    missing = sorted(n for n in declared if f"`{n}`" not in doc)
    assert not missing, f"not in docs/METER.md: {missing}"


def test_a_large_request_body_streams_through_in_bounded_memory(upstream):
    size = 96 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    want = hashlib.sha256(block * (size // len(block))).hexdigest()

    def body():
        for _ in range(size // len(block)):
            yield block

    with meter([upstream.url]) as m:
        rss0 = psutil.Process(m.proc.pid).memory_info().rss
        peak = [rss0]
        # chunked (no length), then with a Content-Length, as a base64 image upload would come
        for headers in ({}, {"Content-Length": str(size)}):
            r = httpx.post(m.url + "/upload", content=body(), headers=headers, timeout=120)
            peak.append(psutil.Process(m.proc.pid).memory_info().rss)
            assert r.status_code == 200
            assert r.json() == {"bytes": size, "sha256": want}
        # never the whole body in memory: growth far below its 96 MiB
        assert max(peak) - rss0 < 32 * 1024 * 1024
        assert m.sample(names.REQUEST_BYTES) == 2 * size


def test_a_client_that_disconnects_mid_stream_cancels_the_upstream_request():
    slow = StreamingOllama(rate_tok_s=20, tokens=2000).start()
    try:
        with meter([slow.url]) as m:
            with httpx.Client(timeout=30) as c:
                with c.stream("POST", m.url + "/api/chat", json={"model": "m"}) as r:
                    lines = r.iter_lines()
                    for _ in range(3):
                        next(lines)
                    assert slow.active == 1
            # the client is gone: the upstream stream stops long before its 2000 tokens (100 s)
            assert slow.wait_for(lambda s: s.cancelled == 1 and s.active == 0, timeout=15)
            assert slow.tokens_sent < 2000
            assert wait_until(lambda: m.sample(names.CLIENT_DISCONNECTS, model="m") == 1)
            assert m.sample(names.REQUESTS, code="disconnect") == 1
            assert m.sample(names.REQUESTS_RUNNING) == 0
    finally:
        slow.close()


def test_a_client_that_disconnects_before_the_first_token_cancels_too():
    slow = StreamingOllama(rate_tok_s=0.05, tokens=3).start()  # first token at once, the next in 20 s
    try:
        with meter([slow.url]) as m:
            s = socket.create_connection(("127.0.0.1", m.listen_ports[0]))
            body = b'{"model": "m"}'
            s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            assert slow.wait_for(lambda st: st.active == 1, timeout=15)
            s.close()
            # long before the next token (20 s away): the close itself cancels the upstream request
            assert slow.wait_for(lambda st: st.cancelled == 1, timeout=15)
    finally:
        slow.close()


def test_an_upstream_that_is_down_gives_502_with_a_one_line_reason():
    down = f"http://127.0.0.1:{free_port()}"
    with meter([down]) as m:
        r = httpx.post(m.url + "/api/generate", json={"model": "m"}, timeout=30)
        assert r.status_code == 502
        assert r.text.count("\n") == 1 and r.text.endswith("\n")
        assert "upstream" in r.text and down in r.text and "refused" in r.text.lower()
        assert httpx.get(m.url + "/api/ps", timeout=30).status_code == 502
        assert m.sample(names.REQUESTS, code="502", model="m") == 1  # the model named in the request
        assert m.sample(names.UPSTREAM_ERRORS, reason="connect") == 2


def test_nothing_of_prompts_completions_or_keys_is_exported_or_logged(upstream):
    secret_prompt, key = "PROMPT-7c1e the launch codes", "sk-SECRET-93f2"
    with meter([upstream.url]) as m:
        httpx.post(m.url + "/api/generate", json={"model": "m", "prompt": secret_prompt},
                   headers={"Authorization": f"Bearer {key}"}, timeout=30)
        httpx.post(m.url + "/v1/chat/completions", json={"model": "m", "stream": True, "messages": [
            {"role": "user", "content": secret_prompt}]}, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        text = m.metrics_text()
        m.stop()
        logged = "".join(m.stderr_lines)
    for s in (secret_prompt, key, "PROMPT", "SECRET", '"1 "'):
        assert s not in text and s not in logged
    assert len(m.stderr_lines) == 2  # the route and the metrics address, nothing per request


def test_sigterm_lets_a_running_stream_finish_then_exits():
    slow = StreamingOllama(rate_tok_s=20, tokens=40).start()  # 2 s of streaming
    try:
        m = MeterProcess([slow.url], drain_s=30)
        try:
            with httpx.Client(timeout=30) as c:
                with c.stream("POST", m.url + "/api/generate", json={"model": "m"}) as r:
                    lines = r.iter_lines()
                    next(lines)
                    m.terminate()
                    # new connections are refused at once; the running stream goes on to its end
                    assert wait_until(lambda: _refused(m.listen_ports[0]), timeout=10)
                    rest = [json.loads(line) for line in lines if line]
            assert rest[-1]["done"] is True and len(rest) == 40
            assert m.proc.wait(15) == 0
        finally:
            m.stop()
    finally:
        slow.close()


def test_sigterm_stops_waiting_after_the_drain_time():
    slow = StreamingOllama(rate_tok_s=5, tokens=1000).start()  # 200 s of streaming
    try:
        with meter([slow.url], drain_s=1) as m:
            with httpx.Client(timeout=30) as c:
                with c.stream("POST", m.url + "/api/generate", json={"model": "m"}) as r:
                    lines = r.iter_lines()
                    next(lines)
                    t0 = time.monotonic()
                    m.terminate()
                    assert m.proc.wait(20) == 0
                    assert time.monotonic() - t0 < 15
                    with pytest.raises(httpx.HTTPError):
                        for _ in lines:
                            pass
            assert slow.wait_for(lambda s: s.cancelled == 1, timeout=15)
    finally:
        slow.close()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


@pytest.mark.parametrize("args,message", [
    (["--route", "nonsense"], "expected LISTEN=UPSTREAM"),
    (["--route", "127.0.0.1:1=ftp://x"], "invalid upstream"),
    (["--route", "127.0.0.1:99999=http://127.0.0.1:1"], "invalid port"),
    ([], "--route"),
])
def test_bad_flags_are_one_line_and_exit_2(args, message):
    from conftest import run_cli
    r = run_cli("meter", *args, timeout=30)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_a_port_in_use_is_one_line_and_exit_2():
    from conftest import run_cli
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        port = s.getsockname()[1]
        r = run_cli("meter", "--route", f"127.0.0.1:{port}=http://127.0.0.1:1", "--metrics", "none", timeout=30)
    finally:
        s.close()
    assert r.returncode == 2 and "cannot listen" in r.stderr and "Traceback" not in r.stderr


def test_expect_100_continue_is_answered_so_uploads_do_not_wait(upstream, metered):
    body = json.dumps({"model": "m", "prompt": "x" * 100_000}).encode()
    with socket.create_connection(("127.0.0.1", metered.listen_ports[0]), timeout=30) as s:
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert s.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")  # before any body byte was sent
        s.sendall(body)
        got = b""
        while b'"done": true' not in got:
            data = s.recv(65536)
            assert data
            got += data
    assert got.startswith(b"HTTP/1.1 200 OK\r\n")


def test_an_upstream_that_cuts_a_stream_short_cuts_the_clients_too_and_is_counted():
    """The upstream sends its headers and two chunks, then closes: the client must see a cut
    answer (not a clean end), and the meter counts a reset."""
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(2):
            line = json.dumps({"model": "m", "response": f"{i} ", "done": False}).encode() + b"\n"
            conn.sendall(b"%x\r\n%s\r\n" % (len(line), line))
        time.sleep(0.2)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        with meter([f"http://127.0.0.1:{srv.getsockname()[1]}"]) as m:
            got = []
            with pytest.raises(httpx.HTTPError):
                with httpx.Client(timeout=30) as c:
                    with c.stream("POST", m.url + "/api/generate", json={"model": "m"}) as r:
                        for line in r.iter_lines():
                            got.append(line)
            assert len(got) == 2
            assert wait_until(lambda: m.sample(names.UPSTREAM_ERRORS, reason="reset") == 1)
            assert m.sample(names.REQUESTS, code="reset", model="m") == 1
            assert m.sample(names.GENERATION_TOKENS_ESTIMATED, model="m") == 2
    finally:
        srv.close()


def test_hop_by_hop_fields_stop_at_the_meter_and_the_rest_pass(servers):
    up = servers({"/api/tags": {"models": []}})
    with meter([up.url]) as m:
        r = httpx.get(m.url + "/api/tags", headers={
            "Authorization": "Bearer k", "X-Request-Id": "abc", "Accept": "application/json",
            "Connection": "keep-alive, X-Hop", "X-Hop": "1", "Keep-Alive": "timeout=5", "TE": "trailers",
            "Proxy-Connection": "keep-alive"})
    assert r.status_code == 200 and r.json() == {"models": []}
    (_, path, headers), = up.requests
    got = {k.lower(): v for k, v in headers.items()}
    assert got["authorization"] == "Bearer k" and got["x-request-id"] == "abc" and got["accept"] == "application/json"
    for hop in ("x-hop", "keep-alive", "te", "proxy-connection"):
        assert hop not in got
    assert got["host"] == f"127.0.0.1:{up.port}"  # the upstream's name, as nginx's default


def test_forward_headers_drops_what_connection_names_in_answers_too():
    from multidict import CIMultiDict

    from gpuwatch.meter.proxy import forward_headers
    h = CIMultiDict([("Content-Type", "application/x-ndjson"), ("Connection", "close, X-Internal"),
                     ("X-Internal", "1"), ("Transfer-Encoding", "chunked"), ("Set-Cookie", "a=1"),
                     ("Set-Cookie", "b=2"), ("Upgrade", "h2c")])
    out = forward_headers(h)
    assert list(out.items()) == [("Content-Type", "application/x-ndjson"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
