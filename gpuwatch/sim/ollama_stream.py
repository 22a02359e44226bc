"""A streaming Ollama stand-in: a real HTTP server on loopback that generates at a known rate.

``POST /api/generate`` and ``/api/chat`` stream NDJSON as Ollama does (one chunk per token,
then the final chunk with ``eval_count``, ``eval_duration``, ``prompt_eval_count``...;
docs/api.md), ``/v1/chat/completions`` and ``/v1/completions`` stream SSE as Ollama's
OpenAI-compatible endpoints do (``usage`` in the last chunk only when the request asks for
``stream_options.include_usage``); ``stream: false`` gives one JSON answer. ``/api/version``
and ``/api/ps`` answer so gpuwatch recognises it. ``POST /upload`` reads a body of any size
as it arrives and answers its length and SHA-256 (the meter's large-body test).

It counts what a test needs to see: streams running, finished, and cut short by the client
(a disconnect stops the generation, as Ollama cancels the request's context). Used by the
meter's tests and ``bench/meter.py``; ``python -m gpuwatch.sim.ollama_stream --port N``
runs one on its own.

Each token chunk's text is ``"<n> "`` (its index), or with ``stamp=True`` the sender's
``time.perf_counter_ns()``, so a client on the same machine can measure delivery latency.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import threading
import time

from aiohttp import web

CREATED_AT = "2026-12-02T08:00:00.000000Z"  # fixed: two answers to one request are byte-identical


class StreamingOllama:
    def __init__(self, rate_tok_s: float = 50.0, tokens: int = 64, model: str = "llama3.2:3b", port: int = 0,
                 stamp: bool = False, version: str = "0.12.6", prompt_tokens: int = 26) -> None:
        self.rate = float(rate_tok_s)
        self.tokens = tokens  # default num_predict / max_tokens
        self.model = model
        self.port = port
        self.stamp = stamp
        self.version = version
        self.prompt_tokens = prompt_tokens
        self.active = 0
        self.finished = 0
        self.cancelled = 0
        self.tokens_sent = 0
        self.uploads: list[tuple[int, str]] = []
        self.changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None
        self._web: web.Server | None = None

    # ---- running in a thread (tests) ---------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StreamingOllama:
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="ollama-stream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("streaming Ollama stand-in did not start")
        return self

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)
        self._loop = None

    def wait_for(self, pred, timeout: float = 10.0) -> bool:
        """Wait until ``pred(self)`` holds (checked whenever a stream starts or ends)."""
        end = time.monotonic() + timeout
        with self.changed:
            while not pred(self):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.2))
        return True

    def __enter__(self) -> StreamingOllama:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the server ---------------------------------------------------------------------------
    async def serve(self) -> None:
        self._web = web.Server(self._handle, handler_cancellation=True, access_log=None)
        self._server = await asyncio.get_running_loop().create_server(self._web, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._web.shutdown(0.5)

    def _note(self, **delta: int) -> None:
        with self.changed:
            for k, v in delta.items():
                setattr(self, k, getattr(self, k) + v)
            self.changed.notify_all()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if request.method == "GET":
            if path == "/api/version":
                return web.json_response({"version": self.version})
            if path == "/api/ps":
                return web.json_response({"models": [{"name": self.model, "model": self.model, "size": 3 * 2**30,
                                                      "size_vram": 3 * 2**30, "digest": "0" * 64,
                                                      "expires_at": "2026-12-02T09:00:00Z", "context_length": 4096,
                                                      "details": {"parameter_size": "3.2B",
                                                                  "quantization_level": "Q4_K_M"}}]})
            if path == "/":
                return web.Response(text="Ollama is running")
            return web.Response(status=404, text="404 page not found")
        if path == "/upload":
            return await self._upload(request)
        try:
            body = json.loads(b"".join([c async for c in request.content.iter_any()]) or b"{}")
        except ValueError:
            return web.json_response({"error": "invalid JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "invalid JSON"}, status=400)
        if path in ("/api/generate", "/api/chat"):
            return await self._ollama(request, body, chat=path == "/api/chat")
        if path in ("/v1/chat/completions", "/v1/completions"):
            return await self._openai(request, body, chat=path == "/v1/chat/completions")
        return web.Response(status=404, text="404 page not found")

    async def _upload(self, request: web.BaseRequest) -> web.Response:
        h = hashlib.sha256()
        n = 0
        async for chunk in request.content.iter_any():
            h.update(chunk)
            n += len(chunk)
        self.uploads.append((n, h.hexdigest()))
        return web.json_response({"bytes": n, "sha256": h.hexdigest()})

    def _text(self, i: int) -> str:
        return f"{time.perf_counter_ns()} " if self.stamp else f"{i} "

    async def _tokens(self, n: int):
        """Yields token indices at ``self.rate`` per second, on a fixed schedule (no drift)."""
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / self.rate - time.perf_counter() if self.rate > 0 else 0
            if delay > 0:
                await asyncio.sleep(delay)
            yield i

    async def _stream(self, request, ctype: str, chunks) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": ctype})
        self._note(active=1)
        sent = 0
        try:
            await resp.prepare(request)
            async for data, is_token in chunks:
                await resp.write(data)
                sent += is_token
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self._note(active=-1, cancelled=1, tokens_sent=sent)
            raise
        self._note(active=-1, finished=1, tokens_sent=sent)
        return resp

    def _final_counts(self, n: int) -> dict:
        eval_ns = int(n / self.rate * 1e9) if self.rate > 0 else 0
        return {"total_duration": eval_ns + 150_000_000, "load_duration": 2_000_000,
                "prompt_eval_count": self.prompt_tokens, "prompt_eval_duration": 120_000_000,
                "eval_count": n, "eval_duration": eval_ns}

    async def _ollama(self, request, body: dict, chat: bool) -> web.StreamResponse:
        n = int((body.get("options") or {}).get("num_predict") or self.tokens)
        model = body.get("model") or self.model

        def chunk(text: str, done: bool) -> dict:
            d = {"model": model, "created_at": CREATED_AT}
            if chat:
                d["message"] = {"role": "assistant", "content": text}
            else:
                d["response"] = text
            d["done"] = done
            return d

        if body.get("stream") is False:
            text = "".join([self._text(i) async for i in self._tokens(n)])
            final = {**chunk(text, True), "done_reason": "stop", **self._final_counts(n)}
            self._note(finished=1, tokens_sent=n)
            return web.json_response(final)

        async def chunks():
            async for i in self._tokens(n):
                yield json.dumps(chunk(self._text(i), False)).encode() + b"\n", 1
            final = {**chunk("", True), "done_reason": "stop", **self._final_counts(n)}
            if not chat:
                final["context"] = list(range(self.prompt_tokens + n))
            yield json.dumps(final).encode() + b"\n", 0

        return await self._stream(request, "application/x-ndjson", chunks())

    async def _openai(self, request, body: dict, chat: bool) -> web.StreamResponse:
        n = int(body.get("max_tokens") or body.get("max_completion_tokens") or self.tokens)
        model = body.get("model") or self.model
        usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": n, "total_tokens": self.prompt_tokens + n}
        kind = "chat.completion" if chat else "text_completion"

        def choice(text: str, finish):
            if chat:
                return {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": finish}
            return {"index": 0, "text": text, "finish_reason": finish}

        if not body.get("stream"):
            text = "".join([self._text(i) async for i in self._tokens(n)])
            c = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"} if chat
                 else {"index": 0, "text": text, "finish_reason": "length"})
            self._note(finished=1, tokens_sent=n)
            return web.json_response({"id": "chatcmpl-sim", "object": kind, "created": 1764662400, "model": model,
                                      "choices": [c], "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def event(d: dict) -> bytes:
            return b"data: " + json.dumps(d).encode() + b"\n\n"

        async def chunks():
            base = {"id": "chatcmpl-sim", "object": kind + (".chunk" if chat else ""), "created": 1764662400,
                    "model": model, "system_fingerprint": "fp_ollama"}
            async for i in self._tokens(n):
                yield event({**base, "choices": [choice(self._text(i), None)]}), 1
            yield event({**base, "choices": [choice("", "length")]}), 0
            if include_usage:
                yield event({**base, "choices": [], "usage": usage}), 0
            yield b"data: [DONE]\n\n", 0

        return await self._stream(request, "text/event-stream", chunks())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="a streaming Ollama stand-in on loopback")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rate", type=float, default=50.0, help="tokens per second per stream")
    ap.add_argument("--tokens", type=int, default=64, help="tokens per request unless the request says")
    ap.add_argument("--stamp", action="store_true", help="each token's text is the send time (perf_counter_ns)")
    args = ap.parse_args(argv)
    srv = StreamingOllama(rate_tok_s=args.rate, tokens=args.tokens, port=args.port, stamp=args.stamp)

    async def run():
        await srv.serve()
        print(srv.port, flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
