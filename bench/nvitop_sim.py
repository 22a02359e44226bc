"""Run nvitop against gpuwatch's simulated box, in this process.

    python bench/nvitop_sim.py [--scenario h100x8-4i] [--latency-us 30] [--log-missing FILE] -- NVITOP ARGS...

nvitop talks to NVML through nvidia-ml-py's ``pynvml``, as gpuwatch does, so installing
gpuwatch's fake C library (:mod:`gpuwatch.sim.nvml`) under pynvml shows nvitop the same box,
with the same per-call latency and the same 20 ms blocking PCIe sample, that gpuwatch sees.
``--log-missing`` appends the NVML C functions nvitop asked for that the fake library lacks;
``--log-calls`` writes, at exit, how many times nvitop called each NVML C function and over
how many seconds (to compare the tools' NVML traffic).
"""

from __future__ import annotations

import argparse
import atexit
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def install_sim(scenario: str, latency_s: float, pcie_sample_s: float = 0.02, log_missing: str | None = None,
                log_calls: str | None = None):
    from gpuwatch.sim.box import RealClock, SimBox
    from gpuwatch.sim.nvml import FakeNvmlLibrary, install
    from gpuwatch.sim.scenarios import parse_scenario

    scen, faults = parse_scenario(scenario)
    box = SimBox(scen, faults, RealClock())
    lib = FakeNvmlLibrary(box, latency_s=latency_s, pcie_sample_s=pcie_sample_s)
    if log_missing:
        missing: set[str] = set()
        original = FakeNvmlLibrary.__getattr__

        class Logging(FakeNvmlLibrary):
            def __getattr__(self, name):
                try:
                    return original(self, name)
                except AttributeError:
                    if not name.startswith("_"):
                        missing.add(name)
                    raise

        lib.__class__ = Logging

        def dump():
            with open(log_missing, "a") as f:
                for name in sorted(missing):
                    f.write(name + "\n")
        atexit.register(dump)
    if log_calls:
        import json
        import time

        started = time.monotonic()

        def dump_calls():
            with open(log_calls, "w") as f:
                json.dump({"seconds": time.monotonic() - started, "calls": lib.calls}, f, indent=1)
        atexit.register(dump_calls)
    install(lib)
    return lib


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="h100x8-4i")
    ap.add_argument("--latency-us", type=float, default=30.0)
    ap.add_argument("--pcie-sample-ms", type=float, default=20.0)
    ap.add_argument("--log-missing", metavar="FILE")
    ap.add_argument("--log-calls", metavar="FILE")
    ap.add_argument("nvitop_args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    install_sim(args.scenario, args.latency_us / 1e6, args.pcie_sample_ms / 1000, args.log_missing, args.log_calls)
    from nvitop.cli import main as nvitop_main

    rest = args.nvitop_args[1:] if args.nvitop_args[:1] == ["--"] else args.nvitop_args
    sys.argv = ["nvitop", *rest]
    return nvitop_main()


if __name__ == "__main__":
    sys.exit(main())
