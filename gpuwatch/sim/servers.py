"""Simulated inference servers: real HTTP servers on 127.0.0.1 ephemeral ports, one per
``InstanceSpec`` of the scenario, answering in that engine's real format with numbers from
``SimBox.instance_state`` (token counters are exact integrals of the box's rates).

The demo polls them with the same collector code as a real box; a test can poll them too.
An instance whose GPU is lost answers HTTP 500, as a crashed engine behind a live API does.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from ..collect.targets import BackendConfig  # (not .instances: that imports the HTTP stack)
from .box import SimBox
from .quiet import QuietHTTPServer
from .scenarios import InstanceSpec

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0)
# how observations spread around the current typical value: (factor, share)
_SPREAD = ((0.6, 0.2), (1.0, 0.5), (1.4, 0.25), (2.5, 0.05))


class _Hist:
    """A cumulative histogram that only grows (as a real server's does)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.seen = 0  # observations counted so far (the source counter's value)

    def advance(self, total: int, center: float) -> None:
        n = total - self.seen
        if n <= 0:
            self.seen = max(self.seen, total) if n == 0 else total  # n < 0: source restarted; keep growing
            return
        self.seen = total
        left = n
        for i, (factor, share) in enumerate(_SPREAD):
            k = left if i == len(_SPREAD) - 1 else int(round(n * share))
            k = min(k, left)
            left -= k
            value = center * factor
            self.counts[self._bucket(value)] += k
            self.sum += k * value

    def _bucket(self, value: float) -> int:
        for i, b in enumerate(self.bounds):
            if value <= b:
                return i
        return len(self.bounds)

    def lines(self, name: str, labels: str) -> list[str]:
        out = [f"# TYPE {name} histogram"]
        cum = 0
        for b, c in zip(self.bounds, self.counts):
            cum += c
            out.append(f'{name}_bucket{{{labels},le="{b}"}} {float(cum)}')
        cum += self.counts[-1]
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {float(cum)}')
        out.append(f"{name}_count{{{labels}}} {float(cum)}")
        out.append(f"{name}_sum{{{labels}}} {self.sum}")
        return out


class _SimServer(QuietHTTPServer):
    # probing asks up to 8 paths at once; socketserver's default backlog of 5 drops the rest
    # (a real engine's server listens with a backlog in the hundreds)
    request_queue_size = 64

    def __init__(self, box: SimBox, spec: InstanceSpec) -> None:
        try:  # the instance's own port (the demo then looks like the real layout), else any
            super().__init__(("127.0.0.1", spec.port or 0), _Handler)
        except OSError:
            super().__init__(("127.0.0.1", 0), _Handler)
        self.box = box
        self.spec = spec
        self.lock = threading.Lock()
        self.ttft = _Hist(TTFT_BUCKETS)
        self.itl = _Hist(ITL_BUCKETS)
        # decode steps so far (SGLang's cuda_graph_passes, TGI's decode inference count): one
        # step makes one token per running request
        self.steps = 0.0
        self._last_gen = None
        # llama.cpp's seconds of generation so far: each finished token adds the time it took
        # then (a counter: it never goes down, however the speed changes)
        self._gen_done = 0
        self._gen_seconds = 0.0

    # ---- bodies -----------------------------------------------------------------------
    def state(self):
        return self.box.instance_state(self.spec.name)

    def up(self) -> bool:
        return self.box.instance_up(self.spec, self.box.t())

    def prom(self) -> str:
        spec, st = self.spec, self.state()
        with self.lock:
            self.ttft.advance(st.requests_total, max(st.ttft_s, 0.001))
            self.itl.advance(st.generation_tokens_total, max(st.itl_s, 0.005))
            gen = st.generation_tokens_total
            if self._last_gen is not None and gen >= self._last_gen:
                self.steps += (gen - self._last_gen) / max(1, st.requests_running)
            self._last_gen = gen
            if spec.kind == "vllm":
                return self._vllm(st)
            if spec.kind == "sglang":
                return self._sglang(st)
            if spec.kind == "tgi":
                return self._tgi(st)
            if spec.kind == "llamaswap":
                return self._llamaswap()
            return self._llamacpp(st)

    def _vllm(self, st) -> str:
        lb = f'engine="0",model_name="{self.spec.model}"'
        lines = []

        def metric(name, kind, value, help_=""):
            lines.append(f"# HELP {name} {help_ or name}")
            lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name}{{{lb}}} {float(value)}")

        metric("vllm:num_requests_running", "gauge", st.requests_running, "Number of requests in model execution batches.")
        metric("vllm:num_requests_waiting", "gauge", st.requests_waiting, "Number of requests waiting to be processed.")
        metric("vllm:kv_cache_usage_perc", "gauge", st.kv_cache_usage, "KV-cache usage. 1 means 100 percent usage.")
        metric("vllm:num_preemptions_total", "counter", st.preemptions_total, "Cumulative number of preemption from the engine.")
        metric("vllm:prompt_tokens_total", "counter", st.prompt_tokens_total, "Number of prefill tokens processed.")
        metric("vllm:generation_tokens_total", "counter", st.generation_tokens_total, "Number of generation tokens processed.")
        metric("vllm:prefix_cache_queries_total", "counter", st.prompt_tokens_total, "Prefix cache queries, in terms of number of queried tokens.")
        metric("vllm:prefix_cache_hits_total", "counter", int(0.42 * st.prompt_tokens_total), "Prefix cache hits, in terms of number of cached tokens.")
        metric("vllm:request_success_total", "counter", st.requests_total, "Count of successfully processed requests.")
        lines += self.ttft.lines("vllm:time_to_first_token_seconds", lb)
        lines += self.itl.lines("vllm:inter_token_latency_seconds", lb)
        lines.append("# HELP vllm:engine_sleep_state Engine sleep state; awake = 0 means engine is sleeping")
        lines.append("# TYPE vllm:engine_sleep_state gauge")
        for state, v in (("awake", 1), ("weights_offloaded", 0), ("discard_all", 0)):
            lines.append(f'vllm:engine_sleep_state{{{lb},sleep_state="{state}"}} {float(v)}')
        return "\n".join(lines) + "\n"

    def _sglang(self, st) -> str:
        lb = f'model_name="{self.spec.model}"'
        lines = []

        def metric(name, kind, value):
            lines.append(f"# HELP {name} {name}")
            lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name}{{{lb}}} {float(value)}")

        metric("sglang:num_running_reqs", "gauge", st.requests_running)
        metric("sglang:num_queue_reqs", "gauge", st.requests_waiting)
        metric("sglang:token_usage", "gauge", st.kv_cache_usage)
        metric("sglang:cache_hit_rate", "gauge", 0.38)
        metric("sglang:gen_throughput", "gauge", st.generation_tokens_per_s)
        metric("sglang:prompt_tokens_total", "counter", st.prompt_tokens_total)
        metric("sglang:generation_tokens_total", "counter", st.generation_tokens_total)
        metric("sglang:num_requests_total", "counter", st.requests_total)
        lines.append("# TYPE sglang:cuda_graph_passes_total counter")
        lines.append(f'sglang:cuda_graph_passes_total{{{lb},mode="decode_cuda_graph"}} {float(int(self.steps))}')
        lines += self.ttft.lines("sglang:time_to_first_token_seconds", lb)
        lines += self.itl.lines("sglang:inter_token_latency_seconds", lb)
        return "\n".join(lines) + "\n"

    def _tgi(self, st) -> str:
        """TGI's router: metrics-exporter-prometheus layout (no _total, no HELP), names.TGI."""
        lines = ["# TYPE tgi_batch_inference_count counter",
                 f'tgi_batch_inference_count{{method="prefill"}} {st.requests_total}',
                 f'tgi_batch_inference_count{{method="decode"}} {int(self.steps)}',
                 "# TYPE tgi_batch_current_size gauge", f"tgi_batch_current_size {st.requests_running}",
                 "# TYPE tgi_queue_size gauge", f"tgi_queue_size {st.requests_waiting}",
                 "# TYPE tgi_request_count counter", f"tgi_request_count {st.requests_total}",
                 "# TYPE tgi_request_generated_tokens histogram",
                 f'tgi_request_generated_tokens_bucket{{le="+Inf"}} {st.requests_total}',
                 f"tgi_request_generated_tokens_sum {float(st.generation_tokens_total)}",
                 f"tgi_request_generated_tokens_count {st.requests_total}"]
        return "\n".join(lines) + "\n"

    def _llamaswap(self) -> str:
        """llama-swap's /metrics: host and GPU figures only (internal/perf/prometheus.go)."""
        return ("# HELP llamaswap_memory_used_bytes Used memory in bytes\n# TYPE llamaswap_memory_used_bytes gauge\n"
                "llamaswap_memory_used_bytes 34359738368\n")

    def _llamacpp(self, st) -> str:
        # as llama.cpp b11434 does (collect/engines/names.py LLAMACPP): generated tokens reach the
        # counter when a request ends; until then they are the busy slots' n_decoded
        done, _ = llamacpp_split(st)
        itl = st.itl_s or 0.02
        if done < self._gen_done:  # the box restarted the server (the caller holds self.lock)
            self._gen_done, self._gen_seconds = 0, 0.0
        self._gen_seconds += (done - self._gen_done) * itl
        self._gen_done = done
        gen_seconds = self._gen_seconds
        rows = [
            ("llamacpp:prompt_tokens_total", "counter", int(0.6 * st.prompt_tokens_total)),
            ("llamacpp:prompt_tokens_cached_total", "counter", st.prompt_tokens_total - int(0.6 * st.prompt_tokens_total)),
            ("llamacpp:prompt_seconds_total", "counter", st.prompt_tokens_total / 2000.0),
            ("llamacpp:tokens_predicted_total", "counter", done),
            ("llamacpp:tokens_predicted_seconds_total", "counter", round(gen_seconds, 3)),
            ("llamacpp:n_decode_total", "counter", done),
            ("llamacpp:n_tokens_max", "counter", 8192),
            ("llamacpp:spec_decode_num_draft_tokens_total", "counter", 0),
            ("llamacpp:spec_decode_num_accepted_tokens_total", "counter", 0),
            ("llamacpp:spec_decode_num_drafts_total", "counter", 0),
            ("llamacpp:prompt_tokens_seconds", "gauge", 0.0),
            ("llamacpp:predicted_tokens_seconds", "gauge", 0.0),
            ("llamacpp:requests_processing", "gauge", st.requests_running),
            ("llamacpp:requests_deferred", "gauge", st.requests_waiting),
            ("llamacpp:n_busy_slots_per_decode", "gauge", max(1, st.requests_running)),
        ]
        lines = []
        for name, kind, value in rows:
            lines += [f"# HELP {name} {name}", f"# TYPE {name} {kind}", f"{name} {float(value)}"]
        return "\n".join(lines) + "\n"

    def llamacpp_slots(self) -> list[dict]:
        """/slots as llama.cpp answers it (the fields gpuwatch reads; b11434 ``server_slot::to_json``)."""
        st = self.state()
        _, per_slot = llamacpp_split(st)
        task = st.generation_tokens_total // LLAMACPP_REQUEST_TOKENS
        out = []
        for i in range(SLOTS):
            busy = i < len(per_slot)
            n = per_slot[i] if busy else 0
            prompt = 180 + 40 * i
            out.append({"id": i, "n_ctx": LLAMACPP_N_CTX // SLOTS, "speculative": False, "is_processing": busy,
                        "id_task": int(task * SLOTS + i), "n_prompt_tokens": prompt + n,
                        "n_prompt_tokens_processed": prompt // 3 if busy else 0,
                        "n_prompt_tokens_cache": prompt - prompt // 3 if busy else 0,
                        "next_token": [{"has_next_token": busy, "has_new_line": False,
                                        "n_remain": LLAMACPP_REQUEST_TOKENS - n if busy else -1, "n_decoded": n}]})
        return out


SLOTS = 4
LLAMACPP_N_CTX = 8192
LLAMACPP_REQUEST_TOKENS = 256  # the simulated clients' requests generate this many tokens each


def llamacpp_split(st) -> tuple[int, list[int]]:
    """(tokens of finished requests, n_decoded of each busy slot): the box's smooth token count
    cut into requests of LLAMACPP_REQUEST_TOKENS, the running one's tokens spread over the busy
    slots. The two always add up to the box's count."""
    total = st.generation_tokens_total
    done = total - total % LLAMACPP_REQUEST_TOKENS
    busy = min(SLOTS, st.requests_running)
    if busy <= 0:
        return total, []
    live = total - done
    return done, [live // busy + (live % busy if i == 0 else 0) for i in range(busy)]


def _iso_in(seconds: float) -> str:
    return (_dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=seconds)).isoformat()


class _Handler(BaseHTTPRequestHandler):
    server: _SimServer
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; without this a keep-alive client waits 40 ms
    # for the delayed ACK on every request
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # quiet
        pass

    def _send(self, code: int, body: bytes | str, ctype: str = "application/json") -> None:
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data, code: int = 200) -> None:
        self._send(code, json.dumps(data))

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            self.body = json.loads(raw) if raw else {}
        except ValueError:
            self.body = {}
        self._route("POST")

    def _route(self, method: str) -> None:
        srv, spec = self.server, self.server.spec
        path = urlsplit(self.path).path
        if not srv.up():
            self._json({"error": "CUDA error: unspecified launch failure"}, 500)
            return
        handler = getattr(self, f"_{spec.kind}", None)
        if handler is None or not handler(method, path):
            self._json({"error": "not found"}, 404)

    # ---- engines: return True when the path was handled ------------------------------------
    def _openai(self, method: str, path: str) -> bool:
        spec = self.server.spec
        # llama.cpp without --alias names its model by the file's path
        model_id = f"/models/{spec.model}" if spec.kind == "llamacpp" else spec.model
        if method == "GET" and path == "/v1/models":
            self._json({"object": "list", "data": [{"id": model_id, "object": "model", "owned_by": spec.kind}]})
            return True
        if method == "POST" and path == "/v1/completions":
            st = self.server.state()
            n = int(self.body.get("max_tokens") or 16)
            # this model's single-stream speed (throttling included), shared a little with the
            # requests already running; the answer takes that long (capped: a demo must not hang)
            srv = self.server
            factor = srv.box._throughput_factor_at(spec, srv.box.t())
            per_stream = max(spec.single_stream_tok_s * factor / (1 + 0.01 * st.requests_running), 1.0)
            time.sleep(min(4.0, n / per_stream))
            n = min(n, max(1, int(4.0 * per_stream)))
            answer = {"id": "cmpl-sim", "object": "text_completion", "model": model_id,
                      "choices": [{"index": 0, "text": " simulated", "finish_reason": "length"}],
                      "usage": {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}}
            if spec.kind == "llamacpp":  # its own decode and prompt timings (server-task.cpp result_timings)
                prompt_ms = 12 / max(3.2 * spec.peak_tokens_per_s, 50.0) * 1000
                answer["timings"] = {"prompt_n": 12, "prompt_ms": prompt_ms, "prompt_per_second": 12 / prompt_ms * 1000,
                                     "predicted_n": n, "predicted_ms": n / per_stream * 1000,
                                     "predicted_per_second": per_stream}
            self._json(answer)
            return True
        if method == "GET" and path == "/health":
            self._send(200, b"", "text/plain")
            return True
        return False

    def _vllm(self, method: str, path: str) -> bool:
        if method == "GET" and path == "/metrics":
            self._send(200, self.server.prom(), "text/plain; version=0.0.4; charset=utf-8")
            return True
        if method == "GET" and path == "/version":
            self._json({"version": self.server.spec.version})
            return True
        return self._openai(method, path)

    def _sglang(self, method: str, path: str) -> bool:
        spec = self.server.spec
        if method == "GET" and path == "/metrics":
            self._send(200, self.server.prom(), "text/plain; version=0.0.4; charset=utf-8")
            return True
        if method == "GET" and path == "/get_model_info":
            self._json({"model_path": spec.model, "tokenizer_path": spec.model, "is_generation": True})
            return True
        if method == "GET" and path == "/get_server_info":
            self._json({"version": spec.version, "model_path": spec.model})
            return True
        return self._openai(method, path)

    def _llamacpp(self, method: str, path: str) -> bool:
        spec = self.server.spec
        if method == "GET" and path == "/metrics":
            self._send(200, self.server.prom(), "text/plain; version=0.0.4")
            return True
        if self.server.box.t() < spec.loading_s:  # every endpoint, as llama.cpp's server-http.cpp
            self._json({"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}, 503)
            return True
        if method == "GET" and path == "/props":
            self._json({"default_generation_settings": {"n_ctx": LLAMACPP_N_CTX // SLOTS, "params": {"n_predict": -1}},
                        "total_slots": SLOTS, "model_path": f"/models/{spec.model}",
                        "model_alias": f"/models/{spec.model}", "model_ftype": "Q8_0", "build_info": spec.version,
                        "modalities": {"vision": False}, "endpoint_slots": True, "endpoint_metrics": True,
                        "is_sleeping": False})
            return True
        if method == "GET" and path == "/slots":
            self._json(self.server.llamacpp_slots())
            return True
        if method == "GET" and path == "/health":
            self._json({"status": "ok"})
            return True
        return self._openai(method, path)

    def _tgi(self, method: str, path: str) -> bool:
        spec = self.server.spec
        if method == "GET" and path == "/metrics":
            self._send(200, self.server.prom(), "text/plain")
            return True
        if method == "GET" and path == "/info":  # router/src/lib.rs ``Info``
            self._json({"model_id": spec.model, "model_sha": None, "model_pipeline_tag": "text-generation",
                        "max_concurrent_requests": 128, "max_best_of": 2, "max_stop_sequences": 4,
                        "max_input_tokens": 4095, "max_total_tokens": 4096, "validation_workers": 2,
                        "max_client_batch_size": 4, "router": "text-generation-router",
                        "version": spec.version or "3.3.6", "sha": None, "docker_label": None})
            return True
        return self._openai(method, path)

    def _tabbyapi(self, method: str, path: str) -> bool:
        spec = self.server.spec
        if method == "GET" and path == "/health":  # endpoints/core/router.py
            self._json({"status": "healthy", "issues": []})
            return True
        if method == "GET" and path == "/.well-known/serviceinfo":
            self._json({"version": 0.1, "software": {"name": "TabbyAPI",
                                                     "repository": "https://github.com/theroyallab/tabbyAPI"}})
            return True
        if method == "GET" and path == "/v1/model":
            self._json({"id": spec.model, "object": "model", "owned_by": "tabbyAPI",
                        "parameters": {"max_seq_len": 32768, "max_batch_size": 8, "cache_mode": "Q8"}})
            return True
        if method == "GET" and path == "/props":
            self._json({"total_slots": 8, "default_generation_settings": {"n_ctx": 32768}})
            return True
        if method == "GET" and path == "/v1/models":  # an admin key sees the whole model directory
            self._json({"object": "list", "data": [{"id": "Mistral-Large-exl2-4.0bpw", "object": "model"},
                                                   {"id": spec.model, "object": "model"}]})
            return True
        return self._openai(method, path)

    def _lmstudio(self, method: str, path: str) -> bool:
        spec = self.server.spec
        if method == "GET" and path == "/api/v0/models":  # lmstudio.ai docs, REST API v0
            self._json({"object": "list", "data": [
                {"id": spec.model, "object": "model", "type": "llm", "publisher": "lmstudio-community",
                 "arch": "llama", "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "loaded",
                 "max_context_length": 131072},
                {"id": "text-embedding-nomic-embed-text-v1.5", "object": "model", "type": "embeddings",
                 "publisher": "nomic-ai", "arch": "nomic-bert", "compatibility_type": "gguf",
                 "quantization": "Q4_0", "state": "not-loaded", "max_context_length": 2048}]})
            return True
        if method == "GET" and path == "/v1/models":  # every downloaded model, loaded or not
            self._json({"object": "list", "data": [{"id": "text-embedding-nomic-embed-text-v1.5", "object": "model"},
                                                   {"id": spec.model, "object": "model"}]})
            return True
        return self._openai(method, path)

    def _llamaswap(self, method: str, path: str) -> bool:
        spec = self.server.spec
        if method == "GET" and path == "/metrics":
            self._send(200, self.server.prom(), "text/plain; version=0.0.4; charset=utf-8")
            return True
        if method == "GET" and path == "/running":  # internal/server/api.go handleRunning
            self._json({"running": [{"model": spec.model, "state": "ready", "cmd": "llama-server --port ${PORT}",
                                     "proxy": f"http://127.0.0.1:{self.server.server_address[1]}", "ttl": 300,
                                     "name": spec.model, "description": ""}]})
            return True
        if method == "GET" and path == "/health":
            self._send(200, "OK", "text/plain")
            return True
        return self._openai(method, path)

    def _ollama(self, method: str, path: str) -> bool:
        srv, spec = self.server, self.server.spec
        if method == "GET" and path == "/api/version":
            self._json({"version": spec.version})
            return True
        if method == "GET" and path in ("/api/ps", "/api/tags"):
            size, vram = srv.box.ollama_size_vram(spec)
            name, _, tag = spec.model.partition(":")
            model = {"name": spec.model, "model": spec.model, "size": size,
                     "digest": "0" * 64,
                     "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                                 "parameter_size": "70.6B", "quantization_level": "Q4_K_M"}}
            if path == "/api/ps":
                model.update(expires_at=_iso_in(300), size_vram=vram, context_length=8192)
            else:
                model.update(modified_at=_iso_in(-86400))
            self._json({"models": [model]})
            return True
        if method == "POST" and path == "/api/generate":
            st = srv.state()
            n = int((self.body.get("options") or {}).get("num_predict") or 128)
            # one more stream: the model's single-stream speed (throttling and offload included),
            # shared a little with the requests already running
            factor = srv.box._throughput_factor_at(spec, srv.box.t())
            rate = max(spec.single_stream_tok_s * factor / (1 + 0.15 * st.requests_running), 0.5) if st.up else 0.5
            # Ollama's own timings: eval_duration is the time of the n tokens at that rate, and the
            # answer comes after as long (a slow model generates fewer tokens in the 2 s a demo
            # waits, as num_predict would be cut by a client's timeout): wall clock and
            # eval_duration agree
            n = max(1, min(n, int(rate * 2.0)))
            time.sleep(n / rate)
            self._json({"model": self.body.get("model") or spec.model, "created_at": _iso_in(0), "response": "simulated",
                        "done": True, "total_duration": int((n / rate + 0.2) * 1e9), "load_duration": 2_000_000,
                        "prompt_eval_count": 26, "prompt_eval_duration": int(26 / (rate * 12) * 1e9),
                        "eval_count": n, "eval_duration": int(n / rate * 1e9)})
            return True
        if method == "GET" and path == "/":
            self._send(200, "Ollama is running", "text/plain")
            return True
        return False


class SimServers:
    """Handle on the running simulated servers."""

    def __init__(self, box: SimBox) -> None:
        self.box = box
        self.servers: dict[str, _SimServer] = {}
        self._threads: list[threading.Thread] = []
        for spec in box.scenario.instances:
            srv = _SimServer(box, spec)
            self.servers[spec.name] = srv
            box.ports[spec.name] = srv.server_address[1]
            th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                  name=f"sim-{spec.name}", daemon=True)
            th.start()
            self._threads.append(th)
        from .meter import start_sim_meter  # issue 14: a meter in front of the Ollama instances
        self.meter = start_sim_meter(box, _Hist)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.box.ports[name]}"

    @property
    def backends(self) -> list[BackendConfig]:
        """The servers as configured backends, named after the scenario's instances."""
        return [BackendConfig(url=self.url(s.name), name=s.name, kind=s.kind, source="simulated")
                for s in self.box.scenario.instances]

    def close(self) -> None:
        if self.meter is not None:
            self.meter.close()
        for srv in self.servers.values():
            srv.shutdown()
            srv.server_close()
        for th in self._threads:
            th.join(timeout=1)

    def __enter__(self) -> SimServers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_sim_servers(box: SimBox) -> SimServers:
    """Start one loopback server per instance of the box's scenario; ports land in ``box.ports``."""
    return SimServers(box)
