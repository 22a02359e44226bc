"""Scenarios of the simulated box: which GPUs, how they are wired, what runs on them,
and which faults are switched on.

A scenario is picked by name, optionally with faults: ``h100x8``, ``rtx4090x2:hot``,
``h100x8:hot=3,lost,power`` (``FAULT=GPU`` picks the GPU), ``rtx4090x2:none`` (no faults,
not even the scenario's default ones).

Sized variants for benchmarks: ``h100xN`` (N = 1..256, N != 8) is N H100s on NVSwitch, NUMA
split in two, with h100x8's three servers repeated on every block of 8 GPUs (the last block
cut short); ``h100x8-4i`` is h100x8 with a fourth server (llama.cpp) on its spare GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ..errors import ScenarioError

GiB = 1024**3


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_total_bytes: int
    memory_reserved_bytes: int
    power_limit_w: float
    power_idle_w: float
    sm_clock_max_mhz: int
    sm_clock_idle_mhz: int
    mem_clock_max_mhz: int
    pcie_max_gen: int
    pcie_max_width: int
    nvlinks: int
    temp_slowdown_c: int
    temp_shutdown_c: int
    temp_max_operating_c: int
    temp_idle_c: float
    temp_full_load_c: float
    has_fan: bool
    pci_device_id: int
    ecc: bool


H100_SXM = GpuSpec(
    name="NVIDIA H100 80GB HBM3", memory_total_bytes=80 * GiB, memory_reserved_bytes=int(0.53 * GiB),
    power_limit_w=700, power_idle_w=72, sm_clock_max_mhz=1980, sm_clock_idle_mhz=345,
    mem_clock_max_mhz=2619, pcie_max_gen=5, pcie_max_width=16, nvlinks=18,
    temp_slowdown_c=90, temp_shutdown_c=92, temp_max_operating_c=87,
    temp_idle_c=31, temp_full_load_c=62, has_fan=False, pci_device_id=0x233010DE, ecc=True,
)

RTX_4090 = GpuSpec(
    name="NVIDIA GeForce RTX 4090", memory_total_bytes=24 * GiB, memory_reserved_bytes=int(0.4 * GiB),
    power_limit_w=450, power_idle_w=18, sm_clock_max_mhz=3120, sm_clock_idle_mhz=210,
    mem_clock_max_mhz=10501, pcie_max_gen=4, pcie_max_width=16, nvlinks=0,
    temp_slowdown_c=90, temp_shutdown_c=95, temp_max_operating_c=88,
    temp_idle_c=34, temp_full_load_c=71, has_fan=True, pci_device_id=0x268410DE, ecc=False,
)


@dataclass(frozen=True)
class InstanceSpec:
    """An inference server of the simulated box (served over loopback HTTP in the demo)."""

    name: str
    kind: str  # ollama | vllm | llamacpp | sglang
    model: str
    gpus: tuple[int, ...]
    parallelism: str  # tensor | pipeline | single
    weights_bytes_per_gpu: tuple[int, ...]  # model memory held on each GPU
    peak_tokens_per_s: float  # generation tok/s at full load
    load_period_s: float = 90.0  # load rises and falls with this period
    load_phase: float = 0.0
    load_base: float = 0.55
    load_amplitude: float = 0.35
    # uneven per-GPU share of the work (pipeline groups); 1.0 each when absent
    gpu_work_share: tuple[float, ...] | None = None
    # Ollama only: model size and how much of it sits in VRAM
    size_bytes: int | None = None
    size_vram_bytes: int | None = None
    version: str = ""
    cmdline: tuple[str, ...] = ()
    process_name: str = "python3"
    worker_name: str | None = None  # name of the per-GPU worker processes (vLLM TP workers)
    user: str = "svc-llm"
    numa_node: int | None = None  # CPUs the server runs on (None: same node as its GPUs)
    loading_s: float = 0.0  # llama.cpp: answers 503 "Loading model" for this long after start


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    gpu: GpuSpec
    count: int
    driver_version: str
    cuda_version: int  # as NVML reports it: 12080 for 12.8
    nvml_version: str
    numa_nodes: int
    cpus: int
    nvswitch: bool
    instances: tuple[InstanceSpec, ...] = ()
    default_faults: dict[str, int] = field(default_factory=dict)
    # the PCIe tree: GPUs on one switch share a key; switches under one root complex share
    # the NUMA node. Used to answer topology queries.
    pcie_switch: tuple[int, ...] = ()


def _h100x8() -> Scenario:
    tp4 = InstanceSpec(
        name="vllm-llama70b", kind="vllm", model="meta-llama/Llama-3.3-70B-Instruct",
        gpus=(0, 1, 2, 3), parallelism="tensor", weights_bytes_per_gpu=(66 * GiB,) * 4,
        peak_tokens_per_s=2400, load_period_s=120, version="0.11.0",
        cmdline=("/opt/vllm/bin/python3", "-m", "vllm.entrypoints.openai.api_server", "--model",
                 "meta-llama/Llama-3.3-70B-Instruct", "--tensor-parallel-size", "4", "--port", "8000"),
        process_name="python3", worker_name="VLLM::Worker_TP{rank}",
    )
    tp2 = InstanceSpec(
        name="vllm-qwen32b", kind="vllm", model="Qwen/Qwen2.5-32B-Instruct",
        gpus=(4, 5), parallelism="tensor", weights_bytes_per_gpu=(64 * GiB,) * 2,
        peak_tokens_per_s=1300, load_period_s=75, load_phase=1.7, version="0.11.0",
        cmdline=("/opt/vllm/bin/python3", "-m", "vllm.entrypoints.openai.api_server", "--model",
                 "Qwen/Qwen2.5-32B-Instruct", "-tp", "2", "--port", "8001"),
        process_name="python3", worker_name="VLLM::Worker_TP{rank}",
    )
    sglang = InstanceSpec(
        name="sglang-mistral", kind="sglang", model="mistralai/Mistral-7B-Instruct-v0.3",
        gpus=(6,), parallelism="single", weights_bytes_per_gpu=(58 * GiB,),
        peak_tokens_per_s=900, load_period_s=60, load_phase=0.6, version="0.5.3",
        cmdline=("python3", "-m", "sglang.launch_server", "--model-path",
                 "mistralai/Mistral-7B-Instruct-v0.3", "--port", "30000"),
    )
    return Scenario(
        name="h100x8",
        description="8x H100 SXM with NVSwitch, two NUMA nodes: vLLM TP=4 and TP=2, SGLang on one GPU, one GPU spare",
        gpu=H100_SXM, count=8, driver_version="570.172.08", cuda_version=12080, nvml_version="12.570.172.08",
        numa_nodes=2, cpus=112, nvswitch=True, instances=(tp4, tp2, sglang),
        pcie_switch=(0, 0, 1, 1, 2, 2, 3, 3),
    )


def _h100x8_4i() -> Scenario:
    base = _h100x8()
    llamacpp = InstanceSpec(
        name="llama-server", kind="llamacpp", model="llama-3.1-8b-instruct-q8_0.gguf",
        gpus=(7,), parallelism="single", weights_bytes_per_gpu=(int(9.5 * GiB),),
        peak_tokens_per_s=140, load_period_s=45, load_phase=2.3, load_base=0.4, load_amplitude=0.3,
        version="b6500",
        cmdline=("/opt/llama.cpp/build/bin/llama-server", "-m", "/models/llama-3.1-8b-instruct-q8_0.gguf",
                 "--metrics", "--port", "8080", "-ngl", "99"),
        process_name="llama-server",
    )
    return replace(base, name="h100x8-4i", instances=base.instances + (llamacpp,),
                   description=base.description.replace("one GPU spare", "llama.cpp on the last GPU"))


def _h100_sized(count: int) -> Scenario:
    """``count`` H100s: h100x8's servers repeated on each block of 8 GPUs."""
    base = _h100x8()
    instances = []
    for block in range(0, count, 8):
        for spec in base.instances:
            gpus = tuple(g + block for g in spec.gpus if g + block < count)
            if not gpus:
                continue
            n = len(gpus)
            name = spec.name if block == 0 else f"{spec.name}-{block // 8}"
            instances.append(replace(spec, name=name, gpus=gpus, weights_bytes_per_gpu=spec.weights_bytes_per_gpu[:n],
                                     parallelism=spec.parallelism if n > 1 or spec.parallelism == "single" else "single",
                                     load_phase=spec.load_phase + 0.9 * (block // 8)))
    return replace(base, name=f"h100x{count}", count=count, instances=tuple(instances),
                   description=f"{count}x H100 SXM with NVSwitch, two NUMA nodes: h100x8's servers on every 8 GPUs",
                   pcie_switch=tuple(i // 2 for i in range(count)))


def _rtx4090x2() -> Scenario:
    ollama = InstanceSpec(
        name="ollama", kind="ollama", model="llama3.3:70b-instruct-q4_K_M",
        gpus=(0, 1), parallelism="pipeline", weights_bytes_per_gpu=(int(21.5 * GiB), int(20.1 * GiB)),
        peak_tokens_per_s=19, load_period_s=50, load_base=0.5, load_amplitude=0.4,
        gpu_work_share=(1.0, 0.55), size_bytes=int(41.6 * GiB),
        version="0.12.6", cmdline=("/usr/local/bin/ollama", "serve"), process_name="ollama",
        user="ollama",
    )
    llamacpp = InstanceSpec(
        name="llama-server", kind="llamacpp", model="qwen2.5-coder-7b-instruct-q8_0.gguf",
        gpus=(1,), parallelism="single", weights_bytes_per_gpu=(int(1.2 * GiB),),
        peak_tokens_per_s=0.0, load_base=0.0, load_amplitude=0.0, version="b6500",
        cmdline=("/opt/llama.cpp/build/bin/llama-server", "-m", "/models/qwen2.5-coder-7b-instruct-q8_0.gguf",
                 "--metrics", "--port", "8080", "-ngl", "99"),
        process_name="llama-server", user="svc-llm",
    )
    return Scenario(
        name="rtx4090x2",
        description="2x RTX 4090 on a consumer board (no NVLink, x16 + x4 slots): Ollama 70B split by layers, an idle llama-server",
        gpu=RTX_4090, count=2, driver_version="580.95.05", cuda_version=13000, nvml_version="13.580.95.05",
        numa_nodes=1, cpus=24, nvswitch=False, instances=(ollama, llamacpp), default_faults={"pcie": 1},
        pcie_switch=(0, 1),
    )


SCENARIOS = {"h100x8": _h100x8, "h100x8-4i": _h100x8_4i, "rtx4090x2": _rtx4090x2}
_SIZED = re.compile(r"h100x(\d{1,3})")
MAX_SIZED_GPUS = 256
ALIASES = {"8xh100": "h100x8", "h100": "h100x8", "4090": "rtx4090x2", "2x4090": "rtx4090x2", "rtx4090": "rtx4090x2"}
DEFAULT_SCENARIO = "h100x8"

# fault name -> (description, default GPU index per scenario or None for box-wide)
FAULTS: dict[str, str] = {
    "hot": "a GPU runs hot and is thermally throttled",
    "idle": "one GPU of a tensor-parallel pair sits idle (a straggler)",
    "pcie": "a GPU's PCIe link trained below its maximum (x4)",
    "lost": "a GPU falls off the bus after 20 s",
    "power": "a GPU is power-capped well below its default limit",
    "unsupported": "fields unsupported: fan, ECC, PCIe counters, NUMA",
    "olddriver": "an older driver without the clock-event and v2 memory calls",
    "offload": "Ollama's model spills to the CPU",
    "ecc": "uncorrected ECC errors rising on a GPU",
}
DEFAULT_FAULT_GPU = {
    "h100x8": {"hot": 2, "idle": 5, "pcie": 1, "lost": 7, "power": 3, "ecc": 4},
    "rtx4090x2": {"hot": 0, "idle": 1, "pcie": 1, "lost": 1, "power": 0, "ecc": 0},
}
DEFAULT_FAULT_GPU["h100x8-4i"] = DEFAULT_FAULT_GPU["h100x8"]


def parse_scenario(spec: str | None) -> tuple[Scenario, dict[str, int]]:
    """``NAME[:FAULT[=GPU],...]`` -> (scenario, {fault: gpu index})."""
    spec = (spec or DEFAULT_SCENARIO).strip()
    name, _, faults_part = spec.partition(":")
    name = ALIASES.get(name.lower(), name.lower())
    sized = _SIZED.fullmatch(name)
    if sized and name not in SCENARIOS and 1 <= int(sized.group(1)) <= MAX_SIZED_GPUS:
        scenario = _h100_sized(int(sized.group(1)))
        name = "h100x8"  # its default fault GPUs (a fault on a GPU past the count is dropped below)
    elif name not in SCENARIOS:
        raise ScenarioError(f"unknown demo scenario {name!r}; choose from: {', '.join(SCENARIOS)}, "
                            f"h100xN (N GPUs, 1..{MAX_SIZED_GPUS})")
    else:
        scenario = SCENARIOS[name]()
    faults = dict(scenario.default_faults)
    for item in filter(None, (p.strip() for p in faults_part.split(","))):
        fault, _, gpu = item.partition("=")
        fault = fault.lower()
        if fault == "none":
            faults.clear()
            continue
        if fault not in FAULTS:
            raise ScenarioError(f"unknown fault {fault!r}; choose from: {', '.join(FAULTS)}")
        if gpu:
            try:
                idx = int(gpu)
            except ValueError:
                raise ScenarioError(f"fault {fault}: {gpu!r} is not a GPU index") from None
            if not 0 <= idx < scenario.count:
                raise ScenarioError(f"fault {fault}: GPU {idx} does not exist (0..{scenario.count - 1})")
        else:
            idx = DEFAULT_FAULT_GPU[name].get(fault, -1)
            if idx >= scenario.count:
                idx = scenario.count - 1
        faults[fault] = idx
    return scenario, faults
