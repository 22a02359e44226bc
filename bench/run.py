"""gpuwatch's cost, measured fairly against nvitop on the same (compiled, simulated) box.

    pip install -e ".[bench]" && python bench/run.py [--seconds 60] [--runs 3] [--busy-us 0]
    python bench/run.py --quick          # a short check that everything runs

Both tools load NVML the way they do on a real box: pynvml's ``CDLL("libnvidia-ml.so.1")``
finds the compiled stand-in (``gpuwatch/sim/cnvml``) through ``LD_LIBRARY_PATH``. Neither
process runs any simulator code: the GPUs' figures are computed in C, and the inference servers
are separate processes (``bench/servers.py``, one per server) whose PIDs the stand-in lists on
their GPUs. ``--busy-us`` is the driver cost of every NVML call, spent in system calls inside
the library as a real driver's ioctl is (0: only the tools' own work is measured).

Measures:

1. collection tick (``Sampler.sample``, NVML only) for 8, 16 and 64 GPUs: median and p95;
2. gpuwatch and nvitop (``-m full --interval 1``) side by side in tmux at 200x60 with a 1 s
   refresh, 8 GPUs and 4 servers: CPU % of one core (process user+system time over
   ``--seconds`` after a warm-up), peak RSS (VmHWM); ``--runs`` rounds, medians, the ratio
   taken within each round;
3. first frame: process start to the first GPU on screen (``tmux capture-pane`` every 20 ms);
4. gpuwatch alone, one round each: 0 and 16 servers, 16 and 64 GPUs, 80x24, paused, and the
   headless ``gpuwatch serve`` and ``gpuwatch record`` at 1 s with 4 servers and with none;
5. the floor under any Textual app (``bench/textual_floor.py``: one line, nothing polled): its
   first frame (with 3.) and its CPU while idle (with 4., beside the paused figure);
6. (``--only rss``, not in the default run) the dashboard's RSS over ``--rss-minutes`` (60),
   sampled every minute: the start, the end, the highest and the trend per hour.

Needs tmux, a C compiler and nvitop (the ``bench`` extra). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
TMUX = ["tmux", "-L", f"gwbench-{os.getpid()}"]
SCENARIO = "h100x8-4i:none"  # vLLM TP=4, vLLM TP=2, SGLang, llama.cpp on 8 H100s
# the stand-in's driver (--driver). R550 has no PCIe byte counters (they arrived with R555): the
# PCIe rates come from nvmlDeviceGetPcieThroughput, which blocks 20 ms per call (two per GPU a
# second), work nvitop's TUI never asks for (nvitop 1.7.2 shows no PCIe rate)
DRIVER = "550.127.05"


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))] if xs else float("nan")


# ---- the box: compiled NVML stand-in + servers in their own processes -----------------------
class Box:
    """The compiled NVML stand-in's environment and ``servers`` inference-server processes."""

    def __init__(self, gpus: int = 8, servers: int = 4, busy_us: float = 0, driver: str | None = None) -> None:
        from gpuwatch.sim import cnvml

        self.lib_dir = cnvml.build()
        self.gpus, self.busy_us = gpus, busy_us
        self.driver = driver or DRIVER
        self.procs: list[subprocess.Popen] = []
        self.servers: list[dict] = []
        try:
            for k in range(servers):
                p = subprocess.Popen([PY, str(ROOT / "bench" / "servers.py"), "--scenario", SCENARIO, "--index", str(k)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
                self.procs.append(p)
            for p in self.procs:
                self.servers.append(json.loads(p.stdout.readline()))
        except Exception:
            self.close()
            raise
        # each server's PID on its GPUs, as the driver lists a serving process
        procs = ",".join(f"{s['pid']}:{'+'.join(map(str, s['gpus']))}" for s in self.servers)
        self.env = cnvml.environment(self.lib_dir, gpus=gpus, busy_us=busy_us, procs=procs or None,
                                     driver=self.driver)
        self.env["PYTHONPATH"] = str(ROOT)
        # both tools start from bytecode, as installed packages do: nvitop's is in site-packages;
        # gpuwatch's (a source checkout here) goes to a cache outside the tree, written by one
        # warm-up import (with PYTHONDONTWRITEBYTECODE set, as on some machines, gpuwatch alone
        # recompiled all its source at every start: ~15 % of its first frame)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / f"gwbench-pyc-{os.getuid()}")
        # (the prefix holds every module's bytecode, nvitop's too: both are compiled once here)
        subprocess.run([PY, "-c", "import gpuwatch.cli, gpuwatch.frontends.tui.app, gpuwatch.collect.instances, "
                        "gpuwatch.frontends.tui.screens, gpuwatch.frontends.exporter\n"
                        "try:\n import nvitop.cli, nvitop.tui\nexcept ImportError:\n pass"],
                       env=self.env, cwd=ROOT, check=True)

    @property
    def backends(self) -> list[str]:
        return [a for s in self.servers for a in ("--backend", f"http://127.0.0.1:{s['port']}")]

    def close(self) -> None:
        for p in self.procs:
            try:
                p.stdin.close()
                p.wait(5)
            except Exception:
                p.kill()

    def __enter__(self) -> Box:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def gpuwatch_cmd(box: Box, *extra: str) -> list[str]:
    return [PY, "-m", "gpuwatch", *box.backends, "--interval", "1", *extra]


def floor_cmd() -> list[str]:
    """A Textual app with one line, nothing polled (``bench/textual_floor.py``)."""
    return [PY, str(ROOT / "bench" / "textual_floor.py")]


def nvitop_cmd() -> list[str]:
    return [shutil.which("nvitop") or str(Path(PY).with_name("nvitop")), "-m", "full", "--interval", "1"]


# ---- 1. collection tick -------------------------------------------------------------------
TICK_SCRIPT = """
import json, sys, time
from gpuwatch.runtime import make_sampler
s = make_sampler(discover=False)
for _ in range(3):
    s.sample(); time.sleep(0.05)
out = []
for _ in range(int(sys.argv[1])):
    t = time.perf_counter(); s.sample(); out.append((time.perf_counter() - t) * 1000); time.sleep(0.01)
s.close()
print(json.dumps(out))
"""


def tick_times(gpus: int, busy_us: float, ticks: int) -> list[float]:
    with Box(gpus=gpus, servers=0, busy_us=busy_us) as box:
        r = subprocess.run([PY, "-c", TICK_SCRIPT, str(ticks)], env=box.env, cwd=ROOT, capture_output=True,
                           text=True, check=True)
    return json.loads(r.stdout)


# ---- tmux plumbing -----------------------------------------------------------------------
def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def tmux_start(name: str, cmd: list[str], env: dict, size: tuple[int, int] = (200, 60)) -> int:
    keep = ("LD_LIBRARY_PATH", "PYTHONPATH", "GPUWATCH_CNVML_GPUS", "GPUWATCH_CNVML_BUSY_US", "GPUWATCH_CNVML_PROCS",
            "GPUWATCH_CNVML_DRIVER", "PYTHONPYCACHEPREFIX")
    line = "exec env -u PYTHONDONTWRITEBYTECODE " + " ".join(_quote(f"{k}={env[k]}") for k in keep if k in env) + " " + \
        " ".join(_quote(c) for c in cmd)
    subprocess.run([*TMUX, "new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]), line], check=True)
    out = subprocess.run([*TMUX, "list-panes", "-t", name, "-F", "#{pane_pid}"], capture_output=True, text=True)
    return int(out.stdout.split()[0])


def tmux_capture(name: str) -> str:
    return subprocess.run([*TMUX, "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout


def tmux_keys(name: str, *keys: str) -> None:
    subprocess.run([*TMUX, "send-keys", "-t", name, *keys], capture_output=True)


def tmux_kill(name: str) -> None:
    subprocess.run([*TMUX, "kill-session", "-t", name], capture_output=True)


def tmux_kill_server() -> None:
    subprocess.run([*TMUX, "kill-server"], capture_output=True)


def wait_for_screen(name: str, pattern: str, timeout: float = 30.0) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pattern in tmux_capture(name):
            return time.monotonic() - t0
        time.sleep(0.02)
    return None


class Use(NamedTuple):
    cpu_pct: float  # process user+system time over the window, % of one core
    peak_rss: int  # VmHWM, bytes
    wakes: float | None  # context switches a second, all threads (perf); None without perf


class Watch(threading.Thread):
    """CPU share of one core (after a warm-up), peak RSS (VmHWM) and wake-ups of a process.

    Wake-ups are the context switches of all its threads over the same window, counted by
    ``perf stat -e context-switches`` (a software event: no hardware counters needed; threads
    started during the window are counted too). On this VM the CPU time charged per wake-up
    moved from ~0.1 to ~1.5 ms within one afternoon (a process waking ten times a second against
    one waking once, side by side), so the count is the figure that does not move with the hour."""

    def __init__(self, pid: int, warmup: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.warmup, self.seconds = pid, warmup, seconds
        self.cpu_pct: float | None = None
        self.peak_rss: int | None = None
        self.wakes: float | None = None

    def run(self) -> None:
        import psutil

        p = psutil.Process(self.pid)
        time.sleep(self.warmup)
        c0, w0 = sum(p.cpu_times()[:2]), time.monotonic()
        perf = shutil.which("perf")
        counted = None
        if perf:
            counted = subprocess.run([perf, "stat", "-x", ",", "-e", "context-switches", "-p", str(self.pid), "--",
                                      "sleep", f"{self.seconds:g}"], capture_output=True, text=True)
        else:
            time.sleep(self.seconds)
        c1, w1 = sum(p.cpu_times()[:2]), time.monotonic()
        self.cpu_pct = 100 * (c1 - c0) / (w1 - w0)
        if counted is not None:
            for line in counted.stderr.splitlines():
                fields = line.split(",")
                if len(fields) > 2 and fields[2] == "context-switches" and fields[0].isdigit():
                    self.wakes = int(fields[0]) / (w1 - w0)
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    self.peak_rss = int(line.split()[1]) * 1024


def watch_all(pids: dict[str, int], warmup: float, seconds: float) -> dict[str, Use]:
    watches = {k: Watch(pid, warmup, seconds) for k, pid in pids.items()}
    for w in watches.values():
        w.start()
    for w in watches.values():
        w.join()
    return {k: Use(w.cpu_pct, w.peak_rss, w.wakes) for k, w in watches.items()}


def usage(u: Use) -> str:
    """CPU, peak RSS and (with perf) wake-ups of one measured process, for a table cell."""
    wakes = "" if u.wakes is None else f", {u.wakes:.0f} wake-ups/s"
    return f"{u.cpu_pct:.2f} %, {mib(u.peak_rss)}{wakes}"


# ---- 2. side by side ----------------------------------------------------------------------------
# seconds after start before the side-by-side CPU is counted, both tools alike: past the
# dashboard's start-up. Its last one-off piece of work is the first alerts: an alert is raised
# once its condition has held raise_after_s (10 s; on the bench box four numa_mismatch warnings,
# the servers running on CPUs the stand-in puts on the other node), and the alert strip that
# appears then is a layout pass of the whole screen, ~25 ms of CPU at 10.5-11 s (per-second
# CPU of the dashboard from its start: 10, 0, 30-40, 10, 10 ms...). A 10 s warm-up (rounds 8-14)
# counted it in every round: ~4 % of the dashboard's steady figure over 60 s.
WARMUP_S = 15.0


def side_by_side(box: Box, seconds: float, warmup: float = WARMUP_S) -> dict[str, Use]:
    """gpuwatch and nvitop at the same time, each in its own tmux window of 200x60."""
    pids = {"gpuwatch": tmux_start("gw", gpuwatch_cmd(box), box.env),
            "nvitop": tmux_start("nv", nvitop_cmd(), box.env)}
    try:
        res = watch_all(pids, warmup, seconds)
        for name, window in (("gpuwatch", "gw"), ("nvitop", "nv")):
            if "H100" not in tmux_capture(window):
                print(f"warning: {name} showed no GPU:\n{tmux_capture(window)}", file=sys.stderr)
        return res
    finally:
        tmux_kill("gw")
        tmux_kill("nv")
        time.sleep(0.5)


# ---- 3. first frame -----------------------------------------------------------------------------
def first_frame(box: Box, name: str, cmd: list[str]) -> float | None:
    t0 = time.monotonic()
    tmux_start(name, cmd, box.env)
    try:
        shown = wait_for_screen(name, "H100")
        return None if shown is None else time.monotonic() - t0
    finally:
        tmux_kill(name)
        time.sleep(0.3)


# ---- 4. gpuwatch alone ------------------------------------------------------------------------------
def dashboard_alone(box: Box, seconds: float, size=(200, 60), paused: bool = False) -> Use:
    pid = tmux_start("solo", gpuwatch_cmd(box), box.env, size=size)
    try:
        # at 80x24 the GPU name may be cut: any drawn frame will do before pausing
        if wait_for_screen("solo", "H100" if size[0] >= 120 else "GPU", timeout=15) is None:
            print(f"warning: no GPU on screen:\n{tmux_capture('solo')}", file=sys.stderr)
        if paused:
            tmux_keys("solo", "p")
        # counted from 12 s after its first frame: the dashboard settles its heap 5 s after it
        # (runtime.settle_heap: one full collection, start-up work) and raises its first alerts
        # ~10 s after it (see WARMUP_S); 8 s until the fifteenth round
        return watch_all({"gw": pid}, 12.0, seconds)["gw"]
    finally:
        tmux_kill("solo")
        time.sleep(0.3)


# ---- 6. memory over a long run ------------------------------------------------------------------
def rss_over_time(box: Box, minutes: float, every_s: float = 60.0) -> list[tuple[float, int]]:
    """The dashboard (200x60, 1 s, the box's servers) for ``minutes``: (minutes since its first
    frame, RSS) every ``every_s``, the first sample at 0. Progress goes to stderr."""
    import psutil

    proc = psutil.Process(tmux_start("rss", gpuwatch_cmd(box), box.env))
    out: list[tuple[float, int]] = []
    try:
        if wait_for_screen("rss", "H100", timeout=30) is None:
            raise RuntimeError(f"no GPU on screen:\n{tmux_capture('rss')}")
        t0 = time.monotonic()
        while True:
            at = (time.monotonic() - t0) / 60
            try:
                rss = proc.memory_info().rss
            except psutil.NoSuchProcess:
                raise RuntimeError(f"the dashboard ended after {at:.1f} min:\n{tmux_capture('rss')}") from None
            out.append((at, rss))
            print(f"  rss: {at:5.1f} min {mib(rss)}", file=sys.stderr, flush=True)
            if at >= minutes:
                return out
            time.sleep(max(0.0, min(every_s, (minutes - at) * 60)))
    finally:
        tmux_kill("rss")


def rss_summary(samples: list[tuple[float, int]]) -> str:
    """Start (after the first 5 minutes: start-up and the heap's settling are over, the history
    rings filling), end, highest, and the least-squares growth per hour from there on."""
    settled = [(t, r) for t, r in samples if t >= 5] or samples
    try:  # bytes a minute -> an hour
        slope = statistics.linear_regression([t for t, _ in settled], [r for _, r in settled]).slope * 60
    except statistics.StatisticsError:  # fewer than two samples, or all at one time
        slope = 0.0
    return (f"{mib(samples[0][1])} at the first frame, {mib(settled[0][1])} at {settled[0][0]:.0f} min, "
            f"{mib(samples[-1][1])} at {samples[-1][0]:.0f} min (highest {mib(max(r for _, r in samples))}); "
            f"trend from {settled[0][0]:.0f} min {slope / 2**20:+.1f} MiB an hour")


@contextmanager
def headless(box: Box, cmd: list[str]):
    p = subprocess.Popen(cmd, env=box.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield p
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def serve_cost(box: Box, seconds: float) -> Use:
    with headless(box, gpuwatch_cmd(box, "serve", "--listen", "127.0.0.1:0")) as p:  # any free port
        return watch_all({"serve": p.pid}, 5.0, seconds)["serve"]


def record_cost(box: Box, seconds: float) -> Use:
    out = Path(tempfile.mkdtemp()) / "bench.ndjson.gz"
    try:
        with headless(box, gpuwatch_cmd(box, "record", "-o", str(out))) as p:
            return watch_all({"record": p.pid}, 5.0, seconds)["record"]
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def machine() -> str:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{date.today()}, nproc {os.cpu_count()}, {model}, load average at start {load}, "
            f"Python {platform.python_version()}")


def mib(n: int | None) -> str:
    return f"{n / 2**20:.0f} MiB" if n else "?"


def main() -> int:
    global DRIVER  # every Box of this run uses --driver
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60, help="length of each side-by-side CPU/RSS measurement")
    ap.add_argument("--solo-seconds", type=float, default=30, help="length of each gpuwatch-alone measurement")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=WARMUP_S,
                    help="seconds after start before the side-by-side CPU is counted (both tools alike; "
                         "past the dashboard's start-up: heap settling 5 s after its first frame, the "
                         "first alerts raised after 10 s)")
    ap.add_argument("--busy-us", type=float, default=0.0,
                    help="driver cost of every NVML call in µs, spent in the stand-in (0; 30 is a realistic ioctl)")
    ap.add_argument("--driver", default=DRIVER,
                    help=f"the stand-in's driver version ({DRIVER}: no PCIe byte counters; 570.172.08: with them)")
    ap.add_argument("--quick", action="store_true", help="short runs (10 s, 1 round) to check the bench works")
    ap.add_argument("--only", default="tick,cpu,frame,solo,headless",
                    help="comma-separated parts; 'rss' (not in the default: it takes --rss-minutes) is the "
                         "dashboard's memory over a long run")
    ap.add_argument("--rss-minutes", type=float, default=60.0, help="length of the 'rss' run (60: one hour)")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.solo_seconds, args.runs = 10, 5, 1
    only = set(args.only.split(","))
    if not shutil.which("tmux") and only & {"cpu", "frame", "solo"}:  # (headless needs none)
        print("tmux is needed for the terminal measurements", file=sys.stderr)
        return 2
    rows: list[tuple[str, str, str]] = []

    def row(*r):
        rows.append(r)
        print(r, flush=True)

    DRIVER = args.driver
    print(f"# gpuwatch bench: {machine()}; NVML stand-in (C), driver {DRIVER}, {args.busy_us:g} µs per call",
          flush=True)
    if "tick" in only:
        for n, target in ((8, "≤ 5 ms"), (16, ""), (64, "≤ 40 ms")):
            ts = [t for _ in range(args.runs) for t in tick_times(n, args.busy_us, 40)]
            row(f"collection tick (NVML only), {n} GPUs", f"{med(ts):.1f} ms (p95 {p95(ts):.1f})", target)
    try:
        if "cpu" in only:
            with Box(busy_us=args.busy_us) as box:
                res = [side_by_side(box, args.seconds, args.warmup) for _ in range(args.runs)]
            for r in res:
                print("  round:", {k: (round(u.cpu_pct, 2), mib(u.peak_rss), u.wakes) for k, u in r.items()}, flush=True)
            g = [r["gpuwatch"][0] for r in res]
            nv = [r["nvitop"][0] for r in res]
            ratio = [a / b for a, b in zip(g, nv)]
            row(f"dashboard CPU, 8 GPUs + 4 servers, 200×60, 1 s ({args.seconds:g} s × {args.runs}) — gpuwatch",
                f"{med(g):.2f} % of a core ({', '.join(f'{x:.2f}' for x in g)})", "≤ nvitop")
            row("— nvitop -m full --interval 1", f"{med(nv):.2f} % ({', '.join(f'{x:.2f}' for x in nv)})", "")
            row("ratio gpuwatch / nvitop (within each round)",
                f"{med(ratio):.2f} ({', '.join(f'{x:.2f}' for x in ratio)})", "≤ 1.0")
            row("peak RSS — gpuwatch / nvitop",
                f"{mib(med([r['gpuwatch'][1] for r in res]))} / {mib(med([r['nvitop'][1] for r in res]))}", "")
            if all(u.wakes is not None for r in res for u in r.values()):
                row("wake-ups a second, all threads (perf context-switches) — gpuwatch / nvitop",
                    f"{med([r['gpuwatch'].wakes for r in res]):.0f} / {med([r['nvitop'].wakes for r in res]):.0f}", "")
        if "frame" in only:
            with Box(busy_us=args.busy_us) as box:
                fg = [first_frame(box, "ffg", gpuwatch_cmd(box)) for _ in range(args.runs)]
                fn = [first_frame(box, "ffn", nvitop_cmd()) for _ in range(args.runs)]
                ft = [first_frame(box, "fft", floor_cmd()) for _ in range(args.runs)]
            fg, fn, ft = ([x for x in xs if x is not None] for xs in (fg, fn, ft))
            row("first frame (process start → GPU on screen) — gpuwatch / nvitop", f"{med(fg):.2f} / {med(fn):.2f} s",
                "≤ 0.4 s")
            row("— a Textual app with one line (bench/textual_floor.py)", f"{med(ft):.2f} s", "")
        if "solo" in only:
            s = args.solo_seconds
            for n in (0, 4, 16):
                with Box(servers=n, busy_us=args.busy_us) as box:
                    u = dashboard_alone(box, s)
                row(f"gpuwatch alone, 8 GPUs, {n} servers, 200×60", usage(u), "")
            for n in (16, 64):
                with Box(gpus=n, busy_us=args.busy_us) as box:
                    u = dashboard_alone(box, s)
                row(f"gpuwatch alone, {n} GPUs, 4 servers, 200×60", usage(u), "")
            with Box(busy_us=args.busy_us) as box:
                u = dashboard_alone(box, s, size=(80, 24))
                row("gpuwatch alone, 8 GPUs, 4 servers, 80×24", usage(u), "")
                u = dashboard_alone(box, s, paused=True)
                row("gpuwatch alone, paused (p), 200×60", usage(u), "~ Textual's idle")
                pid = tmux_start("floor", floor_cmd(), box.env)
                try:
                    wait_for_screen("floor", "H100", timeout=15)
                    u = watch_all({"floor": pid}, 3.0, s)["floor"]
                finally:
                    tmux_kill("floor")
                row("— Textual's idle: an app with one line, 200×60 (bench/textual_floor.py)",
                    usage(u), "")
        if "headless" in only:
            s = args.solo_seconds
            for n in (4, 0):  # the servers' share: polled every second, like the GPUs
                with Box(servers=n, busy_us=args.busy_us) as box:
                    u = serve_cost(box, s)
                    row(f"gpuwatch serve, 1 s interval, not scraped, 8 GPUs, {n} servers", usage(u),
                        "≤ 1 %")
                    u = record_cost(box, s)
                    row(f"gpuwatch record, 1 s interval (.gz), 8 GPUs, {n} servers", usage(u),
                        "≤ 1 %")
        if "rss" in only:
            with Box(busy_us=args.busy_us) as box:
                samples = rss_over_time(box, args.rss_minutes, every_s=min(60.0, args.rss_minutes * 60 / 10))
            row(f"dashboard RSS over {args.rss_minutes:g} min, 8 GPUs + 4 servers, 200×60, 1 s", rss_summary(samples),
                "flat")
    finally:
        tmux_kill_server()
    print()
    print("| measure | result | target |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
