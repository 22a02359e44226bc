"""Fixed-size history of the numbers the dashboard plots (ring buffers: memory stays bounded
however long gpuwatch runs)."""

from __future__ import annotations

from collections import deque

from ..model import Snapshot

GPU_SERIES = ("util", "mem", "temp", "power")
# per instance: generation and prompt tok/s, requests running and waiting, TTFT and ITL p50 (s)
INSTANCE_SERIES = {"tok": "generation_tokens_per_s", "prompt": "prompt_tokens_per_s", "run": "requests_running",
                   "wait": "requests_waiting", "ttft": "ttft_p50_s", "itl": "itl_p50_s"}


def _epoch(iso_time: str) -> float | None:
    from datetime import datetime
    try:
        return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


class History:
    def __init__(self, points: int = 600) -> None:
        self.points = points
        self.times: deque[str] = deque(maxlen=points)
        self.gpu: dict[int, dict[str, deque]] = {}
        self.instance_tok: dict[str, deque] = {}
        self.epochs: deque[float | None] = deque(maxlen=points)  # self.times as seconds (chart time axes)
        self.instance: dict[str, dict[str, deque]] = {}  # name -> INSTANCE_SERIES key -> values

    def _series(self, index: int) -> dict[str, deque]:
        s = self.gpu.get(index)
        if s is None:
            s = self.gpu[index] = {name: deque(maxlen=self.points) for name in GPU_SERIES}
        return s

    def add(self, snap: Snapshot) -> None:
        self.times.append(snap.time)
        self.epochs.append(_epoch(snap.time))
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
            series = self.instance.get(inst.name)
            if series is None:
                series = self.instance[inst.name] = {k: deque(maxlen=self.points) for k in INSTANCE_SERIES}
            for key, attr in INSTANCE_SERIES.items():
                series[key].append(getattr(inst, attr))
        # instances that vanished keep their history only while the buffer would still show it
        for name in [n for n in self.instance_tok if n not in seen]:
            self.instance_tok[name].append(None)
            for d in self.instance.get(name, {}).values():
                d.append(None)
            if all(v is None for v in self.instance_tok[name]):
                del self.instance_tok[name]
                self.instance.pop(name, None)

    def clear(self) -> None:
        self.times.clear()
        self.epochs.clear()
        self.gpu.clear()
        self.instance_tok.clear()
        self.instance.clear()
