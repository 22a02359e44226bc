"""The plain data that flows through gpuwatch: schema v1.

Collectors produce these objects, analysis annotates them, front ends present them.
Nothing here knows about terminals, HTTP or NVML. ``Snapshot.to_dict()`` is the JSON
contract documented in ``docs/SCHEMA.md``; ``Snapshot.from_dict()`` reads it back (replay,
fleet views). Units are in the key names; ``None`` (JSON ``null``) means unknown.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


_SCALARS = frozenset({str, int, float, bool, type(None)})
_NAMES: dict[type, tuple[str, ...]] = {}


def plain(obj):
    """``dataclasses.asdict(obj)`` with the same result, at a sixth of its CPU (0.5 against 2.9 ms
    for the demo's 8 GPUs and 4 servers): a snapshot is ~1000 values, and asdict asks
    ``is_dataclass`` and ``deepcopy`` of each (a third of ``gpuwatch record``'s per-tick work).
    Scalars are returned as they are (immutable, as deepcopy returns them), each dataclass's
    field names are looked up once."""
    t = type(obj)
    if t in _SCALARS:
        return obj
    names = _NAMES.get(t)
    if names is None and dataclasses.is_dataclass(t):
        names = _NAMES[t] = tuple(f.name for f in dataclasses.fields(t))
    if names is not None:
        return {n: plain(getattr(obj, n)) for n in names}
    if t is list:
        if _SCALARS.issuperset(map(type, obj)):  # a GPU's CPU affinity: ~100 ints, copied in C
            return obj[:]
        return [plain(v) for v in obj]
    if t is dict:
        return {plain(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple, as asdict rebuilds it
        return t(*[plain(v) for v in obj])
    if isinstance(obj, (list, tuple)):
        return t(plain(v) for v in obj)
    if isinstance(obj, dict):
        return t((plain(k), plain(v)) for k, v in obj.items())
    return copy.deepcopy(obj)


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
    """Build dataclass ``cls`` from a dict, tolerating unknown and missing keys. Values are
    taken as they come: ``Snapshot.from_dict`` then checks and repairs them (sanitize.py)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    kwargs = {}
    for name, nested, _ in _fields(cls):
        if name not in data:
            continue
        value = data[name]
        if nested is not None and value is not None:
            if isinstance(value, list):
                value = [_from_dict(nested, v) for v in value if isinstance(v, dict)]
            elif isinstance(value, dict):
                value = _from_dict(nested, value)
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
    # what the two rates are: "counters" (byte counters, R555 and later: the average over the
    # time since the last tick) or "samples" (nvmlDeviceGetPcieThroughput, R550 and older: what
    # the driver counted in its own 20 ms window, taken every few seconds); None: not known
    rate_source: str | None = None


@dataclass
class NvLink:
    links_active: int = 0
    links_total: int | None = None
    tx_bytes_per_s: float | None = None
    rx_bytes_per_s: float | None = None


@dataclass
class MigDevice:
    """A MIG device (a GPU instance with its compute instance) of a GPU in MIG mode."""

    index: int  # its slot on the parent GPU (nvmlDeviceGetMigDeviceHandleByIndex)
    uuid: str | None = None
    name: str | None = None  # "NVIDIA H100 80GB HBM3 MIG 3g.40gb"
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    pids: list[int] = field(default_factory=list)  # its processes (also in GPU.processes)


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
    # field (or rule) -> why it is unavailable on this GPU, in a sentence an operator can act on
    errors: dict[str, str] = field(default_factory=dict)
    # MIG: None where the GPU has no MIG (GeForce) or the driver does not say
    mig_mode: bool | None = None
    mig_devices: list[MigDevice] = field(default_factory=list)
    # NVSwitch fabric (HGX): completed | in_progress | not_started | failed; None where not reported
    fabric_state: str | None = None
    # °C left before T.Limit (the GPU's nearest slowdown point), where the driver reports it
    temperature_margin_c: float | None = None

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
    # values that could not be read (absurd or non-finite), by field, with the reason
    errors: dict[str, str] = field(default_factory=dict)


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
    kind: str  # ollama | vllm | llamacpp | sglang | tgi | tabbyapi | lmstudio | llamaswap | unknown
    url: str
    status: str = "down"  # up | down | error | loading | sleeping
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
    # since when ``status`` has had its current value (ISO time)
    status_since: str | None = None
    # why it is loading / sleeping ("sleep level 1: weights offloaded to CPU memory")
    status_detail: str | None = None
    # Docker container it runs in (discovered through the Docker Engine API), and the GPUs the
    # container was given (DeviceRequests / NVIDIA_VISIBLE_DEVICES: indices or UUIDs, or "all")
    container: str | None = None
    container_gpus: list[str] = field(default_factory=list)
    # energy: the power of the instance's own GPUs (a GPU shared with other instances counted
    # by this instance's share of the memory used on it: ``power_shared``), joules per generated
    # token and generated tokens per second per kW of that power
    power_w: float | None = None
    power_shared: bool = False
    joules_per_token: float | None = None
    tokens_per_s_per_kw: float | None = None
    # vLLM / SGLang --enable-mfu-metrics: model FLOP/s and memory read bytes/s per GPU, and as % of the
    # GPU model's peak (analysis/peaks.py)
    flops_per_gpu_per_s: float | None = None
    read_bytes_per_gpu_per_s: float | None = None
    mfu_pct: float | None = None
    mem_bw_util_pct: float | None = None
    # metrics URL of the gpuwatch meter whose figures fill in tok/s, running, TTFT and ITL
    meter: str | None = None
    # LISTEN addresses of the meter routes that forward to this instance ("127.0.0.1:11534"):
    # what clients and nginx upstreams point at when they reach it through a meter
    meter_routes: list[str] = field(default_factory=list)
    # serving settings read from the server process's environment where it is readable
    # (Ollama: OLLAMA_NUM_PARALLEL, OLLAMA_MAX_LOADED_MODELS, OLLAMA_KEEP_ALIVE, CUDA_VISIBLE_DEVICES, ...)
    settings: dict[str, str] = field(default_factory=dict)
    # finished requests per second (vLLM, SGLang, a gpuwatch meter): the pools' request shares
    requests_per_s: float | None = None
    # mean time per generated token of the requests that finished lately (llama.cpp:
    # tokens_predicted_seconds_total over tokens_predicted_total, both added at a request's end)
    time_per_token_s: float | None = None
    # speculative decoding: share of the draft tokens the target model accepted lately
    spec_accept_pct: float | None = None
    # values that could not be read (non-finite, absurd, wrong type), by field, with the reason
    errors: dict[str, str] = field(default_factory=dict)


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
class HostStatus:
    """Whether a host's numbers are current (fleet views: Prometheus's view of its scrape target)."""
    state: str  # up | down (Prometheus cannot scrape it) | stale (its newest sample is old)
    since: str | None = None  # ISO 8601 UTC: when it went down, or its newest sample
    reason: str | None = None  # one human sentence


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
    # replica groups: nginx upstreams whose servers are watched instances
    pools: list[Pool] = field(default_factory=list)
    # "container" when gpuwatch runs in a PID namespace of its own: NVML's PIDs are the host's and
    # are neither named nor tied to servers; "host" or None otherwise
    pid_namespace: str | None = None
    # one line each for what server discovery could not look at (no Docker socket, no permission)
    discovery_notes: list[str] = field(default_factory=list)
    # fleet views only: is this host's data current? (None on a local box)
    status: HostStatus | None = None
    # the first look for inference servers has not finished yet (``instances`` is not "none" yet)
    instances_pending: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = plain(self)
        # schema_version first, for humans reading the JSON
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"unsupported snapshot schema_version {version!r} (this gpuwatch reads {SCHEMA_VERSION})")
        from .sanitize import clean_snapshot  # outside data: checked where it enters the model
        return clean_snapshot(_from_dict(cls, data))

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


@dataclass
class PoolMember:
    """One ``server`` line of an nginx upstream."""

    url: str  # as nginx has it, with a scheme: http://127.0.0.1:11434
    weight: int = 1
    max_fails: int = 1
    fail_timeout_s: float = 10.0
    backup: bool = False
    down: bool = False  # marked `down` in the config
    instance: str | None = None  # the watched instance it resolves to
    via: str | None = None  # the meter route it goes through (LISTEN URL), when it does
    # expected share of the work: weight / sum of the weights of the members that take work
    weight_share: float | None = None
    # over the pool's window (fractions 0..1): requests started, running requests (time
    # average) and generated tokens, each against the pool's total
    request_share: float | None = None
    running_share: float | None = None
    token_share: float | None = None


@dataclass
class Pool:
    """An nginx ``upstream`` whose servers are watched inference instances: a replica group."""

    name: str
    source: str  # where it was read from: /etc/nginx/conf.d/llm.conf:12
    method: str = "round_robin"  # round_robin | least_conn | ip_hash | hash | random | least_time
    members: list[PoolMember] = field(default_factory=list)
    window_s: float | None = None  # the span the shares cover
    # the model its members serve, as the first one spells it (None: none, or different models)
    model: str | None = None


_NESTED: dict[tuple[str, str], type] = {
    ("GPU", "pcie"): Pcie,
    ("GPU", "nvlink"): NvLink,
    ("GPU", "processes"): Process,
    ("GPU", "mig_devices"): MigDevice,
    ("Instance", "models"): ModelInfo,
    ("Instance", "bench"): BenchResult,
    ("Snapshot", "gpus"): GPU,
    ("Snapshot", "instances"): Instance,
    ("Snapshot", "alerts"): Alert,
    ("Snapshot", "status"): HostStatus,
    ("Snapshot", "pools"): Pool,
    ("Pool", "members"): PoolMember,
}
