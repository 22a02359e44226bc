"""Cost of one fleet refresh for N hosts x 8 GPUs (default 64 x 8), without a server.

The recorded answers of a real Prometheus scraping `gpuwatch serve --demo h100x8:hot`
(tests/fixtures/prometheus/gpuwatch-*.json, one host) are replicated to N hosts and served by
an in-process transport, so the figures are gpuwatch's own cost: JSON decoding, samples ->
snapshots, the alert rules and history of every host. Network and Prometheus's own query time
come on top (on loopback, Prometheus 2.42 answered the two queries for one host in ~5-10 ms).

    python bench/fleet.py [--hosts 64] [--refreshes 24] [--every 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from gpuwatch import gcpause  # noqa: E402
from gpuwatch.fleet.mapping import FleetBuilder, build_queries  # noqa: E402
from gpuwatch.fleet.promql import PromClient, parse_vector  # noqa: E402
from gpuwatch.fleet.source import FleetSource  # noqa: E402

FIX = ROOT / "tests" / "fixtures" / "prometheus"


def replicate(doc: dict, hosts: int) -> dict:
    out = copy.deepcopy(doc)
    result = []
    for h in range(hosts):
        for item in doc["data"]["result"]:
            m = dict(item["metric"])
            m["host"] = f"node-{h:03d}"
            m["instance"] = f"10.0.{h // 250}.{h % 250}:9835"
            result.append({"metric": m, "value": list(item["value"])})
    out["data"]["result"] = result
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--refreshes", type=int, default=24)
    ap.add_argument("--every", type=float, default=5.0, help="seconds between refreshes (the fleet screen's default)")
    a = ap.parse_args()
    kinds = ("gauges", "rates", "static")
    bodies = {k: json.dumps(replicate(json.loads((FIX / f"gpuwatch-{k}.json").read_text()), a.hosts)).encode()
              for k in kinds}
    names = {q: k for k, q in build_queries().items()}
    calls = []

    def handler(request):
        if request.url.path != "/api/v1/query":
            return httpx.Response(404)
        kind = names[dict(httpx.QueryParams(request.content.decode()))["query"]]
        calls.append(kind)
        return httpx.Response(200, content=bodies[kind], headers={"content-type": "application/json"})

    # the refreshes' clock: one every --every seconds (the static properties are asked for once a minute)
    now = [json.loads(bodies["gauges"])["data"]["result"][0]["value"][0]]
    src = FleetSource("http://bench:9090", client=PromClient("http://bench:9090", transport=httpx.MockTransport(handler)),
                      wall=lambda: now[0])
    plain, static, parse = [], [], []
    for _ in range(a.refreshes):
        calls.clear()
        r = src.refresh()
        now[0] += a.every
        assert r.error is None and len(r.hosts) == a.hosts, r.error
        (static if "static" in calls else plain).append(r.refresh_ms)
        parse.append(r.parse_ms)
    src.close()
    decode = []
    for _ in range(5):
        t = time.perf_counter()
        with gcpause.paused():  # as the client decodes them
            results = [parse_vector(json.loads(bodies[k])) for k in ("gauges", "rates")]
        decode.append((time.perf_counter() - t) * 1000)
    b = FleetBuilder()
    for r in results:
        b.add(r)
    gpus = sum(len(s.gpus) for s in b.snapshots("2026-01-01T00:00:00.000Z"))
    samples = sum(len(r.samples) for r in results)
    kb = sum(len(bodies[k]) for k in ("gauges", "rates")) / 1024
    med = statistics.median
    share = len(static) / a.refreshes
    print(f"fleet refresh, {a.hosts} hosts x {gpus // a.hosts} GPUs ({gpus} GPUs), one every {a.every:g} s: "
          f"{samples} samples, {kb:.0f} KiB of JSON in the gauges and rates (+ {len(bodies['static']) / 1024:.0f} KiB "
          f"of static properties once a minute)")
    print(f"  whole refresh (transport, JSON, mapping, alert rules, history): median {med(plain):.1f} ms, "
          f"max {max(plain):.1f} ms")
    print(f"  a refresh that also reads the static properties ({share:.0%} of them): median {med(static):.1f} ms")
    print(f"  JSON decode + vector parse of the gauges and rates: median {med(decode):.1f} ms")
    print(f"  samples -> snapshots:      median {med(parse):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
