"""The meter's public surface as data: the Prometheus names it exports (read back by
``gpuwatch.collect.meters`` and written by the simulated meter in ``gpuwatch.sim.servers``),
the requests it counts, and the wire fields it reads. Documented in docs/METER.md.

Nothing here imports the HTTP stack, so the collector can use these names without it.
"""

from __future__ import annotations

PREFIX = "gpuwatch_meter_"

# ---- exported series (exposition sample names) ----------------------------------------------
# every series has a ``route`` label: the LISTEN address as given on the command line
# (``127.0.0.1:11534``); ``route_info`` maps it to its upstream URL
ROUTE_INFO = PREFIX + "route_info"  # {route, upstream} 1
REQUESTS_RUNNING = PREFIX + "requests_running"  # gauge {route}: inference requests in flight
REQUESTS = PREFIX + "requests_total"  # counter {route, model, code}: finished inference requests by HTTP status
CLIENT_DISCONNECTS = PREFIX + "client_disconnects_total"  # {route, model}: clients gone before the end
UPSTREAM_ERRORS = PREFIX + "upstream_errors_total"  # {route, reason}: connect | reset
PROMPT_TOKENS = PREFIX + "prompt_tokens_total"  # {route, model}: as reported by the server
# {route, model}: one per streamed token-bearing chunk as it passes, topped up to the server's
# own count (Ollama eval_count, OpenAI usage.completion_tokens) when the request ends
GENERATION_TOKENS = PREFIX + "generation_tokens_total"
# {route, model}: the part of generation_tokens_total no server count confirmed (streams
# without usage, requests cut short): one token per content delta
GENERATION_TOKENS_ESTIMATED = PREFIX + "generation_tokens_estimated_total"
TTFT = PREFIX + "time_to_first_token_seconds"  # histogram {route, model}
ITL = PREFIX + "inter_token_latency_seconds"  # histogram {route, model}: gap between token chunks
# Ollama's own timings of finished requests (final chunk, nanoseconds in the wire format)
ENGINE_EVAL_SECONDS = PREFIX + "engine_eval_seconds_total"  # eval_duration
ENGINE_PROMPT_EVAL_SECONDS = PREFIX + "engine_prompt_eval_seconds_total"  # prompt_eval_duration
ENGINE_LOAD_SECONDS = PREFIX + "engine_load_seconds_total"  # load_duration
REQUEST_BYTES = PREFIX + "request_bytes_total"  # {route}: bodies from clients, every request
RESPONSE_BYTES = PREFIX + "response_bytes_total"  # {route}: bodies to clients, every request

# histogram buckets: vLLM's own (vllm/v1/metrics/loggers.py), so the two read alike
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)

# what gpuwatch reads back, in the logical names of ``gpuwatch.collect.engines.names``
READ = {
    "requests_running": REQUESTS_RUNNING,
    "generation_tokens": GENERATION_TOKENS,
    "prompt_tokens": PROMPT_TOKENS,
    "requests": REQUESTS,  # finished requests, any status: the request shares of nginx pools
    "ttft": TTFT,
    "itl": ITL,
}

# ---- what is counted ----------------------------------------------------------------------
# POSTs to these paths are inference requests: running, tokens, latencies, status. Every other
# request passes through the same way and only counts in the byte totals.
# Ollama: docs/api.md (ollama/ollama); OpenAI-compatible: Ollama docs/openai.md, vLLM and
# llama.cpp server READMEs; /v1/messages is Ollama's Anthropic-compatible endpoint (0.14).
INFERENCE_PATHS = frozenset((
    "/api/generate", "/api/chat", "/api/embed", "/api/embeddings",
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages",
    "/completion", "/completions", "/chat/completions",  # llama.cpp's own aliases (tools/server/README.md)
))

# Ollama's final chunk (``"done": true``) of /api/generate and /api/chat, and the whole answer
# of a non-streamed request: token counts and durations in nanoseconds (docs/api.md,
# api/types.go ``Metrics``; fixtures: shared/fixtures/real/ollama-api-generate-final-chunk-docs.json)
OLLAMA_COUNTS = ("prompt_eval_count", "eval_count")
OLLAMA_DURATIONS_NS = ("prompt_eval_duration", "eval_duration", "load_duration")
# OpenAI-compatible ``usage`` (non-streamed answers; the last SSE chunk when the request asked
# for ``stream_options: {"include_usage": true}``)
USAGE_PROMPT, USAGE_COMPLETION = "prompt_tokens", "completion_tokens"
# a streamed chunk carries generated text in one of these: Ollama /api/generate ``response``
# and ``thinking``; /api/chat ``message.content``, ``message.thinking``, ``message.tool_calls``;
# OpenAI ``choices[].delta.content`` / ``reasoning_content`` / ``reasoning`` / ``tool_calls``,
# legacy completions ``choices[].text``
OLLAMA_TEXT_KEYS = ("response", "thinking")
MESSAGE_TEXT_KEYS = ("content", "thinking", "tool_calls")
DELTA_TEXT_KEYS = ("content", "reasoning_content", "reasoning", "tool_calls")

DEFAULT_METRICS = "127.0.0.1:9836"
