"""The simulated box's /proc and /sys: the files gpuwatch reads beside NVML, written into a
directory of their own so the collector runs its real file-reading code on them
(:class:`gpuwatch.collect.host.HostView` with that directory as its roots)."""

from __future__ import annotations

import os

from ..collect.host import PROC_PID_INIT_INO, HostView, sysfs_bus_id
from .nvml import FakeNvmlLibrary

_CONTAINER_PID_NS = 4026532512  # any inode but the host's


def write_host_tree(lib: FakeNvmlLibrary, root: str) -> HostView:
    box = lib.box
    proc, sys_ = os.path.join(root, "proc"), os.path.join(root, "sys")
    for i in range(box.count):
        bus = sysfs_bus_id(lib.bus_ids[i])
        d = os.path.join(proc, "driver", "nvidia", "gpus", bus)
        os.makedirs(d, exist_ok=True)
        # a GPU that fell off the bus keeps its directory; its UUID reads as question marks
        uuid = "GPU-????????-????-????-????-????????????" if box.is_lost(i) else lib.uuids[i]
        with open(os.path.join(d, "information"), "w", encoding="utf-8") as f:
            f.write(f"Model: \t\t {box.spec.name}\nIRQ:   \t\t {120 + i}\nGPU UUID: \t {uuid}\n"
                    f"Video BIOS: \t 96.00.99.00.01\nBus Type: \t PCIe\nDMA Size: \t 52 bits\n"
                    f"DMA Mask: \t 0xfffffffffffff\nBus Location: \t {bus}\nDevice Minor: \t {i}\n")
        dev = os.path.join(sys_, "bus", "pci", "devices", bus)
        os.makedirs(dev, exist_ok=True)
        node = -1 if lib.unsupported else lib.numa_node(i)
        with open(os.path.join(dev, "numa_node"), "w", encoding="ascii") as f:
            f.write(f"{node}\n")
    ns = os.path.join(proc, "self", "ns")
    os.makedirs(ns, exist_ok=True)
    inode = _CONTAINER_PID_NS if box.has_fault("container") else PROC_PID_INIT_INO
    os.symlink(f"pid:[{inode}]", os.path.join(ns, "pid"))
    return HostView(proc_root=proc, sys_root=sys_)
