"""The other stack considered for `gpuwatch meter`: an ASGI server (uvicorn with httptools) and
httpx's async client, doing what gpuwatch/meter/proxy.py does (stream both ways, hop-by-hop
fields dropped, the same body parser and counters). Only for ``bench/meter.py --stack asgi``,
to compare the two stacks under the same load; not shipped.

    python bench/meter_asgi.py LISTEN_PORT UPSTREAM_URL
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from gpuwatch.meter import names  # noqa: E402
from gpuwatch.meter.metrics import MeterMetrics, Tally  # noqa: E402
from gpuwatch.meter.parse import BodyReader, body_format  # noqa: E402
from gpuwatch.meter.proxy import HOP_BY_HOP  # noqa: E402


def make_app(upstream: str, route: str):
    metrics = MeterMetrics({route: upstream})
    client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10.0), limits=httpx.Limits(max_connections=None),
                               trust_env=False)
    host = upstream.split("://", 1)[1]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        start = time.perf_counter()
        path = scope["path"]
        counted = scope["method"] == "POST" and path in names.INFERENCE_PATHS
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k.decode().lower() not in HOP_BY_HOP
                   and k.decode().lower() != "host"] + [("host", host)]

        async def body():
            while True:
                msg = await receive()
                if msg.get("body"):
                    yield msg["body"]
                if not msg.get("more_body"):
                    return

        url = upstream + scope["raw_path"].decode() + (("?" + scope["query_string"].decode())
                                                        if scope["query_string"] else "")
        req = client.build_request(scope["method"], url, headers=headers,
                                   content=body() if scope["method"] in ("POST", "PUT", "PATCH") else None)
        tally = Tally(metrics, route, start) if counted else None
        r = await client.send(req, stream=True)
        try:
            out = [(k, v) for k, v in r.headers.raw if k.decode().lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": r.status_code, "headers": out})
            reader = BodyReader(body_format(r.headers.get("content-type")), tally) if tally else None
            async for chunk in r.aiter_raw():
                if reader is not None:
                    reader.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await r.aclose()
            if tally is not None:
                tally.done(r.status_code)

    return app


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2].rstrip("/")
    app = make_app(upstream, f"127.0.0.1:{port}")
    print("asgi ready", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop="asyncio", log_level="warning",
                access_log=False, timeout_keep_alive=75)


if __name__ == "__main__":
    main()
