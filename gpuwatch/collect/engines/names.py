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

LLAMACPP = {
    "requests_running": ("llamacpp:requests_processing",),
    "requests_waiting": ("llamacpp:requests_deferred",),
    # removed from llama.cpp in 2025 (see fixtures PROVENANCE); read when an older build has it
    "kv_cache_fraction": ("llamacpp:kv_cache_usage_ratio",),
    # counters only: the *_tokens_seconds gauges are reset on every scrape and are ignored
    "generation_tokens": ("llamacpp:tokens_predicted_total",),
    "prompt_tokens": ("llamacpp:prompt_tokens_total",),
}

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
    "llamacpp": (("llama-server",), ("llama-server",)),
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

