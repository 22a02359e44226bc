"""Builders for synthetic snapshots used by the alert and doctor tests."""

from __future__ import annotations

from datetime import datetime, timezone

from gpuwatch.analysis.alert_config import AlertConfig
from gpuwatch.analysis.alerts import AlertEngine
from gpuwatch.model import GPU, Instance, ModelInfo, Pcie, Process, Snapshot

GiB = 1024**3
T0 = 1_750_000_000.0


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def gpu(index: int, **kw) -> GPU:
    """A healthy, busy H100."""
    pcie = kw.pop("pcie", None) or Pcie(gen=5, max_gen=5, width=16, max_width=16)
    base = dict(
        index=index, name="NVIDIA H100 80GB HBM3", utilization_gpu_pct=60.0, memory_used_bytes=60 * GiB,
        memory_total_bytes=80 * GiB, temperature_c=62.0, temperature_slowdown_c=90.0, temperature_shutdown_c=92.0,
        power_w=420.0, power_limit_w=700.0, power_default_limit_w=700.0, sm_clock_mhz=1900, sm_clock_max_mhz=1980,
        throttle_reasons=[], persistence_mode=True, numa_node=0 if index < 4 else 1,
        cpu_affinity=list(range(0, 56)) if index < 4 else list(range(56, 112)), ecc_uncorrected_volatile=0,
    )
    base.update(kw)
    return GPU(pcie=pcie, **base)


def inst(name: str, gpus: list[int], **kw) -> Instance:
    base = dict(
        name=name, kind="vllm", url="http://127.0.0.1:8000", status="up", gpus=list(gpus),
        parallelism="tensor" if len(gpus) > 1 else "single", generation_tokens_per_s=1000.0,
        requests_running=20.0, requests_waiting=0.0, kv_cache_usage_pct=50.0,
        models=[ModelInfo(name=kw.pop("model", "meta-llama/Llama-3.3-70B-Instruct"))],
    )
    base.update(kw)
    return Instance(**base)


def snap(t: float, gpus: list[GPU] | None = None, instances: list[Instance] | None = None, **kw) -> Snapshot:
    return Snapshot(time=iso(t), host="test", driver_version="570.172.08", gpus=gpus or [],
                    instances=instances or [], **kw)


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


class Feed:
    """An engine under a hand-driven clock, fed by a function of time since start."""

    def __init__(self, make, config: AlertConfig | None = None, step: float = 1.0) -> None:
        self.clock = Clock()
        self.engine = AlertEngine(config or AlertConfig(), clock=self.clock)
        self.make = make
        self.step = step
        self.elapsed = 0.0
        self.last: list = []

    def run(self, seconds: float) -> list:
        """Advance ``seconds`` in steps; returns the active alerts after the last step."""
        n = int(round(seconds / self.step))
        for _ in range(n):
            self.last = self.engine.update(self.make(self.elapsed))
            self.elapsed += self.step
            self.clock.t += self.step
        return self.last

    def kinds(self, alerts=None) -> set[str]:
        return {a.kind for a in (self.last if alerts is None else alerts)}

    def ever(self, kind: str) -> list:
        return [e for e in self.engine.history if e.kind == kind and e.state == "raised"]


def box(overrides: dict[int, dict] | None = None, count: int = 4) -> list[GPU]:
    """``count`` healthy GPUs; overrides maps index -> dict of field overrides."""
    overrides = overrides or {}
    return [gpu(i, **overrides.get(i, {})) for i in range(count)]


__all__ = ["GiB", "T0", "Clock", "Feed", "Pcie", "Process", "ModelInfo", "box", "gpu", "inst", "iso", "snap"]
