"""Start the whole simulated box: the fake NVML library under pynvml, the process table of
its servers, and real HTTP servers on loopback that speak each engine's format."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field

from .box import RealClock, SimBox
from .host import write_host_tree
from .nvml import FakeNvmlLibrary, install, uninstall
from .procs import SimProcessTable
from .scenarios import parse_scenario
from .servers import start_sim_servers


@dataclass
class Demo:
    spec: str
    box: SimBox
    lib: FakeNvmlLibrary
    process_table: object
    servers: object = None
    wall_t0: float = field(default_factory=time.time)
    host: object = None  # the simulated /proc and /sys (gpuwatch.collect.host.HostView)
    host_root: str | None = None

    def wall(self) -> float:
        """Wall-clock time of the simulated box (moves with the box's clock in tests)."""
        return self.wall_t0 + self.box.t()

    def close(self) -> None:
        if self.servers is not None:
            self.servers.close()
            self.servers = None
        if self.host_root is not None:
            shutil.rmtree(self.host_root, ignore_errors=True)
            self.host_root = None
        uninstall()


def start_demo(spec: str | None = None, clock=None, latency_s: float = 0.0, pcie_sample_s: float = 0.02,
               servers: bool = True, wall_t0: float | None = None, start_offset_s: float = 0.0) -> Demo:
    """Raises ScenarioError (a ValueError) for an unknown scenario or fault."""
    scenario, faults = parse_scenario(spec)
    box = SimBox(scenario, faults, clock or RealClock(), start_offset_s=start_offset_s)
    lib = install(FakeNvmlLibrary(box, latency_s=latency_s, pcie_sample_s=pcie_sample_s))
    table = SimProcessTable(box)
    handle = start_sim_servers(box) if servers else None
    root = tempfile.mkdtemp(prefix="gpuwatch-demo-host-")
    demo = Demo(spec=spec or scenario.name, box=box, lib=lib, process_table=table, servers=handle,
                host=write_host_tree(lib, root), host_root=root)
    demo.wall_t0 = (time.time() if wall_t0 is None else wall_t0) - box.t()
    return demo
