"""gpuwatch's performance, measured against nvitop on the same simulated box.

    pip install -e ".[bench]" && python bench/run.py [--seconds 60] [--runs 3] [--quick]

Every NVML call costs ``--latency-us`` (default 30 µs) of busy CPU, as an ioctl into the driver
does, and ``nvmlDeviceGetPcieThroughput`` blocks 20 ms. Measures (medians of ``--runs``):

1. one collection tick (Sampler.sample) for 8, 16 and 64 simulated H100s: median and p95;
2. the dashboard's CPU share of one core and peak RSS at 1 s refresh in a real terminal
   (tmux, 200x60), 8 GPUs and 4 inference servers, gpuwatch and nvitop (``-m full
   --interval 1``) started side by side so both see the same machine load;
3. time to the first drawn frame: launch in tmux, poll ``tmux capture-pane`` until a GPU
   appears;
4. refreshes while a backend hangs: a loopback TCP server that accepts and never answers is
   passed as ``--backend``; the dashboard logs the time of every painted tick;
5. recording: bytes per snapshot and CPU per snapshot of ``gpuwatch record``.

Needs tmux and nvitop (the ``bench`` extra). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
TMUX = ["tmux", "-L", f"gwbench-{os.getpid()}"]
SCENARIO = "h100x8-4i"


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))] if xs else float("nan")


# ---- 1. collection tick ------------------------------------------------------------------
def tick_times(scenario: str, latency_s: float, ticks: int) -> list[float]:
    from gpuwatch.runtime import make_sampler

    s = make_sampler(demo=scenario, latency_s=latency_s, servers=False, discover=False)
    try:
        for _ in range(3):
            s.sample()
        out = []
        for _ in range(ticks):
            t = time.perf_counter()
            s.sample()
            out.append((time.perf_counter() - t) * 1000)
            time.sleep(0.01)
        return out
    finally:
        s.close()


# ---- tmux plumbing -----------------------------------------------------------------------
def tmux_start(name: str, cmd: list[str]) -> int:
    line = "exec " + " ".join(_quote(c) for c in cmd)
    subprocess.run([*TMUX, "new-session", "-d", "-s", name, "-x", "200", "-y", "60", line], check=True)
    out = subprocess.run([*TMUX, "list-panes", "-t", name, "-F", "#{pane_pid}"], capture_output=True, text=True)
    return int(out.stdout.split()[0])


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def tmux_capture(name: str) -> str:
    return subprocess.run([*TMUX, "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout


def tmux_kill(name: str) -> None:
    subprocess.run([*TMUX, "kill-session", "-t", name], capture_output=True)


def tmux_kill_server() -> None:
    subprocess.run([*TMUX, "kill-server"], capture_output=True)


def gpuwatch_cmd(latency_us: float, *extra: str) -> list[str]:
    return [PY, str(ROOT / "bench" / "gpuwatch_sim.py"), "--scenario", SCENARIO, "--latency-us", str(latency_us),
            "--interval", "1", *extra]


def nvitop_cmd(latency_us: float) -> list[str]:
    return [PY, str(ROOT / "bench" / "nvitop_sim.py"), "--scenario", SCENARIO, "--latency-us", str(latency_us),
            "--", "-m", "full", "--interval", "1"]


def first_frame(name: str, cmd: list[str], pattern: str = "H100", timeout: float = 20.0) -> float | None:
    t0 = time.monotonic()
    tmux_start(name, cmd)
    try:
        while time.monotonic() - t0 < timeout:
            if pattern in tmux_capture(name):
                return time.monotonic() - t0
            time.sleep(0.02)
        return None
    finally:
        tmux_kill(name)
        time.sleep(0.3)


class Watch(threading.Thread):
    """CPU share of one core (after a warm-up) and peak RSS (VmHWM) of a process."""

    def __init__(self, pid: int, warmup: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.warmup, self.seconds = pid, warmup, seconds
        self.cpu_pct: float | None = None
        self.peak_rss: int | None = None

    def run(self) -> None:
        import psutil

        p = psutil.Process(self.pid)
        time.sleep(self.warmup)
        c0, w0 = sum(p.cpu_times()[:2]), time.monotonic()
        time.sleep(self.seconds)
        c1, w1 = sum(p.cpu_times()[:2]), time.monotonic()
        self.cpu_pct = 100 * (c1 - c0) / (w1 - w0)
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    self.peak_rss = int(line.split()[1]) * 1024


def side_by_side(latency_us: float, seconds: float, warmup: float = 5.0) -> dict[str, tuple[float, int]]:
    """gpuwatch and nvitop at the same time, each in its own tmux window of 200x60."""
    procs = {"gpuwatch": tmux_start("gw", gpuwatch_cmd(latency_us)),
             "nvitop": tmux_start("nv", nvitop_cmd(latency_us))}
    watches = {k: Watch(pid, warmup, seconds) for k, pid in procs.items()}
    for w in watches.values():
        w.start()
    for w in watches.values():
        w.join()
    shown = {"gpuwatch": tmux_capture("gw"), "nvitop": tmux_capture("nv")}
    tmux_kill("gw")
    tmux_kill("nv")
    time.sleep(0.5)
    for k, text in shown.items():
        if "H100" not in text:
            print(f"warning: {k} showed no GPU:\n{text}", file=sys.stderr)
    own = re.search(r"self ([0-9.]+)% CPU", shown["gpuwatch"])
    print(f"  gpuwatch's own top line says {own.group(1) if own else '?'}% CPU (its last interval)", flush=True)
    return {k: (w.cpu_pct, w.peak_rss) for k, w in watches.items()}


# ---- 4. a backend that hangs ---------------------------------------------------------------
def black_hole() -> tuple[socket.socket, int]:
    """A TCP server on loopback that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held = []

    def accept():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)
    threading.Thread(target=accept, daemon=True).start()
    return srv, srv.getsockname()[1]


def hang_run(latency_us: float, seconds: float) -> tuple[int, int, float]:
    """(painted ticks, ticks late by more than one interval, worst gap s) over ``seconds``."""
    srv, port = black_hole()
    log = Path(tempfile.mkdtemp()) / "paint.log"
    tmux_start("hang", gpuwatch_cmd(latency_us, "--backend", f"http://127.0.0.1:{port}", "--paint-log", str(log)))
    time.sleep(seconds + 4)
    screen = tmux_capture("hang")
    tmux_kill("hang")
    srv.close()
    stamps = [float(line.split()[0]) for line in log.read_text().splitlines()] if log.exists() else []
    stamps = [t for t in stamps if t >= stamps[0] + 3] if stamps else []  # after start-up
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    late = sum(1 for g in gaps if g > 2.0)  # 1 s interval: late by more than one interval
    if f"127.0.0.1:{port}" not in screen and f"localhost:{port}" not in screen:
        print("warning: the hanging backend is not on screen", file=sys.stderr)
    return len(stamps), late, max(gaps) if gaps else float("nan")


# ---- 5. recording ----------------------------------------------------------------------------
def record_cost(count: int) -> tuple[float, float, float]:
    """(bytes per snapshot plain, gzip, CPU ms per snapshot) of ``gpuwatch record``."""
    import resource

    out = {}
    d = Path(tempfile.mkdtemp())
    for name in ("rec.ndjson", "rec.ndjson.gz"):
        cpu = []
        for n in (5, 5 + count):
            path = d / f"{n}-{name}"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([PY, "-m", "gpuwatch", "record", "-o", str(path), "--demo", SCENARIO, "--count", str(n),
                            "--interval", "0.1"], cwd=ROOT, check=True, capture_output=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        size = (d / f"{5 + count}-{name}").stat().st_size - (d / f"5-{name}").stat().st_size
        out[name] = (size / count, (cpu[1] - cpu[0]) / count * 1000)
    shutil.rmtree(d)
    return out["rec.ndjson"][0], out["rec.ndjson.gz"][0], out["rec.ndjson.gz"][1]


def machine() -> str:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{date.today()}, nproc {os.cpu_count()}, {model}, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60, help="length of each CPU/RSS measurement")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latency-us", type=float, default=30.0, help="busy CPU per NVML call")
    ap.add_argument("--quick", action="store_true", help="short runs (15 s, 1 run) to check the bench works")
    ap.add_argument("--only", default="tick,cpu,frame,hang,record")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.runs = 15, 1
    only = set(args.only.split(","))
    if not shutil.which("tmux") and only & {"cpu", "frame", "hang"}:
        print("tmux is needed for the terminal measurements", file=sys.stderr)
        return 2
    lat = args.latency_us / 1e6
    rows: list[tuple[str, str, str]] = []
    print(f"# gpuwatch bench: {machine()}; NVML call {args.latency_us:g} µs, PCIe sample 20 ms", flush=True)
    if "tick" in only:
        for n, target in ((8, "< 25 ms"), (16, ""), (64, "< 100 ms")):
            ts = [t for _ in range(args.runs) for t in tick_times(f"h100x{n}", lat, 40)]
            rows.append((f"collection tick, {n} GPUs", f"{med(ts):.1f} ms (p95 {p95(ts):.1f})", target))
            print(rows[-1], flush=True)
        ts = [t for _ in range(args.runs) for t in tick_times("h100x8:unsupported", lat, 40)]
        rows.append(("collection tick, 8 GPUs without PCIe counters (20 ms sample off the tick)",
                     f"{med(ts):.1f} ms (p95 {p95(ts):.1f})", "< 25 ms"))
        print(rows[-1], flush=True)
    try:
        if "cpu" in only:
            res = [side_by_side(args.latency_us, args.seconds) for _ in range(args.runs)]
            for r in res:
                print("  run:", {k: (round(c, 2), round(m / 2**20, 1)) for k, (c, m) in r.items()}, flush=True)
            g = [r["gpuwatch"][0] for r in res]
            nv = [r["nvitop"][0] for r in res]
            ratio = [a / b for a, b in zip(g, nv)]
            rows.append((f"CPU, 1 s refresh, 8 GPUs + 4 servers ({args.seconds:g} s) — gpuwatch", f"{med(g):.1f} % of a core", "≤ nvitop"))
            rows.append(("CPU — nvitop -m full --interval 1", f"{med(nv):.1f} % of a core", ""))
            rows.append(("CPU ratio gpuwatch / nvitop (same run)", f"{med(ratio):.2f} ({', '.join(f'{x:.2f}' for x in ratio)})", "≤ 1"))
            rows.append(("peak RSS — gpuwatch", f"{med([r['gpuwatch'][1] for r in res]) / 2**20:.0f} MiB", "< 80 MiB"))
            rows.append(("peak RSS — nvitop", f"{med([r['nvitop'][1] for r in res]) / 2**20:.0f} MiB", ""))
        if "frame" in only:
            fg = [first_frame("ffg", gpuwatch_cmd(args.latency_us)) for _ in range(args.runs)]
            fn = [first_frame("ffn", nvitop_cmd(args.latency_us)) for _ in range(args.runs)]
            fg = [x for x in fg if x is not None]
            fn = [x for x in fn if x is not None]
            rows.append(("first frame (launch → GPU on screen) — gpuwatch", f"{med(fg):.2f} s", "< 1 s"))
            rows.append(("first frame — nvitop", f"{med(fn):.2f} s", ""))
        if "hang" in only:
            secs = max(20.0, args.seconds / 3)
            h = [hang_run(args.latency_us, secs) for _ in range(max(1, args.runs - 1))]
            rows.append((f"refreshes while a backend hangs ({secs:g} s, 1 s interval)",
                         "; ".join(f"{n} ticks, {late} late, worst gap {gap:.2f} s" for n, late, gap in h),
                         "0 late"))
    finally:
        tmux_kill_server()
    if "record" in only:
        plain, gz, cpu = record_cost(60)
        rows.append(("recording, bytes per snapshot (8 GPUs + 4 servers)", f"{plain / 1000:.1f} KB plain, {gz:.0f} B .gz", ""))
        rows.append(("recording, CPU per snapshot (whole `gpuwatch record`, .gz)", f"{cpu:.1f} ms", ""))
    print()
    print("| measure | result | target |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
