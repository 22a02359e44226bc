"""Start the whole simulated box: the fake NVML library under pynvml, the process table of
its servers, and real HTTP servers on loopback that speak each engine's format."""

from __future__ import annotations

import os
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
    nginx_conf: str | None = None  # the scenario's nginx configuration (in host_root/etc/nginx)
    host: object = None  # the simulated /proc and /sys (gpuwatch.collect.host.HostView)
    host_root: str | None = None

    def wall(self) -> float:
        """Wall-clock time of the simulated box (moves with the box's clock in tests)."""
        return self.wall_t0 + self.box.t()

    def close(self) -> None:
        self.nginx_conf = None  # it lives in host_root
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
    if scenario.pools and handle is not None:
        demo.nginx_conf = write_nginx_conf(box, os.path.join(root, "etc", "nginx"))
    demo.wall_t0 = (time.time() if wall_t0 is None else wall_t0) - box.t()
    return demo


def nginx_conf_text(box: SimBox) -> str:
    """An nginx.conf with the scenario's upstreams, as the README lays them out: each member is
    the simulated meter's route in front of an instance (the instance's own port where no meter
    fronts it)."""
    from .meter import routes

    fronted = {spec.name: listen for listen, _, spec in routes(box)}
    lines = ["# written by gpuwatch --demo: the scenario's nginx upstreams", "events {}", "http {"]
    for pool in box.scenario.pools:
        lines.append(f"    upstream {pool.name} {{")
        if pool.method:
            lines.append(f"        {pool.method};")
        for name, weight in pool.members:
            port = box.ports.get(name)
            address = fronted.get(name) or (f"127.0.0.1:{port}" if port is not None else None)
            if address is not None:
                lines.append(f"        server {address}" + (f" weight={weight}" if weight != 1 else "") + ";")
        lines += ["        keepalive 16;", "    }",
                  f"    server {{ listen 127.0.0.1:{pool.listen}; location / {{ proxy_pass http://{pool.name}; }} }}"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_nginx_conf(box: SimBox, folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "nginx.conf")
    with open(path, "w") as fh:
        fh.write(nginx_conf_text(box))
    return path
