"""One simulated inference server in a process of its own, as on a real box.

    python bench/servers.py [--scenario h100x8-4i] [--index 0]

Serves instance ``--index`` of the scenario (vLLM, SGLang, llama.cpp or Ollama, answering as
``gpuwatch/sim/servers.py`` does, on a real clock) on a free loopback port, prints one JSON
line ``{"pid", "port", "name", "kind", "gpus"}`` and runs until its standard input closes. The
benchmark starts one per server, so neither measured tool holds any server code, and the
compiled NVML stand-in lists each server's PID on its GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="h100x8-4i")
    ap.add_argument("--index", type=int, default=0)
    args = ap.parse_args()
    from dataclasses import replace

    from gpuwatch.sim.box import RealClock, SimBox
    from gpuwatch.sim.scenarios import parse_scenario
    from gpuwatch.sim.servers import start_sim_servers

    scen, faults = parse_scenario(args.scenario)
    spec = scen.instances[args.index % len(scen.instances)]
    box = SimBox(replace(scen, instances=(spec,)), faults, RealClock())
    servers = start_sim_servers(box)
    print(json.dumps({"pid": os.getpid(), "port": box.ports[spec.name], "name": spec.name, "kind": spec.kind,
                      "gpus": list(spec.gpus)}), flush=True)
    try:
        sys.stdin.read()  # EOF when the benchmark ends (or dies)
    finally:
        servers.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
