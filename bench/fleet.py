"""Cost of one fleet refresh for N hosts x 8 GPUs (default 64 x 8), without a server.

The recorded answers of a real Prometheus scraping `gpuwatch serve --demo h100x8:hot`
(tests/fixtures/prometheus/gpuwatch-*.json, one host) are replicated to N hosts and served by
an in-process transport, so the figures are gpuwatch's own cost: JSON decoding, samples ->
snapshots, the alert rules and history of every host. Network and Prometheus's own query time
come on top (on loopback, Prometheus 2.42 answered the two queries for one host in ~5-10 ms).

    python bench/fleet.py [--hosts 64] [--refreshes 20]
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

from gpuwatch.fleet.mapping import FleetBuilder  # noqa: E402
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
    ap.add_argument("--refreshes", type=int, default=20)
    a = ap.parse_args()
    bodies = {k: json.dumps(replicate(json.loads((FIX / f"gpuwatch-{k}.json").read_text()), a.hosts)).encode()
              for k in ("gauges", "rates")}
    calls = []

    def handler(request):
        q = dict(httpx.QueryParams(request.content.decode()))["query"]
        calls.append(q)
        return httpx.Response(200, content=bodies["rates" if "label_replace" in q else "gauges"],
                              headers={"content-type": "application/json"})

    src = FleetSource("http://bench:9090", client=PromClient("http://bench:9090", transport=httpx.MockTransport(handler)))
    total, parse, decode = [], [], []
    for _ in range(a.refreshes):
        calls.clear()
        r = src.refresh()
        assert r.error is None and len(r.hosts) == a.hosts, r.error
        total.append(r.refresh_ms)
        parse.append(r.parse_ms)
    queries = len(calls)
    for _ in range(a.refreshes):
        t = time.perf_counter()
        results = [parse_vector(json.loads(b)) for b in bodies.values()]
        decode.append((time.perf_counter() - t) * 1000)
    b = FleetBuilder()
    for r in results:
        b.add(r)
    src.close()
    gpus = sum(len(s.gpus) for s in b.snapshots("2026-01-01T00:00:00.000Z"))
    samples = sum(len(r.samples) for r in results)
    kb = sum(len(x) for x in bodies.values()) / 1024
    med = statistics.median
    print(f"fleet refresh, {a.hosts} hosts x {gpus // a.hosts} GPUs ({gpus} GPUs), {samples} samples, "
          f"{kb:.0f} KiB of JSON, {queries} queries per refresh")
    print(f"  whole refresh (transport, JSON, mapping, alert rules, history): median {med(total):.1f} ms, "
          f"max {max(total):.1f} ms")
    print(f"  JSON decode + vector parse: median {med(decode):.1f} ms")
    print(f"  samples -> snapshots:      median {med(parse):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
