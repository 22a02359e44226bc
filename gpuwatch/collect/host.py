"""What the operating system says about the GPUs and about gpuwatch's own process, where NVML
cannot: which NVIDIA GPUs the kernel driver lists (so a GPU NVML cannot open still has a PCI bus
id), the NUMA node of each PCI device, and whether gpuwatch runs in a PID namespace of its own.

Every path hangs off ``proc_root`` and ``sys_root`` so tests and the simulator hand in a tree of
their own.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# include/linux/proc_ns.h: PROC_PID_INIT_INO, the inode of the initial (host) PID namespace
PROC_PID_INIT_INO = 0xEFFFFFFC

_NS = re.compile(r"pid:\[(\d+)\]")


@dataclass
class OsGpu:
    """A GPU as /proc/driver/nvidia/gpus/<bus id>/information describes it."""

    bus_id: str  # NVML's spelling: 00000000:3A:00.0
    name: str | None = None
    uuid: str | None = None


def sysfs_bus_id(nvml_bus_id: str) -> str:
    """00000000:3A:00.0 (NVML) -> 0000:3a:00.0 (the kernel's spelling)."""
    domain, _, rest = nvml_bus_id.partition(":")
    try:
        return f"{int(domain, 16):04x}:{rest.lower()}"
    except ValueError:
        return nvml_bus_id.lower()


def nvml_bus_id(kernel_bus_id: str) -> str:
    """0000:3a:00.0 (the kernel's spelling) -> 00000000:3A:00.0 (NVML's)."""
    domain, _, rest = kernel_bus_id.partition(":")
    try:
        return f"{int(domain, 16):08X}:{rest.upper()}"
    except ValueError:
        return kernel_bus_id.upper()


class HostView:
    def __init__(self, proc_root: str = "/proc", sys_root: str = "/sys") -> None:
        self.proc_root = proc_root
        self.sys_root = sys_root

    def nvidia_gpus(self) -> list[OsGpu]:
        """The GPUs the NVIDIA kernel driver lists, in PCI order (NVML's default index order)."""
        base = os.path.join(self.proc_root, "driver", "nvidia", "gpus")
        try:
            names = sorted(os.listdir(base))
        except OSError:
            return []
        out = []
        for name in names:
            gpu = OsGpu(bus_id=nvml_bus_id(name))
            try:
                with open(os.path.join(base, name, "information"), encoding="utf-8", errors="replace") as f:
                    for line in f:
                        key, _, value = line.partition(":")
                        value = value.strip()
                        if key.strip() == "Model" and value:
                            gpu.name = value
                        elif key.strip() == "GPU UUID" and value.startswith("GPU-") and "?" not in value:
                            gpu.uuid = value
            except OSError:
                pass
            out.append(gpu)
        return out

    def pci_numa_node(self, bus_id: str | None) -> int | None:
        """The NUMA node the kernel gives the PCI device (None when unknown or -1)."""
        if not bus_id:
            return None
        path = os.path.join(self.sys_root, "bus", "pci", "devices", sysfs_bus_id(bus_id), "numa_node")
        try:
            with open(path, encoding="ascii") as f:
                node = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return node if node >= 0 else None

    def pid_namespace(self) -> str | None:
        """"host" when gpuwatch sees the host's PIDs, "container" when it runs in a PID namespace
        of its own (NVML's PIDs, which are the host's, then mean nothing here), None if unknown."""
        try:
            link = os.readlink(os.path.join(self.proc_root, "self", "ns", "pid"))
        except OSError:
            return None
        m = _NS.fullmatch(link)
        if m is None:
            return None
        return "host" if int(m.group(1)) == PROC_PID_INIT_INO else "container"
