"""Recorded time series of a real llama.cpp server (b11434, tests/fixtures/real/llamacpp-b11434/,
see its PROVENANCE.md) replayed through gpuwatch's collector: once a second the server's
/metrics and /slots as they were, next to the tokens the streaming clients had received by
then. gpuwatch's 1 s generation tok/s must follow the clients' (mean absolute error within
20 %), and no throughput alert may fire while the server runs steadily."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import pytest
from _instances_servers import FIXTURES

from gpuwatch.analysis.alert_config import AlertConfig
from gpuwatch.analysis.alerts import AlertEngine
from gpuwatch.collect.instances import BackendConfig, InstanceCollector
from gpuwatch.model import Instance, Snapshot

SERIES = FIXTURES / "real" / "llamacpp-b11434"
T0 = 1_796_000_000.0


@dataclass
class Row:
    t: float  # seconds since the clients started (middle of the poll)
    gpuwatch: float | None  # gpuwatch's tok/s over the interval before this poll
    client: float  # tok/s the clients received over the same interval
    counter_only: float | None  # what the counter alone gives (the old reading)
    inst: Instance


def load(name: str) -> tuple[dict, list[dict], list[dict]]:
    lines = [json.loads(line) for line in (SERIES / name).read_text().splitlines() if line.strip()]
    props = next(x["body"] for x in lines if x["kind"] == "props")
    return props, [x for x in lines if x["kind"] == "poll"], [x for x in lines if x["kind"] == "request"]


def _counter(metrics: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith("llamacpp:tokens_predicted_total "):
            return float(line.split()[1])
    return None


def replay(name: str, servers, clock) -> list[Row]:
    """Serve the recorded answers poll by poll to gpuwatch's collector, the clock set to when
    each poll was made."""
    props, polls, _ = load(name)
    cur: dict = {}
    srv = servers({"/metrics": lambda h: (cur["p"]["metrics_status"], cur["p"]["metrics"]),
                   "/slots": lambda h: (cur["p"]["slots_status"], cur["p"]["slots"]), "/props": props})
    rows: list[Row] = []
    start = clock.now()
    prev = None
    with InstanceCollector([BackendConfig(url=srv.url, kind="llamacpp")], discover=False, clock=clock.now,
                           prime_s=0.0) as col:
        for p in polls:
            cur["p"] = p
            mid_t = (p["t0"] + p["t1"]) / 2
            clock.advance(start + mid_t - clock.now())
            inst = col.collect()[0]
            got = sum(p["client_tokens"]) / 2
            if prev is not None:
                dt = mid_t - prev[0]
                c_now, c_prev = _counter(p["metrics"]), _counter(prev[2])
                old = (c_now - c_prev) / dt if c_now is not None and c_prev is not None else None
                rows.append(Row(mid_t, inst.generation_tokens_per_s, (got - prev[1]) / dt, old, inst))
            prev = (mid_t, got, p["metrics"])
    return rows


def relative_mae(pairs) -> float:
    pairs = list(pairs)
    return sum(abs(g - c) for g, c in pairs) / sum(c for _, c in pairs)


def generating(rows: list[Row]) -> list[Row]:
    """The intervals in which the clients were receiving tokens (the load's warm-up and wind-down
    left out: a client's first poll is still in its prompt)."""
    return [r for r in rows if r.client > 0]


SERIES_WITH_METRICS = ["series-long.jsonl", "series-short.jsonl"]


@pytest.mark.parametrize("name", SERIES_WITH_METRICS + ["series-nometrics.jsonl"])
def test_one_second_tok_s_follows_what_the_clients_receive(name, servers, clock):
    rows = generating(replay(name, servers, clock))
    assert len(rows) >= 40
    assert all(r.gpuwatch is not None for r in rows)
    err = relative_mae((r.gpuwatch, r.client) for r in rows)
    assert err < 0.20, f"{name}: mean absolute error {100 * err:.1f} % of the clients' tok/s"
    running = [r.inst.requests_running for r in rows]
    assert all(v is not None for v in running) and max(running) >= 2
    for r in rows:  # without --metrics: waiting is 0 while a slot is free, unknown while none is
        assert r.inst.requests_waiting == (0 if r.inst.slots_busy < r.inst.slots_total else
                                           r.inst.requests_waiting if name != "series-nometrics.jsonl" else None)


def test_the_counter_alone_would_read_stalls_and_spikes(servers, clock):
    """What gpuwatch used to show on long generations: the request-end counter's rate is far off."""
    rows = [r for r in generating(replay("series-long.jsonl", servers, clock)) if r.counter_only is not None]
    assert relative_mae((r.counter_only, r.client) for r in rows) > 0.5
    assert sum(1 for r in rows if r.counter_only == 0) > len(rows) / 2


def throughput_alerts(rows: list[Row], tok_s) -> list[tuple[float, str]]:
    """(seconds, raised|cleared) of every throughput_drop event when the alert engine is fed the
    instance with generation tok/s ``tok_s(row)``."""

    class Clock:
        t = T0

        def now(self):
            return self.t

    c = Clock()
    engine = AlertEngine(AlertConfig(), clock=c)
    for r in rows:
        c.t = T0 + r.t
        when = datetime.fromtimestamp(c.t, tz=timezone.utc).isoformat()
        engine.update(Snapshot(time=when, host="test", instances=[replace(r.inst, generation_tokens_per_s=tok_s(r))]))
    return [(datetime.fromisoformat(e.time).timestamp() - T0, e.state) for e in engine.history
            if e.kind == "throughput_drop"]


@pytest.mark.parametrize("name", SERIES_WITH_METRICS + ["series-nometrics.jsonl"])
def test_throughput_alert_only_when_the_clients_saw_a_drop(name, servers, clock):
    """No false alarm while the server runs steadily: throughput_drop is raised on gpuwatch's
    readings exactly when it would be on the clients' own tok/s (a server really slowed down by
    the machine's other load), within a tick or two."""
    rows = replay(name, servers, clock)
    ours = throughput_alerts(rows, lambda r: r.gpuwatch)
    truth = throughput_alerts(rows, lambda r: r.client)
    assert [state for _, state in ours] == [state for _, state in truth]
    assert all(abs(a - b) <= 3.0 for (a, _), (b, _) in zip(ours, truth)), (ours, truth)


def test_recorded_series_have_provenance():
    text = (SERIES / "PROVENANCE.md").read_text()
    for f in SERIES.iterdir():
        if f.name != "PROVENANCE.md":
            assert f"`{f.name}`" in text, f.name


def test_alias_is_the_model_name_and_loading_is_not_down(servers, clock):
    """The --alias run: clients call the model `slow-llama-chat`, and so does gpuwatch. Before it,
    the same server answered 503 "Loading model" on every endpoint for its first second."""
    lines = [json.loads(line) for line in (SERIES / "series-alias.jsonl").read_text().splitlines()]
    loading = [x for x in lines if x["kind"] == "loading"]
    props, polls, _ = load("series-alias.jsonl")
    assert loading and all(x["status"] == 503 for x in loading)
    answer = (loading[0]["status"], loading[0]["body"])
    srv = servers({p: answer for p in ("/metrics", "/props", "/slots", "/health")})
    with InstanceCollector([BackendConfig(url=srv.url, kind="llamacpp")], discover=False, clock=clock.now,
                           prime_s=0.0) as col:
        first = col.collect()[0]
        srv.routes.update({"/metrics": polls[-1]["metrics"], "/props": props, "/slots": polls[-1]["slots"]})
        clock.advance(1.0)
        up = col.collect()[0]
    assert first.status == "loading" and first.error is None
    assert up.status == "up" and up.models[0].name == "slow-llama-chat" and up.models[0].quantization == "F32"
