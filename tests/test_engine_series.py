"""gpuwatch's live tok/s against what the clients received, on recorded (*derived*) /metrics
time series of long generations (tests/fixtures/real/engines, PROVENANCE.md there).

Each series is replayed through the real collector, one scrape per simulated second, and the
1 s generation rate is compared with the clients' truth over the same interval."""

from __future__ import annotations

import json

import pytest
from _instances_servers import FIXTURES

from gpuwatch.collect.instances import BackendConfig, InstanceCollector

SERIES = FIXTURES / "real" / "engines"


def replay(name: str, clock, servers):
    data = json.loads((SERIES / name).read_text())
    scrapes = data["scrapes"]
    at = {"i": 0}
    srv = servers({"/metrics": lambda h: scrapes[at["i"]]["body"], "/version": {"version": "0.26.0"},
                   "/get_server_info": {"version": "0.5.3"}, "/info": {"model_id": "m", "version": "3.3.6"}})
    got, truth = [], []
    with InstanceCollector([BackendConfig(url=srv.url, kind=data["kind"])], discover=False, clock=clock.now) as col:
        for i, s in enumerate(scrapes):
            at["i"] = i
            if i:
                clock.advance(s["t"] - scrapes[i - 1]["t"])
            inst = col.collect()[0]
            assert inst.status == "up", inst.error
            if i:
                dt = s["t"] - scrapes[i - 1]["t"]
                got.append(inst.generation_tokens_per_s)
                truth.append((data["client_tokens"][i] - data["client_tokens"][i - 1]) / dt)
    return got, truth, data


def relative_mae(got, truth) -> float:
    """Mean absolute error over the intervals in which clients received tokens, relative to
    their mean rate; a missing reading counts as 0 tok/s (what the screen shows)."""
    pairs = [(g or 0.0, t) for g, t in zip(got, truth) if t > 0]
    return sum(abs(g - t) for g, t in pairs) / sum(t for _, t in pairs)


def idle_after_work(got, truth, quiet_s: int = 6) -> list:
    """gpuwatch's readings once the clients had received nothing for ``quiet_s`` seconds."""
    out = []
    for i in range(quiet_s, len(truth)):
        if all(t == 0 for t in truth[i - quiet_s:i + 1]) and any(truth[:i]):
            out.append(got[i])
    return out


@pytest.mark.parametrize("name, limit", [
    ("vllm-series-derived.json", 0.05),  # counters per engine step: the scrape difference is the rate
    ("sglang-realtime-series-derived.json", 0.05),  # realtime_tokens_total per decode step
    ("sglang-series-derived.json", 0.10),  # gen_throughput over the last 40 decode steps
    ("tgi-series-derived.json", 0.05),  # decode steps x batch size
])
def test_live_generation_rate_tracks_the_clients(name, limit, clock, servers):
    got, truth, _ = replay(name, clock, servers)
    err = relative_mae(got, truth)
    assert err < limit, f"{name}: tok/s off by {err:.1%} (mean absolute error)"
    assert all(g is not None for g, t in zip(got[1:], truth[1:]) if t > 0)
    # once the work has stopped, the rate reads 0 (a gauge left over from the last request
    # must not keep showing it)
    idle = idle_after_work(got, truth)
    assert idle and all(g == 0 for g in idle), idle


@pytest.mark.parametrize("name", ["sglang-series-derived.json", "tgi-series-derived.json"])
def test_request_end_counters_alone_would_read_as_a_stall(name):
    """Why the counters are not used for SGLang and TGI: differenced between 1 s scrapes they
    read 0 during the long generations and spike when a request ends."""
    data = json.loads((SERIES / name).read_text())
    key = "sglang:generation_tokens_total" if data["kind"] == "sglang" else "tgi_request_generated_tokens_sum"

    def value(body):
        for line in body.splitlines():
            if line.startswith(key):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    counts = [value(s["body"]) for s in data["scrapes"]]
    rates = [b - a for a, b in zip(counts, counts[1:])]
    truth = [b - a for a, b in zip(data["client_tokens"], data["client_tokens"][1:])]
    zero_while_busy = sum(1 for r, t in zip(rates, truth) if t > 0 and r == 0)
    assert zero_while_busy > 0.8 * sum(1 for t in truth if t > 0)
    assert relative_mae(rates, truth) > 0.8
