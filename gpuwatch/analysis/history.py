"""Fixed-size history of the numbers the dashboard plots (ring buffers: memory stays bounded
however long gpuwatch runs)."""

from __future__ import annotations

from collections import deque

from ..model import Snapshot

GPU_SERIES = ("util", "mem", "temp", "power")


class History:
    def __init__(self, points: int = 600) -> None:
        self.points = points
        self.times: deque[str] = deque(maxlen=points)
        self.gpu: dict[int, dict[str, deque]] = {}
        self.instance_tok: dict[str, deque] = {}

    def _series(self, index: int) -> dict[str, deque]:
        s = self.gpu.get(index)
        if s is None:
            s = self.gpu[index] = {name: deque(maxlen=self.points) for name in GPU_SERIES}
        return s

    def add(self, snap: Snapshot) -> None:
        self.times.append(snap.time)
        for g in snap.gpus:
            s = self._series(g.index)
            s["util"].append(g.utilization_gpu_pct)
            s["mem"].append(g.memory_used_pct)
            s["temp"].append(g.temperature_c)
            s["power"].append(g.power_w)
        seen = set()
        for inst in snap.instances:
            seen.add(inst.name)
            d = self.instance_tok.get(inst.name)
            if d is None:
                d = self.instance_tok[inst.name] = deque(maxlen=self.points)
            d.append(inst.generation_tokens_per_s)
        # instances that vanished keep their history only while the buffer would still show it
        for name in [n for n in self.instance_tok if n not in seen]:
            self.instance_tok[name].append(None)
            if all(v is None for v in self.instance_tok[name]):
                del self.instance_tok[name]

    def clear(self) -> None:
        self.times.clear()
        self.gpu.clear()
        self.instance_tok.clear()
