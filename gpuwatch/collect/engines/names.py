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

# When each series moves, and what a client would measure (issue 13). Sources are files in the
# engines' repositories (read 2026-12 through the stored public index):
#
# vLLM V1 (vllm-project/vllm ``vllm/v1/metrics/loggers.py``, ``PrometheusStatLogger.record``):
# the engine core returns SchedulerStats + IterationStats for *every engine step*, and the API
# process applies them as they arrive: ``counter_generation_tokens.inc(iteration_stats.
# num_generation_tokens)``, ``counter_prompt_tokens.inc(...)``, ``gauge_scheduler_running.set(
# scheduler_stats.num_running_reqs)``. So the token counters rise per iteration (tens of ms) and
# the difference of two scrapes *is* the clients' rate; only the logged "Avg generation
# throughput" (LoggingStatLogger, every 5-10 s) is an interval average, and gpuwatch does not
# use it. Histograms (ttft, itl) are observed per token/first token; request histograms at
# request end. ``vllm:engine_sleep_state{sleep_state="awake"|"weights_offloaded"|"discard_all"}``
# (``record_sleep_state``, set on /sleep and /wake_up): awake=0 means sleeping, level 1 keeps
# weights in CPU memory, level 2 discards them. ``/is_sleeping`` answers {"is_sleeping": bool}
# only with VLLM_SERVER_DEV_MODE=1, so the gauge is what gpuwatch reads. While vLLM loads a
# model its API socket is bound but not yet listening (``create_server_socket`` binds; uvicorn
# listens only after the engine is built): connections are refused, /metrics does not exist.
# Draining (SIGTERM with ``--shutdown-timeout``, RFC vllm-project/vllm#24885, PR #32420): the
# API server answers new requests 503 through a ServiceUnavailableMiddleware while in-flight
# ones finish; gpuwatch shows the 503 and its message as ``error``, then ``down`` once the process
# has gone (a process seen serving that stops listening is never read as loading).
# ``--enable-mfu-metrics`` (>= 0.26, ``vllm/v1/metrics/perf.py``) adds per-step counters
# ``vllm:estimated_flops_per_gpu_total`` and ``vllm:estimated_read_bytes_per_gpu_total``.
VLLM = {
    "requests_running": ("vllm:num_requests_running",),
    "requests_waiting": ("vllm:num_requests_waiting",),
    # V1 (>= 0.10) name first, then the V0 name; both are fractions 0..1
    "kv_cache_fraction": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "generation_tokens": ("vllm:generation_tokens_total",),  # per engine step
    "prompt_tokens": ("vllm:prompt_tokens_total",),  # per engine step (prefill chunks)
    "preemptions": ("vllm:num_preemptions_total",),
    # finished requests, labelled by finished_reason (fixtures/real/vllm-metric-names-subset.txt)
    "requests": ("vllm:request_success_total",),
    "prefix_cache_hits": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
    "prefix_cache_queries": ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
    "ttft": ("vllm:time_to_first_token_seconds",),
    # renamed in vLLM 0.11: time_per_output_token -> inter_token_latency
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "flops_per_gpu": ("vllm:estimated_flops_per_gpu_total",),
    "read_bytes_per_gpu": ("vllm:estimated_read_bytes_per_gpu_total",),
}

# vLLM sleep mode: sleep_state label -> what gpuwatch says (awake=1 means serving)
VLLM_SLEEP_GAUGE = "vllm:engine_sleep_state"
VLLM_SLEEP_LEVELS = {"weights_offloaded": "sleep level 1: weights offloaded to CPU memory",
                     "discard_all": "sleep level 2: weights discarded"}

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
#   counter: counter + sum of busy slots' n_decoded rises smoothly. LlamacppEngine reports that
#   sum as the per-iteration counter ``generation_tokens_iter`` (built from /slots alone without
#   --metrics), which the collector differences before any end-of-request counter;
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

# SGLang (sgl-project/sglang): three clocks.
# - ``sglang:prompt_tokens_total`` / ``sglang:generation_tokens_total`` move when a request
#   *finishes* (``TokenizerMetricsCollector.observe_one_finished_request`` in
#   ``python/sglang/srt/metrics/collector.py``, later ``observability/metrics_collector.py``):
#   during long generations their rate reads 0, then a spike. Like llama.cpp's counters.
# - The scheduler gauges (``num_running_reqs``, ``num_queue_reqs``, ``token_usage``,
#   ``gen_throughput``, ``cache_hit_rate``) are set by ``SchedulerMetricsCollector.log_stats``,
#   called from ``log_decode_stats`` every ``--decode-log-interval`` decode steps (default 40;
#   ``forward_ct_decode % decode_log_interval == 0`` in the scheduler's decode result handler)
#   and on prefill batches; when idle, ``check_memory`` refreshes them every 30 s with
#   ``gen_throughput = 0``. So ``gen_throughput`` is the decode rate over the last 40 steps
#   (a client's rate within a second or two) but stays at its last value for up to 30 s after
#   the work stops. ``sglang:cuda_graph_passes_total{mode="decode_cuda_graph"|"decode_none"}``
#   rises by one per decode step (``increment_cuda_graph_pass`` in the decode result handler):
#   when it has not moved since the last poll nothing is decoding and the rate is 0. Servers
#   without it: a rate that has not changed for ``SGLANG_STALE_GAUGE_S`` reads as 0.
# - Newer releases add ``sglang:realtime_tokens_total{mode="decode"|"prefill_compute"|
#   "prefill_cache"}``, incremented every decode iteration (``log_decode_stats_every_iteration``
#   -> ``increment_realtime_tokens``): when present it is the live generation counter.
# All need ``--enable-metrics``; without it /metrics is 404. While loading, the HTTP server is
# not up yet (``launch_server`` starts uvicorn after the scheduler processes report ready).
SGLANG = {
    "requests_running": ("sglang:num_running_reqs",),  # every 40 decode steps
    "requests_waiting": ("sglang:num_queue_reqs",),  # every 40 decode steps
    "kv_cache_fraction": ("sglang:token_usage",),
    "prefix_cache_hit_fraction": ("sglang:cache_hit_rate",),
    "generation_tokens": ("sglang:generation_tokens_total",),  # per finished request
    "generation_tokens_iter": ('sglang:realtime_tokens_total{mode="decode"}',),  # per decode step
    "generation_rate": ("sglang:gen_throughput",),  # tok/s over the last 40 decode steps
    "decode_steps": ("sglang:cuda_graph_passes_total",),  # +1 per decode step
    "prompt_tokens": ('sglang:realtime_tokens_total{mode="prefill_compute"}', "sglang:prompt_tokens_total"),
    "requests": ("sglang:num_requests_total",),  # finished requests (fixtures/real/sglang-metric-names.txt)
    "ttft": ("sglang:time_to_first_token_seconds",),
    "itl": ("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
    # --enable-mfu-metrics (observability/metrics_collector.py: estimated_flops_per_gpu_total,
    # estimated_read_bytes_per_gpu_total, incremented per forward pass, one label set per rank)
    "flops_per_gpu": ("sglang:estimated_flops_per_gpu_total",),
    "read_bytes_per_gpu": ("sglang:estimated_read_bytes_per_gpu_total",),
}
SGLANG_STALE_GAUGE_S = 5.0

# Text Generation Inference (huggingface/text-generation-inference, router + backends/v3, Rust
# ``metrics`` crate rendered by metrics-exporter-prometheus 0.15 on the router's /metrics and on
# ``--prometheus-port`` 9000). It has *no* generated-token counter: ``tgi_request_generated_tokens``
# is a histogram recorded when a request finishes (router/src/server.rs), so its ``_sum`` moves
# per finished request. Per iteration: ``tgi_batch_inference_count{method="decode"}`` +1 per
# decode step (backends/v3/src/backend.rs ``decode``), and ``tgi_batch_current_size`` is set to
# the batch size before each step (one new token per request per step). gpuwatch's live rate is
# decode steps x batch size, summed between polls (exact while the batch size is steady).
# ``tgi_queue_size`` counts queued requests (backends/v3/src/queue.rs). Counters carry no
# ``_total`` suffix in this exporter version; newer exporters add it, so both are listed.
TGI = {
    "requests_running": ("tgi_batch_current_size",),
    "requests_waiting": ("tgi_queue_size",),
    "generation_tokens": ("tgi_request_generated_tokens_sum",),  # per finished request
    "decode_steps": ('tgi_batch_inference_count{method="decode"}', 'tgi_batch_inference_count_total{method="decode"}'),
    "batch_size": ("tgi_batch_current_size",),
    "prompt_tokens": ("tgi_request_input_length_sum",),  # per validated request
}

# Ollama (ollama/ollama at fb30760, v0.33.0-rc2) has no token counters at all: tok/s exists
# only in the final object of each /api/generate and /api/chat response (``eval_count`` over
# ``eval_duration``), so gpuwatch measures it by benchmark (collect/bench.py) or a meter in
# front of the server. Loading is per model, not per server: the server answers at once, and a
# model being loaded is already listed by ``/api/ps`` (server/sched.go puts the runner into
# ``s.loaded`` before ``WaitUntilRunning``; ``loadedModels`` reports an ``expires_at`` of now +
# keep-alive while its real expiry is still unset). Its ``loading`` flag is not exported, so an
# Ollama instance never reads "loading" in gpuwatch.

# llama-swap (mostlygeek/llama-swap internal/perf/prometheus.go): /metrics serves only host and
# GPU figures (``llamaswap_cpu_util_percent``, ``llamaswap_gpu_power_draw_watts``...), 503 when
# its performance monitor is off. Tokens are counted by the llama-servers behind it, listed by
# ``GET /running`` (internal/server/api.go ``handleRunning``): {"running": [{"model", "state"
# (stopped|starting|ready|stopping|shutdown, internal/process/process.go), "cmd", "proxy"
# (the upstream's base URL), "ttl", "name", "description"}]}.
LLAMASWAP_STARTING = "starting"

# Builds with a /metrics behind OLLAMA_METRICS=1 come only from unmerged pull requests whose
# names differ: ollama/ollama#11159 (on #6537's OpenTelemetry exporter) and #16998 both export
# ``ollama_eval_total`` and ``ollama_prompt_eval_total`` {model}, added when a request
# *finishes* (from its final eval_count / prompt_eval_count); #16998 adds the gauge
# ``ollama_requests_queued``. Read when present (issue 14); for the token rates a gpuwatch
# meter in front of the server wins (it counts tokens as they stream, see METER_PREFERRED).
OLLAMA = {
    "requests_waiting": ("ollama_requests_queued",),
    "generation_tokens": ("ollama_eval_total",),  # per finished request
    "prompt_tokens": ("ollama_prompt_eval_total",),  # per finished request
}

METRICS: dict[str, dict[str, tuple[str, ...]]] = {"vllm": VLLM, "llamacpp": LLAMACPP, "sglang": SGLANG, "tgi": TGI,
                                                  "ollama": OLLAMA}

# engines whose generated-token counter moves only when a request finishes (see above): their
# live rate comes from a per-iteration counter or a rate gauge when the server has one
COUNTS_AT_REQUEST_END = ("sglang", "tgi", "llamacpp", "ollama")

# engines whose token counters a gpuwatch meter's (per streamed chunk) replace when a meter fronts
# the server: those counting at the end of a request (their per-iteration counter or rate gauge,
# when they have one, still comes first); the others keep their own counters
METER_PREFERRED = COUNTS_AT_REQUEST_END

# label carrying the served model's name
MODEL_LABEL = {"vllm": "model_name", "sglang": "model_name"}

# a /metrics body containing a series with this prefix identifies the engine
METRIC_PREFIX = {"vllm": "vllm:", "llamacpp": "llamacpp:", "sglang": "sglang:", "tgi": "tgi_",
                 "llamaswap": "llamaswap_", "ollama": "ollama_"}

# ---- processes ----------------------------------------------------------------------------
# TGI: launcher ``--port`` default 3000 (launcher/src/main.rs; the Docker image sets PORT=80);
# TabbyAPI: 5000 (common/config_models.py); LM Studio: 1234 (``lms server start``, docs);
# llama-swap: ``--listen`` default :8080 (llama-swap.go), the same port as llama-server
DEFAULT_PORTS = {"ollama": 11434, "vllm": 8000, "llamacpp": 8080, "sglang": 30000, "tgi": 3000,
                 "tabbyapi": 5000, "lmstudio": 1234}
# default ports probed on loopback (llama-swap shares llama.cpp's 8080: one probe recognises both)
PROBE_PORTS = tuple(sorted(set(DEFAULT_PORTS.values())))

# kind -> (process names, or name prefixes ending in "*"; command-line markers, any of which
# must occur in the space-joined command line). Both must match: an ``ollama runner`` child
# listens on a port too and must not count as a server.
SERVER_PROCESSES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ollama": (("ollama",), ("ollama serve",)),
    "vllm": (("python*", "vllm", "pt_main_thread"), ("vllm.entrypoints", "vllm serve")),
    # llama-server, or the unified ``llama`` binary's ``llama serve`` (app/ in llama.cpp b11434)
    "llamacpp": (("llama-server", "llama"), ("llama-server", "llama serve")),
    "sglang": (("python*", "sglang", "sglang::*"), ("sglang.launch_server", "sglang serve")),
    # TGI: the router binary serves HTTP; the launcher is its parent (both in a TGI container)
    "tgi": (("text-generation-router", "text-generation-launcher", "text-generation-*"),
            ("text-generation-router", "text-generation-launcher")),
    "tabbyapi": (("python*",), ("tabbyAPI", "tabbyapi")),
    "llamaswap": (("llama-swap",), ("llama-swap",)),
    # LM Studio is a desktop app / ``lms`` daemon whose process names vary: found by port probe
}

# ---- containers (gpuwatch/collect/docker.py) --------------------------------------------------
# image name substring -> engine (the images each project publishes: Docker Hub / GHCR)
CONTAINER_IMAGES = (
    ("vllm/vllm-openai", "vllm"), ("vllm-openai", "vllm"),
    ("lmsysorg/sglang", "sglang"),
    ("text-generation-inference", "tgi"),
    ("ollama/ollama", "ollama"),
    ("ggml-org/llama.cpp", "llamacpp"), ("ggerganov/llama.cpp", "llamacpp"),
    ("llama-swap", "llamaswap"),
    ("tabbyapi", "tabbyapi"),
)
# ports inside the container that differ from the engines' own defaults: TGI's image sets
# PORT=80 (its Dockerfile), llama.cpp's server image listens on 8080 (LLAMA_ARG_PORT moves it)
CONTAINER_DEFAULT_PORTS = {"tgi": 80}
# environment variables that set the port inside the container
CONTAINER_PORT_ENV = {"tgi": ("PORT",), "llamacpp": ("LLAMA_ARG_PORT",), "ollama": ("OLLAMA_HOST",)}

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

# ---- serving settings from the process environment ------------------------------------------
# Environment variables that shape how a server serves, shown with the instance where the
# process environment is readable (same user, or root). Sources: Ollama's envconfig/config.go
# (OLLAMA_NUM_PARALLEL, OLLAMA_MAX_LOADED_MODELS, OLLAMA_KEEP_ALIVE default "5m",
# OLLAMA_SCHED_SPREAD, OLLAMA_FLASH_ATTENTION, OLLAMA_CONTEXT_LENGTH, OLLAMA_MAX_QUEUE);
# CUDA's environment variables (CUDA C Programming Guide, "CUDA Environment Variables"):
# CUDA_VISIBLE_DEVICES picks and orders the GPUs a process sees, CUDA_DEVICE_ORDER=PCI_BUS_ID
# makes CUDA number them as nvidia-smi does (the default, FASTEST_FIRST, puts the fastest first).
CUDA_ENV = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
SERVING_ENV = {
    "ollama": ("OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_LOADED_MODELS", "OLLAMA_KEEP_ALIVE", "OLLAMA_MAX_QUEUE",
               "OLLAMA_SCHED_SPREAD", "OLLAMA_FLASH_ATTENTION", "OLLAMA_CONTEXT_LENGTH", *CUDA_ENV),
    "vllm": CUDA_ENV,
    "llamacpp": CUDA_ENV,
    "sglang": CUDA_ENV,
}
