"""The plain data that flows through gpuwatch: schema v1.

Collectors produce these objects, analysis annotates them, front ends present them.
Nothing here knows about terminals, HTTP or NVML. ``Snapshot.to_dict()`` is the JSON
contract documented in ``docs/SCHEMA.md``; ``Snapshot.from_dict()`` reads it back (replay,
fleet views). Units are in the key names; ``None`` (JSON ``null``) means unknown.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


_FIELDS: dict[type, list[tuple[str, type | None, bool]]] = {}


def _fields(cls) -> list[tuple[str, type | None, bool]]:
    """(name, nested dataclass, is float) per field; computed once per class."""
    got = _FIELDS.get(cls)
    if got is None:
        hints = typing.get_type_hints(cls)
        got = [(f.name, _NESTED.get((cls.__name__, f.name)), hints.get(f.name) in (float, float | None))
               for f in dataclasses.fields(cls)]
        _FIELDS[cls] = got
    return got


def _from_dict(cls, data):
    """Build dataclass ``cls`` from a dict, tolerating unknown and missing keys."""
    if data is None:
        return None
    kwargs = {}
    for name, nested, is_float in _fields(cls):
        if name not in data:
            continue
        value = data[name]
        if nested is not None and value is not None:
            if isinstance(value, list):
                value = [_from_dict(nested, v) for v in value]
            else:
                value = _from_dict(nested, value)
        elif is_float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kwargs[name] = value
    return cls(**kwargs)


@dataclass
class Process:
    pid: int
    name: str | None = None
    used_memory_bytes: int | None = None
    type: str = "compute"  # compute | graphics
    user: str | None = None
    cmdline: str | None = None
    cpu_pct: float | None = None
    rss_bytes: int | None = None
    cpu_affinity: list[int] | None = None


@dataclass
class Pcie:
    gen: int | None = None
    max_gen: int | None = None
    width: int | None = None
    max_width: int | None = None
    tx_bytes_per_s: float | None = None
    rx_bytes_per_s: float | None = None


@dataclass
class NvLink:
    links_active: int = 0
    links_total: int | None = None
    tx_bytes_per_s: float | None = None
    rx_bytes_per_s: float | None = None


@dataclass
class GPU:
    index: int
    uuid: str | None = None
    name: str | None = None
    pci_bus_id: str | None = None
    lost: bool = False
    utilization_gpu_pct: float | None = None
    utilization_memory_pct: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    memory_reserved_bytes: int | None = None
    temperature_c: float | None = None
    temperature_slowdown_c: float | None = None
    temperature_shutdown_c: float | None = None
    temperature_max_operating_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    power_default_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    sm_clock_max_mhz: int | None = None
    mem_clock_mhz: int | None = None
    mem_clock_max_mhz: int | None = None
    fan_pct: float | None = None
    pstate: int | None = None
    throttle_reasons: list[str] = field(default_factory=list)
    pcie: Pcie = field(default_factory=Pcie)
    nvlink: NvLink | None = None
    ecc_uncorrected_volatile: int | None = None
    persistence_mode: bool | None = None
    numa_node: int | None = None
    cpu_affinity: list[int] | None = None
    # topology level to every other GPU, keyed by the other GPU's index as a string:
    # "NV18", "PIX", "PXB", "PHB", "NODE", "SYS" (the vocabulary of `nvidia-smi topo -m`)
    topology: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    # names of inference instances that use this GPU (filled by analysis)
    instances: list[str] = field(default_factory=list)
    # fields that could not be read this tick, with the reason ("not supported", ...)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def memory_used_pct(self) -> float | None:
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return 100.0 * self.memory_used_bytes / self.memory_total_bytes

    @property
    def label(self) -> str:
        return f"GPU {self.index}"


@dataclass
class ModelInfo:
    name: str
    size_bytes: int | None = None
    size_vram_bytes: int | None = None
    cpu_offload_pct: float | None = None
    context_length: int | None = None
    expires_at: str | None = None
    quantization: str | None = None
    parameter_size: str | None = None


@dataclass
class BenchResult:
    time: str
    model: str | None = None
    generation_tokens_per_s: float | None = None
    prompt_tokens_per_s: float | None = None
    generation_tokens: int | None = None
    prompt_tokens: int | None = None
    runs: int = 1
    error: str | None = None


@dataclass
class Instance:
    name: str
    kind: str  # ollama | vllm | llamacpp | sglang | unknown
    url: str
    status: str = "down"  # up | down | error | loading | sleeping (vocab.INSTANCE_STATUSES)
    error: str | None = None
    error_since: str | None = None
    version: str | None = None
    models: list[ModelInfo] = field(default_factory=list)
    gpus: list[int] = field(default_factory=list)
    gpu_memory_bytes: dict[str, int] = field(default_factory=dict)
    parallelism: str = "unknown"  # tensor | pipeline | single | cpu | unknown
    parallel_size: int | None = None
    pid: int | None = None
    pids: list[int] = field(default_factory=list)
    generation_tokens_per_s: float | None = None
    prompt_tokens_per_s: float | None = None
    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_cache_usage_pct: float | None = None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    itl_p50_s: float | None = None
    itl_p95_s: float | None = None
    preemptions_per_s: float | None = None
    prefix_cache_hit_pct: float | None = None
    slots_busy: int | None = None
    slots_total: int | None = None
    bench: BenchResult | None = None
    source: str = "configured"  # configured | discovered | simulated | prometheus
    # when ``status`` last changed (ISO time): how long it has been loading, sleeping, down
    status_since: str | None = None
    # mean time per generated token of the requests that finished lately (llama.cpp:
    # tokens_predicted_seconds_total over tokens_predicted_total, both added at a request's end)
    time_per_token_s: float | None = None
    # speculative decoding: share of the draft tokens the target model accepted lately
    spec_accept_pct: float | None = None


@dataclass
class Alert:
    kind: str
    severity: str  # info | warning | critical
    subject: str
    message: str
    since: str | None = None
    key: str | None = None  # stable identity for hysteresis: kind + subject by default

    def identity(self) -> str:
        return self.key or f"{self.kind}:{self.subject}"


@dataclass
class Snapshot:
    time: str
    host: str
    schema_version: int = SCHEMA_VERSION
    driver_version: str | None = None
    cuda_version: str | None = None
    nvml_version: str | None = None
    # a human sentence when the GPUs could not be read at all (no driver, no library)
    nvml_error: str | None = None
    gpus: list[GPU] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    # how long the collection took, for the monitor's own cost display
    collect_ms: float | None = None
    source: str = "nvml"  # nvml | simulated | replay | prometheus
    scenario: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        # schema_version first, for humans reading the JSON
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"unsupported snapshot schema_version {version!r} (this gpuwatch reads {SCHEMA_VERSION})")
        return _from_dict(cls, data)

    def gpu(self, index: int) -> GPU | None:
        # the alert rules look GPUs up in every snapshot of their windows, ~800 times a tick:
        # positions indexed once per snapshot, each hit checked (the list may be changed in place)
        gpus = self.gpus
        pos = self.__dict__.get("_gpu_pos")
        if pos is None or pos[0] != len(gpus):
            pos = (len(gpus), {g.index: i for i, g in reversed(list(enumerate(gpus)))})
            self.__dict__["_gpu_pos"] = pos
        i = pos[1].get(index)
        if i is not None and gpus[i].index == index:
            return gpus[i]
        for g in gpus:
            if g.index == index:
                return g
        return None


_NESTED: dict[tuple[str, str], type] = {
    ("GPU", "pcie"): Pcie,
    ("GPU", "nvlink"): NvLink,
    ("GPU", "processes"): Process,
    ("Instance", "models"): ModelInfo,
    ("Instance", "bench"): BenchResult,
    ("Snapshot", "gpus"): GPU,
    ("Snapshot", "instances"): Instance,
    ("Snapshot", "alerts"): Alert,
}
