"""Helpers for the recording tests: real demo snapshots, made in-process on a driven clock."""

from __future__ import annotations

import json

from gpuwatch.model import BenchResult, Instance, ModelInfo, Snapshot


def demo_snapshots(n: int, spec: str = "h100x8", step_s: float = 1.0) -> list[Snapshot]:
    """``n`` snapshots of the simulated box, ``step_s`` apart, each with two inference
    instances (so the recorded format carries them even before the instances layer runs). Their
    times start at a fixed moment, so the bytes of a recording are the same on every run (a test
    that damages a gzip file at a given offset must hit the same data each time)."""
    from datetime import datetime, timedelta, timezone
    from gpuwatch.runtime import make_sampler
    from gpuwatch.sim.box import ManualClock

    clock = ManualClock()
    sampler = make_sampler(demo=spec, clock=clock, servers=False, pcie_sample_s=0.0, discover=False)
    try:
        snaps = []
        for i in range(n):
            s = sampler.sample()
            t = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc) + timedelta(seconds=i * step_s)
            s.time = t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            s.collect_ms = 1.0  # measured, so it differs between runs
            s.instances = example_instances(i)
            snaps.append(s)
            clock.advance(step_s)
        return snaps
    finally:
        sampler.close()


def example_instances(i: int = 0) -> list[Instance]:
    return [
        Instance(name="vllm-main", kind="vllm", url="http://127.0.0.1:8000", status="up", version="0.11.0",
                 models=[ModelInfo(name="meta-llama/Llama-3.1-70B-Instruct", context_length=131072)],
                 gpus=[0, 1, 2, 3], gpu_memory_bytes={str(g): 71 * 2**30 for g in range(4)}, parallelism="tensor",
                 parallel_size=4, pid=4242, pids=[4242, 4250, 4251, 4252, 4253],
                 generation_tokens_per_s=1840.5 + i, prompt_tokens_per_s=9120.0, requests_running=23.0,
                 requests_waiting=2.0, kv_cache_usage_pct=61.5, ttft_p50_s=0.21, ttft_p95_s=0.74, itl_p50_s=0.018,
                 itl_p95_s=0.041, preemptions_per_s=0.0, prefix_cache_hit_pct=38.2, source="discovered"),
        Instance(name="sglang:30000", kind="sglang", url="http://127.0.0.1:30000", status="up",
                 models=[ModelInfo(name="Qwen/Qwen2.5-32B-Instruct")], gpus=[4, 5], parallelism="tensor",
                 parallel_size=2, pid=5151, pids=[5151], generation_tokens_per_s=610.0, requests_running=7.0,
                 bench=BenchResult(time="2026-11-23T07:00:00.000Z", model="Qwen/Qwen2.5-32B-Instruct",
                                   generation_tokens_per_s=88.1), source="discovered"),
    ]


def lines_of(data: bytes) -> list[bytes]:
    """Whole lines (with their newline) of a byte string; a cut last line is dropped."""
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]]


def assert_whole_schema_lines(data: bytes) -> list[dict]:
    """Every line of ``data`` is whole (ends with a newline) and a schema v1 snapshot."""
    assert data.endswith(b"\n"), data[-200:]
    docs = []
    for line in data.split(b"\n")[:-1]:
        d = json.loads(line)
        assert d["schema_version"] == 1
        assert Snapshot.from_dict(d).to_dict() == d
        docs.append(d)
    return docs
