"""Engine knowledge as data: metric names, command-line flags, process names, default ports.

Every name an inference server exports that gpuwatch reads is listed here, so that a metric
renamed by a new engine release is a one-line change. Each logical metric maps to a tuple of
candidate sample names, newest first; the first one present in a scrape wins.

Names are *sample* names as they appear in the exposition text (``..._total`` for counters,
``..._bucket`` implied for histograms). prometheus_client's parser strips ``_total`` from
counter *family* names but keeps it on the samples, and untyped series keep their full name
either way, so looking samples up by their exposition name works for typed and untyped text.
"""

from __future__ import annotations

# ---- Prometheus series per engine -------------------------------------------------------
# gauges: summed over label sets (several models / engines / data-parallel ranks), except
# the ``*_fraction`` ones, which take the fullest label set (max).
# counters: summed over label sets; rates are computed between polls.
# histograms: buckets summed over label sets, quantiles from bucket deltas between polls.

VLLM = {
    "requests_running": ("vllm:num_requests_running",),
    "requests_waiting": ("vllm:num_requests_waiting",),
    # V1 (>= 0.10) name first, then the V0 name; both are fractions 0..1
    "kv_cache_fraction": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "generation_tokens": ("vllm:generation_tokens_total",),
    "prompt_tokens": ("vllm:prompt_tokens_total",),
    "preemptions": ("vllm:num_preemptions_total",),
    "prefix_cache_hits": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
    "prefix_cache_queries": ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
    "ttft": ("vllm:time_to_first_token_seconds",),
    # renamed in vLLM 0.11: time_per_output_token -> inter_token_latency
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
}

# llama.cpp ``llama-server`` (checked against release b11434, tools/server/*; recorded series in
# tests/fixtures/real/llamacpp-b11434/). When each series moves:
# - counters are cumulative since start (``server_metrics`` in server-common.h), rendered by
#   ``server_task_result_metrics::to_metrics`` (server-task.cpp) from a copy the main loop takes
#   between two decode steps (SERVER_TASK_TYPE_METRICS in server-context.cpp);
# - tokens_predicted_total / tokens_predicted_seconds_total / spec_decode_*: added only when a
#   request ENDS (``metrics_on_prediction``, called from the slot's ``callback_on_reset`` in
#   ``server_slot::release``): a 1,500-token request adds nothing for its whole life, then
#   1,500 at once. The live count is each busy slot's ``next_token[0].n_decoded`` in /slots
#   (``server_slot::to_json``), which ``reset()`` zeroes right after release has added it to the
#   counter: counter + sum of busy slots' n_decoded rises smoothly (see LlamacppEngine);
# - prompt_tokens_total: prompt tokens actually computed (not the cached ones), added after every
#   decode batch (``metrics_post_decode`` -> ``metrics_flush_prompt``): moves live;
# - prompt_tokens_cached_total: prompt tokens reused from a slot's cache, added when a request
#   is launched on a slot (``add_prompt_cached``); hit rate = cached / (cached + prompt_tokens);
# - requests_processing / requests_deferred: gauges taken at the scrape (slots processing;
#   tasks waiting for a slot);
# - predicted_tokens_seconds / prompt_tokens_seconds: averages over the requests finished since
#   the previous scrape, reset BY every scrape (``reset_bucket``): two scrapers (gpuwatch and
#   Prometheus) steal each other's windows, so they are not read;
# - kv_cache_usage_ratio: removed in 2025; read when an older build has it. Its stand-in is the
#   context the busy slots hold (/slots ``n_prompt_tokens``, which grows with every generated
#   token, over the slots' ``n_ctx``).
LLAMACPP = {
    "requests_running": ("llamacpp:requests_processing",),
    "requests_waiting": ("llamacpp:requests_deferred",),
    "kv_cache_fraction": ("llamacpp:kv_cache_usage_ratio",),
    "generation_tokens": ("llamacpp:tokens_predicted_total",),
    "generation_seconds": ("llamacpp:tokens_predicted_seconds_total",),
    "prompt_tokens": ("llamacpp:prompt_tokens_total",),
    "prompt_tokens_cached": ("llamacpp:prompt_tokens_cached_total",),
    "spec_draft_tokens": ("llamacpp:spec_decode_num_draft_tokens_total",),
    "spec_accepted_tokens": ("llamacpp:spec_decode_num_accepted_tokens_total",),
}

# What a llama.cpp server answers, and what polling it costs it (tools/server/server-context.cpp):
# - while the model loads, every endpoint answers 503 "Loading model" (``middleware_server_state``
#   in server-http.cpp), /health included;
# - without --metrics (the default) /metrics answers 501 (``get_metrics``); /slots and /props
#   still answer;
# - with --sleep-idle-seconds N it unloads the model after N s without tasks; /props says
#   ``is_sleeping``. /metrics, /props, /health and /v1/models answer from a cache while it
#   sleeps (``create_response(true)``: bypass_sleep), but GET /slots WAKES it
#   (``server_res_generator`` -> ``wait_until_no_sleep``) and, being a task other than
#   METRICS, restarts its idle timer (``task_resets_idle_timer`` in server-queue.cpp): a monitor
#   reading /slots every second keeps the model from ever sleeping. gpuwatch reads /slots only
#   while /metrics shows requests processing, or, without --metrics, while /props (read every
#   tick then) says it is awake.
LLAMACPP_SLOTS = "/slots"
LLAMACPP_PROPS = "/props"

# (HTTP status, start of the error message) of a server that is loading its model
LOADING_ANSWERS: tuple[tuple[int, str], ...] = (
    (503, "Loading model"),  # llama.cpp: server-http.cpp middleware_server_state
)

SGLANG = {
    "requests_running": ("sglang:num_running_reqs",),
    "requests_waiting": ("sglang:num_queue_reqs",),
    "kv_cache_fraction": ("sglang:token_usage",),
    "prefix_cache_hit_fraction": ("sglang:cache_hit_rate",),
    "generation_tokens": ("sglang:generation_tokens_total",),
    "prompt_tokens": ("sglang:prompt_tokens_total",),
    "ttft": ("sglang:time_to_first_token_seconds",),
    "itl": ("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
}

METRICS: dict[str, dict[str, tuple[str, ...]]] = {"vllm": VLLM, "llamacpp": LLAMACPP, "sglang": SGLANG}

# label carrying the served model's name
MODEL_LABEL = {"vllm": "model_name", "sglang": "model_name"}

# a /metrics body containing a series with this prefix identifies the engine
METRIC_PREFIX = {"vllm": "vllm:", "llamacpp": "llamacpp:", "sglang": "sglang:"}

# ---- processes ----------------------------------------------------------------------------
DEFAULT_PORTS = {"ollama": 11434, "vllm": 8000, "llamacpp": 8080, "sglang": 30000}

# kind -> (process names, or name prefixes ending in "*"; command-line markers, any of which
# must occur in the space-joined command line). Both must match: an ``ollama runner`` child
# listens on a port too and must not count as a server.
SERVER_PROCESSES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ollama": (("ollama",), ("ollama serve",)),
    "vllm": (("python*", "vllm", "pt_main_thread"), ("vllm.entrypoints", "vllm serve")),
    # llama-server, or the unified ``llama`` binary's ``llama serve`` (app/ in llama.cpp b11434)
    "llamacpp": (("llama-server", "llama"), ("llama-server", "llama serve")),
    "sglang": (("python*", "sglang", "sglang::*"), ("sglang.launch_server", "sglang serve")),
}

# flags that name the listening port
PORT_FLAGS = ("--port",)

# parallelism flags: kind -> {parallelism: flags giving the group size}; size > 1 counts
PARALLEL_FLAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "vllm": {"tensor": ("--tensor-parallel-size", "-tp"), "pipeline": ("--pipeline-parallel-size", "-pp")},
    "sglang": {"tensor": ("--tp-size", "--tp", "--tensor-parallel-size"),
               "pipeline": ("--pp-size", "--pipeline-parallel-size")},
}

# llama.cpp: --split-mode row splits every layer (tensor); layer (default) splits by layers
# (pipeline); none keeps the model on one GPU
LLAMACPP_SPLIT_FLAGS = ("--split-mode", "-sm")
LLAMACPP_SPLIT_MODES = {"row": "tensor", "layer": "pipeline", "none": "single"}

