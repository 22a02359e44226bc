"""Bad servers are contained: a hanging, failing, locked, junk-speaking or endless server shows
why it is down and costs the healthy ones nothing; API keys never leak into what we show."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest
from _instances_servers import ENDLESS, HANG, JUNK, Counters, HoldCount, free_port

from gpuwatch.collect.instances import BackendConfig, InstanceCollector
from gpuwatch.pipeline import Sampler
from test_instances_idle import _Nvml

SECRET = "sk-test-7f3a9c1e55d04b2f"


def healthy_vllm(clock):
    c = Counters(clock, gen=100.0)

    def body(h):
        return f'vllm:generation_tokens_total{{model_name="m"}} {c.value("gen")}\nvllm:num_requests_running{{model_name="m"}} 2\n'
    return body


def test_one_bad_server_costs_the_others_nothing(clock, servers):
    holds = HoldCount()
    good = servers({"/metrics": healthy_vllm(clock)})
    bad = {
        "hang": servers({"/metrics": HANG}, holds=holds),
        "http500": servers({"/metrics": (500, '{"error": "CUDA out of memory"}')}),
        "locked": servers({"/metrics": (401, '{"error": "Unauthorized"}')}),
        "junk": servers({"/metrics": JUNK}),
        "garbage": servers({"/metrics": "<html><body>{{{ not prometheus</body></html>\n"}),
        "endless": servers({"/metrics": ENDLESS}),
    }
    refused = f"http://127.0.0.1:{free_port()}"
    backends = [BackendConfig(url=good.url, name="good", kind="vllm")]
    backends += [BackendConfig(url=s.url, name=n, kind="vllm") for n, s in bad.items()]
    backends.append(BackendConfig(url=refused, name="refused", kind="vllm"))
    # the timeout is generous (loopback answers take milliseconds, even beside a CPU hog): what
    # is asserted is that a collect ends with it, never waiting for the hanging server's answer
    with InstanceCollector(backends, discover=False, clock=clock.now, timeout_s=2.0) as col:
        first = {i.name: i for i in col.collect()}
        first_held_to_the_end = holds.held_to_the_end
        clock.advance(2.0)
        got = {i.name: i for i in col.collect()}
        held_to_the_end = holds.held_to_the_end

    # the healthy server is read fully every tick, however long the hanging one holds its request
    assert got["good"].status == "up"
    assert got["good"].generation_tokens_per_s == pytest.approx(100.0, rel=0.02)  # on the test's clock
    assert first_held_to_the_end == held_to_the_end == 0  # no tick waited for the hanging server to let go...
    assert holds.wait_for(lambda h: h.total >= 2), holds.total  # ...though it was asked at both

    assert got["hang"].status == "down" and "no answer" in got["hang"].error
    assert got["refused"].status == "down" and got["refused"].error == "connection refused"
    assert got["http500"].status == "error" and got["http500"].error == "HTTP 500 from /metrics: CUDA out of memory"
    assert got["locked"].status == "error" and "needs API key" in got["locked"].error
    assert got["junk"].status == "error" and "bad HTTP response" in got["junk"].error
    assert got["garbage"].status == "error" and "no vllm: series in /metrics" in got["garbage"].error
    assert got["endless"].status == "error" and "larger than 4 MiB" in got["endless"].error
    for name in bad:
        assert first[name].error_since is not None
        assert got[name].error_since == first[name].error_since  # kept while the error persists
        assert got[name].generation_tokens_per_s is None


def test_error_clears_when_the_server_recovers(clock, servers):
    state = {"broken": True}
    body = healthy_vllm(clock)
    srv = servers({"/metrics": lambda h: (500, "boom") if state["broken"] else body(h)})
    with InstanceCollector([BackendConfig(srv.url, kind="vllm")], discover=False, clock=clock.now) as col:
        assert col.collect()[0].status == "error"
        state["broken"] = False
        clock.advance(1.0)
        inst = col.collect()[0]
    assert inst.status == "up" and inst.error is None and inst.error_since is None


def test_collect_is_bounded_even_when_every_server_hangs(clock, servers):
    holds = HoldCount()
    hangs = [servers({"/metrics": HANG}, default=HANG, holds=holds) for _ in range(6)]
    backends = [BackendConfig(s.url) for s in hangs]  # kind unknown: the probes hang too
    with InstanceCollector(backends, discover=False, clock=clock.now, timeout_s=2.0) as col:
        out = col.collect()
        # bounded: it returned while every hanging server still held what it was asked, or after
        # the client gave up on it - never after a server let go (30 s)
        assert holds.held_to_the_end == 0
    assert [i.status for i in out] == ["down"] * 6
    # in parallel: all six were asked within the one collect (polled one after another, the
    # collect's own deadline of timeout + 0.3 s would have cut it off after the second; the
    # timeout is long enough for a starved event loop to send six requests)
    assert holds.wait_for(lambda h: h.total >= 6), f"only {holds.total} of 6 servers were asked"
    assert holds.held_to_the_end == 0


def test_collect_is_thread_safe(clock, servers):
    srv = servers({"/metrics": healthy_vllm(clock)})
    results, errors = [], []
    with InstanceCollector([BackendConfig(srv.url, kind="vllm")], discover=False, clock=clock.now) as col:
        def worker():
            try:
                for _ in range(5):
                    results.append(col.collect()[0].status)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert not errors and results == ["up"] * 20


# ---- API keys --------------------------------------------------------------------------------

def _all_text(instances) -> str:
    return json.dumps([dataclasses.asdict(i) for i in instances])


def test_api_key_is_sent_and_never_shown(clock, servers, monkeypatch, caplog):
    monkeypatch.setenv("GPUWATCH_TEST_KEY", SECRET)
    ok = servers({"/metrics": healthy_vllm(clock)}, require_key=SECRET)
    wrong = servers({"/metrics": healthy_vllm(clock)}, require_key="another-key")
    # a misbehaving server that echoes the request's headers in its error text
    echo = servers({"/metrics": lambda h: (500, json.dumps({"error": f"bad auth {h.headers.get('Authorization')}"}))})
    backends = [BackendConfig(url=f"http://user:{SECRET}@127.0.0.1:{ok.port}", name="ok", kind="vllm",
                              api_key_env="GPUWATCH_TEST_KEY"),
                BackendConfig(url=wrong.url, name="wrong", api_key_env="GPUWATCH_TEST_KEY"),
                BackendConfig(url=echo.url, name="echo", kind="vllm", api_key_env="GPUWATCH_TEST_KEY")]
    with caplog.at_level("DEBUG"):
        with InstanceCollector(backends, discover=False, clock=clock.now) as col:
            out = col.collect()
            clock.advance(1.0)
            out += col.collect()
    got = {i.name: i for i in out}
    assert got["ok"].status == "up"
    assert ok.requests[-1][2].get("Authorization") == f"Bearer {SECRET}"
    assert got["wrong"].status == "error" and "API key rejected" in got["wrong"].error
    assert got["echo"].status == "error" and "***" in got["echo"].error
    assert SECRET not in _all_text(out)
    assert SECRET not in caplog.text


def test_missing_key_env_is_named_in_the_error(clock, servers, monkeypatch):
    monkeypatch.delenv("GPUWATCH_UNSET_KEY", raising=False)
    srv = servers({"/metrics": healthy_vllm(clock)}, require_key=SECRET)
    with InstanceCollector([BackendConfig(srv.url, kind="vllm", api_key_env="GPUWATCH_UNSET_KEY")],
                           discover=False, clock=clock.now) as col:
        inst = col.collect()[0]
    assert inst.status == "error"
    assert "needs API key" in inst.error and "GPUWATCH_UNSET_KEY" in inst.error


def test_a_clock_the_caller_drives_waits_for_a_slow_server_so_its_rate_stays_true(servers):
    """Simulated history (``snapshot --svg``, replays of the demo) moves its clock only between
    samples: a server answering after the live view's grace (0.5 s) was stamped a step late,
    which halved or doubled its tok/s (a 3220 tok/s spike on a 2400 tok/s server, loaded CI)."""
    from gpuwatch.runtime import make_sampler
    from gpuwatch.sim.box import ManualClock

    clock = ManualClock()
    gen = Counters(clock, gen=100.0)

    def metrics(handler):
        body = f'vllm:generation_tokens_total{{model_name="m"}} {gen.value("gen")}\n'
        time.sleep(0.8)  # the answer is of this moment, but it arrives 0.8 s later
        return body

    slow = servers({"/metrics": metrics, "/version": {"version": "0.11.0"}})
    sampler = make_sampler(demo="rtx4090x2:none", clock=clock, servers=False, discover=False,
                           backends=[BackendConfig(url=slow.url, kind="vllm")])
    try:
        rates = []
        for _ in range(5):
            clock.advance(1.0)
            snap = sampler.sample(wait_instances=True)
            rates.append(snap.instances[0].generation_tokens_per_s)
        assert rates[1:] == pytest.approx([100.0] * 4), rates
    finally:
        sampler.close()


# ---- collect_nowait: the dashboard's ticks -----------------------------------------------------

def test_collect_nowait_shows_each_server_when_its_poll_has_ended_and_never_waits_for_one(clock, servers):
    """The dashboard does not wait for the servers between its ticks: each call reads what the
    polls started by the previous one found. A server whose first poll is still running is left
    out (not shown down) and ``first_pending`` says so; a hanging one turns down, with why, once
    its poll's own timeout has run out; no call waits for the hanging server to let go."""
    holds = HoldCount()
    good = servers({"/metrics": healthy_vllm(clock)})
    hang = servers({"/metrics": HANG}, holds=holds)
    backends = [BackendConfig(good.url, name="good", kind="vllm"), BackendConfig(hang.url, name="hang", kind="vllm")]
    seen = []
    with InstanceCollector(backends, discover=False, clock=clock.now, timeout_s=2.0) as col:
        first = col.collect_nowait()
        assert "hang" not in {i.name for i in first} and col.first_pending  # asked, not yet answered: not "down"

        def until(cond, what):
            deadline = time.monotonic() + 30
            while True:
                got = {i.name: i for i in col.collect_nowait()}
                seen.append({n: i.status for n, i in got.items()})
                if cond(got):
                    return got
                assert time.monotonic() < deadline, f"{what}; the calls saw {seen[-3:]}"
                time.sleep(0.05)

        got = until(lambda g: "good" in g, "the healthy server was never shown")
        assert got["good"].status == "up"
        got = until(lambda g: "hang" in g, "the hanging server was never shown")
        assert got["hang"].status == "down" and "no answer" in got["hang"].error
        assert not col.first_pending
        assert holds.held_to_the_end == 0  # the polls gave up on it; nothing waited for it to let go
    # while the hanging server's first poll ran, it was never shown (as down or otherwise)
    assert all("hang" not in s for s in seen[:-1]), seen


def test_the_dashboard_s_sampler_starts_no_thread_to_wait_for_the_servers(clock, servers):
    """Ticks that do not wait for the servers (the dashboard's, serve's, record's after its first)
    read them with collect_nowait on the ticking thread: no worker thread is started for the
    servers' polls, and the snapshot stops saying it is looking for servers once they answered."""
    gate, body = threading.Event(), healthy_vllm(clock)
    srv = servers({"/metrics": lambda h: gate.wait(30) and body(h)})  # answers once the gate opens
    col = InstanceCollector([BackendConfig(srv.url, name="v", kind="vllm")], discover=False, clock=clock.now,
                            timeout_s=30.0)
    s = Sampler(nvml=_Nvml(), instances=col, analyzers=[])
    try:
        snap = s.sample(wait_instances=False)
        assert snap.instances_pending and snap.instances == []
        gate.set()
        deadline = time.monotonic() + 30
        while not snap.instances:
            assert time.monotonic() < deadline, "the server never appeared"
            time.sleep(0.05)
            snap = s.sample(wait_instances=False)
        assert not snap.instances_pending and [i.status for i in snap.instances] == ["up"]
        assert not [t.name for t in threading.enumerate() if t.name.startswith("gpuwatch-instances_")]
    finally:
        s.close()
        col.close()


def test_a_tick_starts_every_server_s_poll_with_one_wake_up_of_the_polling_thread(clock, servers):
    """Four servers due at once: one hand-off to the servers' event loop per call, not one per
    server (each woke that thread, or wrote to its wake-up pipe while it already ran), and every
    server is still polled and shown up."""
    srvs = [servers({"/metrics": healthy_vllm(clock)}) for _ in range(4)]
    backends = [BackendConfig(s.url, name=f"v{k}", kind="vllm") for k, s in enumerate(srvs)]
    with InstanceCollector(backends, discover=False, clock=clock.now, timeout_s=5.0) as col:
        loop = col._loop
        handoffs = []
        real = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *a, **kw: handoffs.append(a) or real(*a, **kw)
        got = {}
        deadline = time.monotonic() + 30
        while len(got) < 4:
            assert time.monotonic() < deadline, f"not every server was shown: {sorted(got)}"
            calls = len(handoffs)
            got.update({i.name: i.status for i in col.collect_nowait()})
            assert len(handoffs) - calls <= 1
            time.sleep(0.05)
            clock.advance(1.0)
        assert got == {f"v{k}": "up" for k in range(4)}
        assert handoffs  # (the count above was of real hand-offs)
        loop.call_soon_threadsafe = real
