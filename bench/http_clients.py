"""CPU per request of the HTTP clients gpuwatch could poll servers with, on loopback.

    python bench/http_clients.py [--requests 300]

A loopback aiohttp server answers ``/metrics`` with 7.9 kB of Prometheus text (one vLLM
server's size) on its own thread; each client fetches it through gpuwatch's ``Fetcher`` (body
cap, decoding, error wording) with keep-alive, and the figure is the polling thread's CPU time
per request (``time.thread_time``), after 20 warm-up requests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from aiohttp import web  # noqa: E402

from gpuwatch.collect.engines.base import Fetcher  # noqa: E402
from gpuwatch.collect.http11 import KeepAliveClient  # noqa: E402

BODY = ('vllm:metric{model="m",le="0.5"} 12345.0\n' * 200).encode()[:7900]


def serve() -> str:
    loop = asyncio.new_event_loop()

    async def start() -> str:
        app = web.Application()
        app.router.add_get("/metrics", lambda r: web.Response(body=BODY))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    url = loop.run_until_complete(start())
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return url


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    url = serve()
    for name, make in (("httpx.AsyncClient", httpx.AsyncClient),
                       ("aiohttp (KeepAliveClient)", lambda: KeepAliveClient(connect_timeout_s=1.0))):
        async def run() -> float:
            client = make()
            f = Fetcher(client, url)
            try:
                for _ in range(20):
                    await f.get_text("/metrics")
                t = time.thread_time()
                for _ in range(args.requests):
                    await f.get_text("/metrics")
                return (time.thread_time() - t) / args.requests * 1000
            finally:
                await client.aclose()
        print(f"{name:28s} {asyncio.run(run()):.3f} ms CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
