"""What `gpuwatch meter` costs: 50 concurrent streaming clients on loopback, direct against
through the meter.

Three processes: the streaming Ollama stand-in (gpuwatch/sim/ollama_stream.py, ``--stamp``: each
token's text is the sender's ``time.perf_counter_ns()``), the meter (a real ``gpuwatch meter``
subprocess), and the clients (one asyncio process, ``--clients`` streams of ``/api/generate``,
each starting a new request when one ends). For every NDJSON line a client receives it takes
``perf_counter_ns()`` minus the stamp: the delivery latency of that chunk (CLOCK_MONOTONIC is
one clock for all processes of the machine). The same load runs direct to the stand-in and
through the meter, one after the other, ``--rounds`` times (and through a plain asyncio TCP
relay with no HTTP, the floor for any extra process hop on the machine); added latency is the
meter's quantile minus the direct one of the same round. ``--side-by-side`` runs the direct and
the metered clients at the same time instead, so noise from other jobs on the machine falls on
both alike. Time to first byte is per request, from sending it to the first byte of the answer.
The meter's CPU is its process's user+system time over the metered phase, per 1,000 tokens the
clients received; RSS is its peak (VmHWM) at the end.

    python bench/meter.py [--clients 50] [--rate 20] [--seconds 20] [--rounds 2] [--side-by-side]
                          [--stack aiohttp|asgi] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import psutil  # noqa: E402

MARK = b'"response": "'


def free_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def q(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


async def client(session: aiohttp.ClientSession, url: str, tokens: int, until: float, lat: list, ttfb: list,
                 count: list) -> None:
    body = {"model": "llama3.2:3b", "prompt": "bench", "options": {"num_predict": tokens}}
    until_ns = int(until * 1e9)
    while time.perf_counter() < until:
        t0 = time.perf_counter_ns()
        async with session.post(url + "/api/generate", json=body) as r:
            first = True
            async for line in r.content:
                now = time.perf_counter_ns()
                if now > until_ns:
                    return  # the window is over: measure nothing after it (the client disconnects)
                if first:
                    ttfb.append((now - t0) / 1e6)
                    first = False
                i = line.find(MARK)
                if i < 0:
                    continue
                j = line.find(b" ", i + len(MARK))
                if j > 0 and line[i + len(MARK):j].isdigit():
                    lat.append((now - int(line[i + len(MARK):j])) / 1e6)
                    count[0] += 1


async def load(url: str, clients: int, tokens: int, seconds: float, warmup: float = 2.0) -> dict:
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as s:
        lat: list[float] = []
        ttfb: list[float] = []
        count = [0]
        start = time.perf_counter()
        tasks = [asyncio.create_task(client(s, url, tokens, start + warmup + seconds, lat, ttfb, count))
                 for _ in range(clients)]
        await asyncio.sleep(warmup)
        lat.clear()
        ttfb.clear()
        count[0] = 0
        await asyncio.gather(*tasks)
    return {"lat": lat, "ttfb": ttfb, "tokens": count[0]}


async def relay(listen: int, upstream: int) -> None:
    """The floor for any proxy process on this machine: a plain asyncio TCP relay, bytes copied
    both ways with no HTTP at all (what an extra process hop costs by itself)."""
    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except ConnectionError:
            pass
        finally:
            w.close()

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            cw.close()
            return
        for w in (cw, uw):
            w.transport.get_extra_info("socket").setsockopt(6, 1, 1)  # TCP_NODELAY
        await asyncio.gather(pipe(cr, uw), pipe(ur, cw))

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("relay ready", file=sys.stderr, flush=True)
    await server.serve_forever()


def wait_port(port: int, timeout: float = 30.0) -> None:
    import socket
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start(args: list[str], ready: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, cwd=ROOT)
    if ready is not None:
        while True:
            line = p.stderr.readline()
            if not line:
                raise RuntimeError("did not start: " + " ".join(args))
            if ready in line:
                break
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rate", type=float, default=20.0, help="tok/s per stream (50 x 20 = 1,000 tok/s)")
    ap.add_argument("--tokens", type=int, default=200, help="tokens per request")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--stack", choices=("aiohttp", "asgi"), default="aiohttp",
                    help="aiohttp: `gpuwatch meter` itself; asgi: the same proxy on uvicorn+httptools and httpx "
                         "(bench/meter_asgi.py, needs `pip install uvicorn httptools`)")
    ap.add_argument("--side-by-side", action="store_true",
                    help="run the direct and the metered clients at the same time (each --clients streams), so "
                         "both see the same load from other jobs on the machine")
    ap.add_argument("--relay", nargs=2, type=int, metavar=("LISTEN", "UPSTREAM"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.relay:
        asyncio.run(relay(*args.relay))
        return

    up_port, listen, metrics = free_port(), free_port(), free_port()
    upstream = start(["-m", "gpuwatch.sim.ollama_stream", "--port", str(up_port), "--rate", str(args.rate),
                      "--stamp"])
    upstream.stdout.readline()
    if args.stack == "aiohttp":
        meter = start(["-m", "gpuwatch", "meter", "--route", f"127.0.0.1:{listen}=http://127.0.0.1:{up_port}",
                       "--metrics", f"127.0.0.1:{metrics}"], ready="metrics on")
    else:
        meter = start([str(Path(__file__).with_name("meter_asgi.py")), str(listen), f"http://127.0.0.1:{up_port}"],
                      ready="asgi ready")
    wait_port(listen)
    relay_port = free_port()
    relayp = start([str(Path(__file__).resolve()), "--relay", str(relay_port), str(up_port)], ready="relay ready")
    mp = psutil.Process(meter.pid)
    rows = []
    try:
        for _ in range(args.rounds):
            if args.side_by_side:
                async def both():
                    return await asyncio.gather(
                        load(f"http://127.0.0.1:{up_port}", args.clients, args.tokens, args.seconds),
                        load(f"http://127.0.0.1:{listen}", args.clients, args.tokens, args.seconds))
                c0 = mp.cpu_times()
                direct, metered = asyncio.run(both())
                c1 = mp.cpu_times()
            else:
                direct = asyncio.run(load(f"http://127.0.0.1:{up_port}", args.clients, args.tokens, args.seconds))
                c0 = mp.cpu_times()
                metered = asyncio.run(load(f"http://127.0.0.1:{listen}", args.clients, args.tokens, args.seconds))
                c1 = mp.cpu_times()
            relayed = asyncio.run(load(f"http://127.0.0.1:{relay_port}", args.clients, args.tokens, args.seconds))
            cpu_s = (c1.user - c0.user) + (c1.system - c0.system)
            rows.append({
                "relay_added_p50_ms": q(relayed["lat"], 0.5) - q(direct["lat"], 0.5),
                "relay_added_p99_ms": q(relayed["lat"], 0.99) - q(direct["lat"], 0.99),
                "direct_p50_ms": q(direct["lat"], 0.5), "direct_p99_ms": q(direct["lat"], 0.99),
                "meter_p50_ms": q(metered["lat"], 0.5), "meter_p99_ms": q(metered["lat"], 0.99),
                "added_p50_ms": q(metered["lat"], 0.5) - q(direct["lat"], 0.5),
                "added_p99_ms": q(metered["lat"], 0.99) - q(direct["lat"], 0.99),
                "ttfb_direct_p50_ms": q(direct["ttfb"], 0.5), "ttfb_meter_p50_ms": q(metered["ttfb"], 0.5),
                "ttfb_direct_p99_ms": q(direct["ttfb"], 0.99), "ttfb_meter_p99_ms": q(metered["ttfb"], 0.99),
                "tokens_per_s": metered["tokens"] / args.seconds,
                "meter_cpu_ms_per_1k_tokens": 1000 * cpu_s / max(1, metered["tokens"]) * 1000,
                "meter_cpu_pct_of_core": 100 * cpu_s / args.seconds,
            })
        with open(f"/proc/{meter.pid}/status") as fh:
            hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
    finally:
        for p in (meter, relayp, upstream):
            p.terminate()
            p.wait(10)
    out = {"stack": args.stack, "clients": args.clients, "rate_per_stream": args.rate, "seconds": args.seconds, "rounds": rows,
           "meter_peak_rss_mib": hwm / 1024, "nproc": os.cpu_count()}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.stack}: {args.clients} streams x {args.rate:g} tok/s, {args.seconds:g} s per phase, "
          f"{os.cpu_count()} CPUs")
    print("| round | per-chunk latency direct p50/p99 | through meter p50/p99 | added p50/p99 | plain TCP relay added "
          "p50/p99 | TTFB p50 direct/meter | tok/s | meter CPU per 1k tokens | meter CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows, 1):
        print(f"| {i} | {r['direct_p50_ms']:.2f} / {r['direct_p99_ms']:.2f} ms | {r['meter_p50_ms']:.2f} / "
              f"{r['meter_p99_ms']:.2f} ms | {r['added_p50_ms']:.2f} / {r['added_p99_ms']:.2f} ms | "
              f"{r['relay_added_p50_ms']:.2f} / {r['relay_added_p99_ms']:.2f} ms | "
              f"{r['ttfb_direct_p50_ms']:.1f} / {r['ttfb_meter_p50_ms']:.1f} ms | {r['tokens_per_s']:.0f} | "
              f"{r['meter_cpu_ms_per_1k_tokens']:.0f} ms | {r['meter_cpu_pct_of_core']:.1f} % |")
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"meter peak RSS {hwm / 1024:.1f} MiB; medians: added p50/p99 {med['added_p50_ms']:.2f} / "
          f"{med['added_p99_ms']:.2f} ms (plain relay {med['relay_added_p50_ms']:.2f} / {med['relay_added_p99_ms']:.2f}), "
          f"meter CPU {med['meter_cpu_ms_per_1k_tokens']:.0f} ms per 1k tokens; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
