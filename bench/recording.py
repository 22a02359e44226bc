"""How big a recording gets, and how fast the reader opens a day of it.

    PYTHONPATH=. python bench/recording.py [--dir DIR] [--seconds 86400] [--keep]

1. Records ``--distinct`` real snapshots of the simulated 8x H100 box (one per simulated
   second, each with two inference instances like a vLLM + SGLang box reports) and measures
   bytes per snapshot, plain and gzip (the recorder's own writer: a sync flush per line).
2. Writes a day file (``--seconds`` lines at 1 s; the distinct snapshots repeat with their
   times rewritten), plain and gzip, through the recorder's writer.
3. Opens each in a fresh interpreter and reports open time, RSS after opening, peak RSS,
   and the time to decode random and consecutive snapshots.

The day files are large (about 1 GiB plain): they go to a temporary directory and are
removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpuwatch.recording.writer import LineFile  # noqa: E402
from gpuwatch.recording import PREFIX, encode_snapshot  # noqa: E402
from gpuwatch.model import BenchResult, Instance, ModelInfo  # noqa: E402


def instances(i: int) -> list[Instance]:
    return [
        Instance(name="vllm-main", kind="vllm", url="http://127.0.0.1:8000", status="up", version="0.11.0",
                 models=[ModelInfo(name="meta-llama/Llama-3.1-70B-Instruct", context_length=131072)],
                 gpus=[0, 1, 2, 3], gpu_memory_bytes={str(g): 71 * 2**30 for g in range(4)}, parallelism="tensor",
                 parallel_size=4, pid=4242, pids=[4242, 4250, 4251, 4252, 4253],
                 generation_tokens_per_s=1840.5 + (i % 97) * 3.1, prompt_tokens_per_s=9120.0 - (i % 13) * 41.7,
                 requests_running=float(20 + i % 7), requests_waiting=float(i % 3), kv_cache_usage_pct=61.5 + i % 9,
                 ttft_p50_s=0.21, ttft_p95_s=0.74 + (i % 5) / 100, itl_p50_s=0.018, itl_p95_s=0.041,
                 preemptions_per_s=0.0, prefix_cache_hit_pct=38.2, source="discovered"),
        Instance(name="sglang:30000", kind="sglang", url="http://127.0.0.1:30000", status="up", version="0.4.9",
                 models=[ModelInfo(name="Qwen/Qwen2.5-32B-Instruct")], gpus=[4, 5], parallelism="tensor",
                 parallel_size=2, pid=5151, pids=[5151], generation_tokens_per_s=610.0 + (i % 31),
                 requests_running=float(5 + i % 4), kv_cache_usage_pct=40.0 + i % 11,
                 bench=BenchResult(time="2026-11-23T07:00:00.000Z", model="Qwen/Qwen2.5-32B-Instruct",
                                   generation_tokens_per_s=88.1), source="discovered"),
    ]


def real_lines(n: int, spec: str) -> list[bytes]:
    from gpuwatch.runtime import make_sampler
    from gpuwatch.sim.box import ManualClock

    clock = ManualClock()
    sampler = make_sampler(demo=spec, clock=clock, servers=False, pcie_sample_s=0.0, discover=False,
                           start_offset_s=60.0)
    try:
        out = []
        for i in range(n):
            s = sampler.sample()
            s.instances = instances(i)
            out.append(encode_snapshot(s))
            clock.advance(1.0)
        return out
    finally:
        sampler.close()


def write(path: Path, lines: list[bytes], total: int) -> float:
    """``total`` lines at 1 s from 2026-11-23T00:00:00Z, cycling through ``lines``."""
    t0 = time.perf_counter()
    f = LineFile(path)
    at = len(PREFIX)
    for i in range(total):
        line = lines[i % len(lines)]
        h, rem = divmod(i, 3600)
        stamp = b"2026-11-23T%02d:%02d:%02d.000Z" % (h % 24, rem // 60, rem % 60)
        f.write(line[:at] + stamp + line[at + len(stamp):])
    f.close()
    return time.perf_counter() - t0


OPEN = r"""
import json, random, sys, time
def rss(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
import gpuwatch.recording.reader as R
from gpuwatch.model import Snapshot
base = rss('VmRSS:')
t = time.perf_counter()
rec = R.open_recording(sys.argv[1])
opened = time.perf_counter() - t
after = rss('VmRSS:')
n = len(rec)
rnd = random.Random(1)
t = time.perf_counter()
for _ in range(50):
    rec[rnd.randrange(n)]
random_ms = (time.perf_counter() - t) / 50 * 1000
t = time.perf_counter()
start = n // 2
for i in range(start, start + 500):
    rec[i]
seq_ms = (time.perf_counter() - t) / 500 * 1000
t = time.perf_counter()
i = rec.seek_time("2026-11-23T14:32:05Z")
seek_us = (time.perf_counter() - t) * 1e6
print(json.dumps({"snapshots": n, "open_s": round(opened, 2), "rss_before_mb": round(base / 2**20, 1),
                  "rss_after_open_mb": round(after / 2**20, 1), "peak_rss_mb": round(rss('VmHWM:') / 2**20, 1),
                  "random_access_ms": round(random_ms, 2), "sequential_ms": round(seq_ms, 2),
                  "seek_time_us": round(seek_us, 1), "seek_index": i, "warnings": rec.warnings}))
"""


def measure_open(path: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", OPEN, str(path)], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.returncode:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", help="where to write the day files (default: a temporary directory)")
    ap.add_argument("--seconds", type=int, default=86_400)
    ap.add_argument("--distinct", type=int, default=600)
    ap.add_argument("--spec", default="h100x8")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()

    lines = real_lines(a.distinct, a.spec)
    gpus = len(json.loads(lines[0])["gpus"])
    plain = sum(map(len, lines)) / len(lines)
    d = Path(a.dir or tempfile.mkdtemp(prefix="gpuwatch-bench-"))
    d.mkdir(parents=True, exist_ok=True)
    try:
        sample = d / "sample.ndjson.gz"
        f = LineFile(sample)
        for line in lines:
            f.write(line)
        f.close()
        gz = sample.stat().st_size / len(lines)
        print(f"snapshot of {gpus} GPUs + 2 instances: {plain:,.0f} B plain, {gz:,.0f} B gzip "
              f"(sync flush per line); per GPU {plain / gpus:,.0f} B / {gz / gpus:,.0f} B")
        print(f"a day at 1 s: {plain * 86400 / 2**20:,.0f} MiB plain, {gz * 86400 / 2**20:,.0f} MiB gzip; "
              f"per GPU per day {plain / gpus * 86400 / 2**20:,.0f} MiB / {gz / gpus * 86400 / 2**20:,.1f} MiB")
        for name in ("day.ndjson", "day.ndjson.gz"):
            p = d / name
            took = write(p, lines, a.seconds)
            size = p.stat().st_size
            m = measure_open(p)
            print(f"{name}: {a.seconds:,} snapshots, {size / 2**20:,.0f} MiB on disk, written in {took:.1f} s; "
                  f"open {m['open_s']} s, RSS {m['rss_before_mb']} -> {m['rss_after_open_mb']} MiB "
                  f"(peak {m['peak_rss_mb']} MiB); rec[random] {m['random_access_ms']} ms, "
                  f"rec[i+1] {m['sequential_ms']} ms, seek_time {m['seek_time_us']} us; warnings {m['warnings']}")
    finally:
        if not a.keep and not a.dir:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
