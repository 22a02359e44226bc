"""*Derived* /metrics time series of long generations, one per engine clock (issue 13).

No vLLM, SGLang or TGI server can run here (no GPU), so the series are derived: a batch of
clients streams long completions through a simulated engine loop, and each engine's series are
updated exactly when its source says they are (``gpuwatch.collect.engines.names``):

- vLLM: token counters and running/waiting gauges on every engine step;
- SGLang 0.5.x: token counters when a request finishes, the scheduler gauges (running, queue,
  gen_throughput) every 40 decode steps, and every 30 s when idle with gen_throughput 0;
  ``cuda_graph_passes_total`` on every decode step;
- SGLang with ``realtime_tokens_total``: the same plus that counter on every decode step;
- TGI: decode-step counter and batch-size gauge on every step, generated tokens (a histogram's
  ``_sum``) when a request finishes.

vLLM and SGLang bodies are rendered by prometheus_client (what both servers use); TGI's in the
layout of metrics-exporter-prometheus 0.15 (no ``_total``, no ``_created``).

Each fixture holds the scrapes (time, body) and the clients' truth: tokens received by all
clients up to each scrape time. Regenerate with ``python tests/_engine_series.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

OUT = Path(__file__).parent / "fixtures" / "real" / "engines"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"

# the workload: 3 clients, each streaming completions of 1500 tokens back to back with a 1 s
# pause, starting 2 s apart; one engine step takes 20 ms + 2 ms per request in the batch
CLIENTS = 3
TOKENS = 1500
PAUSE_S = 1.0
DURATION_S = 150.0  # the last requests end before this: an idle tail follows
STOP_STARTING_S = 100.0
SCRAPE_EVERY_S = 1.0
DECODE_LOG_INTERVAL = 40  # SGLang --decode-log-interval default
IDLE_REFRESH_S = 30.0  # SGLang check_memory: idle metrics every 30 s


def step_time(batch: int) -> float:
    return 0.020 + 0.002 * batch


def simulate():
    """Engine steps: (time at the end of the step, batch size, requests finishing with their
    token counts, queued requests)."""
    t = 0.0
    next_start = [2.0 * i for i in range(CLIENTS)]
    active: dict[int, int] = {}  # client -> tokens generated in its current request
    steps = []
    while t < DURATION_S:
        for c in range(CLIENTS):
            if c not in active and next_start[c] is not None and t >= next_start[c]:
                active[c] = 0
        if not active:
            t = min([s for s in next_start if s is not None] or [DURATION_S])
            if all(s is None for s in next_start):
                break
            continue
        batch = len(active)
        t += step_time(batch)
        finished = []
        for c in list(active):
            active[c] += 1
            if active[c] >= TOKENS:
                finished.append(TOKENS)
                del active[c]
                nxt = t + PAUSE_S
                next_start[c] = nxt if nxt < STOP_STARTING_S else None
        steps.append((t, batch, finished))
    return steps


def series(kind: str) -> dict:
    steps = simulate()
    reg = CollectorRegistry()
    lb = ["model_name"]
    scrapes = []
    truth = []
    gen_done = 0.0  # tokens of finished requests
    gen_all = 0  # tokens produced so far (what the clients have received)
    decode_steps = 0
    batch_now = 0
    # SGLang scheduler stats, as last logged
    sg = {"running": 0, "gen_throughput": 0.0, "last_log": 0.0, "tokens_since_log": 0}
    if kind == "vllm":
        lb = ["model_name", "engine"]
        lv = [MODEL, "0"]
        running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.", lb, registry=reg)
        waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", lb, registry=reg)
        gen = Counter("vllm:generation_tokens", "Number of generation tokens processed.", lb, registry=reg)
        sleep = Gauge("vllm:engine_sleep_state", "Engine sleep state", lb + ["sleep_state"], registry=reg)
        sleep.labels(*lv, "awake").set(1)
        sleep.labels(*lv, "weights_offloaded").set(0)
        sleep.labels(*lv, "discard_all").set(0)
        waiting.labels(*lv).set(0)
    elif kind.startswith("sglang"):
        lv = [MODEL]
        gen = Counter("sglang:generation_tokens", "Number of generation tokens processed.", lb, registry=reg)
        running = Gauge("sglang:num_running_reqs", "The number of running requests.", lb, registry=reg)
        queue = Gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", lb, registry=reg)
        thr = Gauge("sglang:gen_throughput", "The generation throughput (token/s).", lb, registry=reg)
        queue.labels(*lv).set(0)
        passes = Counter("sglang:cuda_graph_passes", "The number of cuda graph passes.", lb + ["mode"], registry=reg)
        rt = None
        if kind == "sglang-realtime":
            rt = Counter("sglang:realtime_tokens", "Total number of tokens processed (updated on each log "
                         "interval). mode: prefill_compute, prefill_cache, decode.", lb + ["mode"], registry=reg)
    i = 0
    t = 0.0
    while t <= DURATION_S + 1e-9:
        # apply every step that ended by scrape time t
        while i < len(steps) and steps[i][0] <= t:
            ts, batch, finished = steps[i]
            i += 1
            gen_all += batch
            decode_steps += 1
            batch_now = batch
            done_now = sum(finished)
            gen_done += done_now
            if kind == "vllm":
                gen.labels(*lv).inc(batch)
                running.labels(*lv).set(batch - len(finished))
            elif kind.startswith("sglang"):
                passes.labels(*lv, "decode_cuda_graph").inc(1)
                if rt is not None:
                    rt.labels(*lv, "decode").inc(batch)
                if done_now:
                    gen.labels(*lv).inc(done_now)
                sg["tokens_since_log"] += batch
                if decode_steps % DECODE_LOG_INTERVAL == 0:
                    gap = ts - sg["last_log"]
                    sg["gen_throughput"] = sg["tokens_since_log"] / gap if gap > 0 else 0.0
                    sg["running"] = batch - len(finished)
                    sg["last_log"], sg["tokens_since_log"] = ts, 0
                    thr.labels(*lv).set(sg["gen_throughput"])
                    running.labels(*lv).set(sg["running"])
            if finished and i < len(steps) and steps[i][1] == 0:
                batch_now = 0
        idle = i >= len(steps) or steps[i][0] - step_time(steps[i][1]) > t
        if kind.startswith("sglang") and idle and t > sg["last_log"] + IDLE_REFRESH_S:
            sg["last_log"], sg["tokens_since_log"] = t, 0
            thr.labels(*lv).set(0)
            running.labels(*lv).set(0)
        if kind == "tgi":
            body = tgi_body(decode_steps, 0 if idle else batch_now, gen_done)
        else:
            body = generate_latest(reg).decode()
        scrapes.append({"t": round(t, 3), "body": body})
        truth.append(gen_all)
        t += SCRAPE_EVERY_S
    return {"kind": kind.split("-")[0], "variant": kind, "scrape_every_s": SCRAPE_EVERY_S,
            "derived_from": SOURCES[kind], "client_tokens": truth, "scrapes": scrapes}


def tgi_body(decode_steps: int, batch: int, generated_sum: float) -> str:
    return "\n".join([
        "# TYPE tgi_batch_inference_count counter",
        f'tgi_batch_inference_count{{method="prefill"}} {1 if decode_steps else 0}',
        f'tgi_batch_inference_count{{method="decode"}} {decode_steps}',
        "# TYPE tgi_batch_current_size gauge",
        f"tgi_batch_current_size {batch}",
        "# TYPE tgi_queue_size gauge",
        "tgi_queue_size 0",
        "# TYPE tgi_request_generated_tokens histogram",
        f'tgi_request_generated_tokens_bucket{{le="+Inf"}} {int(generated_sum // TOKENS)}',
        f"tgi_request_generated_tokens_sum {generated_sum}",
        f"tgi_request_generated_tokens_count {int(generated_sum // TOKENS)}",
        "",
    ])


SOURCES = {
    "vllm": "vllm-project/vllm vllm/v1/metrics/loggers.py PrometheusStatLogger.record (per engine step)",
    "sglang": "sgl-project/sglang python/sglang/srt/metrics/collector.py observe_one_finished_request (token "
              "counters at request end), scheduler log_decode_stats every decode_log_interval=40 steps, "
              "check_memory idle refresh every 30 s with gen_throughput=0",
    "sglang-realtime": "as sglang, plus increment_realtime_tokens(decode_tokens=batch size) every decode step "
                       "(observability/metrics_collector.py)",
    "tgi": "huggingface/text-generation-inference backends/v3/src/backend.rs (tgi_batch_inference_count "
           "method=decode per step, tgi_batch_current_size per step), router/src/server.rs "
           "(tgi_request_generated_tokens at request end)",
}

VARIANTS = ("vllm", "sglang", "sglang-realtime", "tgi")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for kind in VARIANTS:
        (OUT / f"{kind}-series-derived.json").write_text(json.dumps(series(kind), indent=0) + "\n")


if __name__ == "__main__":
    main()
