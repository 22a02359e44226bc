"""The simulated box's process table: the same interface as ``gpuwatch.collect.procs.ProcessTable``
for the simulated pids, so discovery and the GPU join run the same code in the demo.

Each instance's server pid carries the spec's process name, command line and user; its
children are the pids NVML lists on the instance's GPUs (vLLM TP workers, the Ollama runner,
the SGLang scheduler). ``listeners()`` gives each server's real loopback port (from
``box.ports``, filled by ``start_sim_servers``).
"""

from __future__ import annotations

import os

from ..collect.procs import Listener, ProcInfo
from . import meter as sim_meter
from .box import SimBox
from .scenarios import InstanceSpec


class SimProcessTable:
    # the instance collector's questions (see ProcessTable): do not probe the real machine's
    # default ports, and name discovered servers after the scenario's instances
    probe_default_ports = False
    discovered_source = "simulated"

    def __init__(self, box: SimBox) -> None:
        self.box = box
        self._procs: dict[int, ProcInfo] = {}
        self._children: dict[int, list[int]] = {}
        self._names: dict[int, str] = {}
        for spec in box.scenario.instances:
            self._add_instance(spec)

    def _add_instance(self, spec: InstanceSpec) -> None:
        box = self.box
        server = box.server_pid(spec)
        env = {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in spec.gpus), "PATH": "/usr/bin:/bin", **dict(spec.env)}
        self._procs[server] = ProcInfo(pid=server, name=spec.process_name, cmdline=list(spec.cmdline), user=spec.user,
                                       cpu_pct=35.0, rss_bytes=2 * 1024**3, ppid=1, environ=env)
        kids: list[int] = []
        for rank in range(len(spec.gpus)):
            pid = box.gpu_pid(spec, rank)
            if pid == server or pid in kids:
                continue
            kids.append(pid)
            if spec.worker_name:
                name = spec.worker_name.format(rank=rank)
                cmdline = [name]
            elif spec.kind == "ollama":
                name = "ollama"
                cmdline = [spec.cmdline[0] if spec.cmdline else "ollama", "runner", "--model",
                           f"/usr/share/ollama/.ollama/models/blobs/sha256-{spec.name}", "--port", "41817"]
            elif spec.kind == "sglang":
                name = "sglang::scheduler"
                cmdline = [name]
            else:
                name = spec.process_name
                cmdline = list(spec.cmdline)
            self._procs[pid] = ProcInfo(pid=pid, name=name, cmdline=cmdline, user=spec.user, cpu_pct=98.0,
                                        rss_bytes=6 * 1024**3, ppid=server, environ=env)
        self._children[server] = kids
        self._names[server] = spec.name

    # ---- the ProcessTable interface ----------------------------------------------------------
    def info(self, pid: int) -> ProcInfo | None:
        if pid == sim_meter.PID and sim_meter.PORT_KEY in self.box.ports:
            return ProcInfo(pid=pid, name="gpuwatch", cmdline=sim_meter.cmdline(self.box), user="svc-llm",
                            cpu_pct=1.5, rss_bytes=48 * 1024**2, ppid=1)
        p = self._procs.get(pid)
        if p is None:
            return None
        return ProcInfo(**{**p.__dict__, "cmdline": list(p.cmdline), "environ": None})

    def environ(self, pid: int) -> dict[str, str] | None:
        p = self._procs.get(pid)
        return dict(p.environ) if p is not None and p.environ is not None else None

    def children(self, pid: int) -> list[int]:
        return list(self._children.get(pid, []))

    def listeners(self) -> list[Listener]:
        out = []
        for spec in self.box.scenario.instances:
            port = self.box.ports.get(spec.name)
            if port is not None:
                out.append(Listener(pid=self.box.server_pid(spec), port=port, host="127.0.0.1"))
        if sim_meter.PORT_KEY in self.box.ports:
            out.append(Listener(pid=sim_meter.PID, port=self.box.ports[sim_meter.PORT_KEY], host="127.0.0.1"))
        return out

    def server_name(self, pid: int) -> str | None:
        """The scenario's name for the server listening as ``pid``."""
        return self._names.get(pid)

    def processes(self) -> list[tuple[int, str, list[str], float]]:
        """No simulated server is ever still loading: every one listens (``listeners``)."""
        return []

    def forget_missing(self, alive: set[int]) -> None:
        pass

    @staticmethod
    def own_pid() -> int:
        return os.getpid()
