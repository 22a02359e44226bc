"""Scenarios of the simulated box: which GPUs, how they are wired, what runs on them,
and which faults are switched on.

A scenario is picked by name, optionally with faults: ``h100x8``, ``rtx4090x2:hot``,
``h100x8:hot=3,lost,power`` (``FAULT=GPU`` picks the GPU), ``rtx4090x2:none`` (no faults,
not even the scenario's default ones).

A driver generation is picked like a fault: ``h100x8:driver=r535``, ``h100x8:driver=r470,mig``,
``rtx4090x2:driver=r610`` (see :mod:`gpuwatch.sim.drivers` for what each one answers).

Sized variants for benchmarks: ``h100xN`` (N = 1..256, N != 8) is N H100s on NVSwitch, NUMA
split in two, with h100x8's three servers repeated on every block of 8 GPUs (the last block
cut short); ``h100x8-4i`` is h100x8 with a fourth server (llama.cpp) on its spare GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ..errors import ScenarioError
from .drivers import DRIVERS, DriverProfile, driver_profile

GiB = 1024**3
MiB = 1024**2


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
    ecc: bool  # a datacenter part: ECC, MIG, persistence on, PCIe byte counters
    # P-state under a CUDA load: GeForce cards run compute at P2, datacenter parts at P0
    busy_pstate: int = 0
    # datacenter parts hold P0 and the full link at idle; GeForce drops to P8 and Gen1
    idle_pstate: int = 8
    idle_pcie_gen: int | None = 1  # None: stays at the max generation
    zero_rpm_fan: bool = False  # the fan stops when the card is cool and idle
    mig_slices: int = 0  # MIG: memory slices (7 on H100/H200), 0 = no MIG



# Real figures (issue 12, from NVIDIA's `nvidia-smi -q -x` captures of H100 SXM and HGX H200
# inventories): H100 80GB HBM3 81,559 MiB total with 480-516 MiB reserved, shutdown/slowdown/
# max-operating 92/89/87 °C, idle at P0 with the link at Gen5 x16; H200 143,771 MiB, 700 W,
# 18 NVLinks.
H100_SXM = GpuSpec(
    name="NVIDIA H100 80GB HBM3", memory_total_bytes=81559 * MiB, memory_reserved_bytes=507 * MiB,
    power_limit_w=700, power_idle_w=72, sm_clock_max_mhz=1980, sm_clock_idle_mhz=345,
    mem_clock_max_mhz=2619, pcie_max_gen=5, pcie_max_width=16, nvlinks=18,
    temp_slowdown_c=89, temp_shutdown_c=92, temp_max_operating_c=87,
    temp_idle_c=31, temp_full_load_c=62, has_fan=False, pci_device_id=0x233010DE, ecc=True,
    busy_pstate=0, idle_pstate=0, idle_pcie_gen=None, mig_slices=7,
)

H200_SXM = replace(
    H100_SXM, name="NVIDIA H200", memory_total_bytes=143771 * MiB, memory_reserved_bytes=551 * MiB,
    power_idle_w=76, mem_clock_max_mhz=3201, pci_device_id=0x233510DE,
    # thresholds: no H200 capture at hand, the H100's are assumed
)

RTX_4090 = GpuSpec(
    name="NVIDIA GeForce RTX 4090", memory_total_bytes=24 * GiB, memory_reserved_bytes=int(0.4 * GiB),
    power_limit_w=450, power_idle_w=18, sm_clock_max_mhz=3120, sm_clock_idle_mhz=210,
    mem_clock_max_mhz=10501, pcie_max_gen=4, pcie_max_width=16, nvlinks=0,
    temp_slowdown_c=90, temp_shutdown_c=95, temp_max_operating_c=88,
    temp_idle_c=34, temp_full_load_c=71, has_fan=True, pci_device_id=0x268410DE, ecc=False,
    busy_pstate=2, idle_pstate=8, idle_pcie_gen=1, zero_rpm_fan=True,
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
    # extra environment of the server process (Ollama's serving settings)
    env: tuple[tuple[str, str], ...] = ()
    port: int | None = None  # the port it would listen on (the simulated server takes it when free)
    # one request alone, tok/s: what `gpuwatch bench` measures. Bigger models are slower per
    # stream (decode is memory-bound: ~bandwidth / bytes of weights read per token)
    single_stream_tok_s: float = 60.0
    loading_s: float = 0.0  # llama.cpp: answers 503 "Loading model" for this long after start


@dataclass(frozen=True)
class PoolSpec:
    """An nginx upstream in front of some of the scenario's instances (written to a real
    nginx.conf for the demo, read back by the same code as on a real box)."""

    name: str
    method: str  # an nginx balancing directive (least_conn, ip_hash, ...) or "" for round robin
    members: tuple[tuple[str, int], ...]  # (instance name, weight)
    listen: int = 8080


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
    pools: tuple[PoolSpec, ...] = ()
    driver: DriverProfile = DRIVERS["r570"]


def with_driver(scenario: Scenario, profile: DriverProfile) -> Scenario:
    return replace(scenario, driver=profile, driver_version=profile.version, cuda_version=profile.cuda_version,
                   nvml_version=profile.nvml_version)


def _h100x8() -> Scenario:
    tp4 = InstanceSpec(
        name="vllm-llama70b", kind="vllm", model="meta-llama/Llama-3.3-70B-Instruct",
        gpus=(0, 1, 2, 3), parallelism="tensor", weights_bytes_per_gpu=(66 * GiB,) * 4,
        peak_tokens_per_s=2400, load_period_s=120, version="0.11.0", single_stream_tok_s=45,
        cmdline=("/opt/vllm/bin/python3", "-m", "vllm.entrypoints.openai.api_server", "--model",
                 "meta-llama/Llama-3.3-70B-Instruct", "--tensor-parallel-size", "4", "--port", "8000"),
        process_name="python3", worker_name="VLLM::Worker_TP{rank}",
    )
    tp2 = InstanceSpec(
        name="vllm-qwen32b", kind="vllm", model="Qwen/Qwen2.5-32B-Instruct",
        gpus=(4, 5), parallelism="tensor", weights_bytes_per_gpu=(64 * GiB,) * 2,
        peak_tokens_per_s=1300, load_period_s=75, load_phase=1.7, version="0.11.0", single_stream_tok_s=62,
        cmdline=("/opt/vllm/bin/python3", "-m", "vllm.entrypoints.openai.api_server", "--model",
                 "Qwen/Qwen2.5-32B-Instruct", "-tp", "2", "--port", "8001"),
        process_name="python3", worker_name="VLLM::Worker_TP{rank}",
    )
    sglang = InstanceSpec(
        name="sglang-mistral", kind="sglang", model="mistralai/Mistral-7B-Instruct-v0.3",
        gpus=(6,), parallelism="single", weights_bytes_per_gpu=(58 * GiB,),
        peak_tokens_per_s=900, load_period_s=60, load_phase=0.6, version="0.5.3", single_stream_tok_s=150,
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
        version="b6500", single_stream_tok_s=95,
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
        gpu_work_share=(1.0, 0.55), size_bytes=int(41.6 * GiB), single_stream_tok_s=19,
        version="0.12.6", cmdline=("/usr/local/bin/ollama", "serve"), process_name="ollama",
        user="ollama",
    )
    # a small model beside the 70B: 1.5B q8_0 is 1.6 GiB of weights plus its 8k context, and
    # leaves GPU 1 room for Ollama's 20.1 GiB (a 7B q8_0, 7.5 GiB, would not fit beside it)
    llamacpp = InstanceSpec(
        name="llama-server", kind="llamacpp", model="qwen2.5-coder-1.5b-instruct-q8_0.gguf",
        gpus=(1,), parallelism="single", weights_bytes_per_gpu=(int(1.9 * GiB),),
        peak_tokens_per_s=0.0, load_base=0.0, load_amplitude=0.0, version="b6500", single_stream_tok_s=260,
        cmdline=("/opt/llama.cpp/build/bin/llama-server", "-m", "/models/qwen2.5-coder-1.5b-instruct-q8_0.gguf",
                 "--metrics", "--port", "8080", "-ngl", "99"),
        process_name="llama-server", user="svc-llm",
    )
    return Scenario(
        name="rtx4090x2",
        description="2x RTX 4090 on a consumer board (no NVLink, x16 + x4 slots): Ollama 70B split by layers, an idle llama-server",
        gpu=RTX_4090, count=2, driver_version="580.95.05", cuda_version=13000, nvml_version="13.580.95.05",
        numa_nodes=1, cpus=24, nvswitch=False, instances=(ollama, llamacpp), default_faults={"pcie": 1},
        pcie_switch=(0, 1), driver=DRIVERS["r580"],
    )


RTX_3090 = GpuSpec(
    # typical NVML readings of an RTX 3090 (GA102, PCI device 0x2204): 350 W limit, boost up to
    # ~2.1 GHz, 19.5 Gbps GDDR6X (9751 MHz), PCIe 4.0 x16
    name="NVIDIA GeForce RTX 3090", memory_total_bytes=24 * GiB, memory_reserved_bytes=int(0.4 * GiB),
    power_limit_w=350, power_idle_w=22, sm_clock_max_mhz=2100, sm_clock_idle_mhz=210,
    mem_clock_max_mhz=9751, pcie_max_gen=4, pcie_max_width=16, nvlinks=0,
    temp_slowdown_c=90, temp_shutdown_c=98, temp_max_operating_c=88,
    temp_idle_c=33, temp_full_load_c=74, has_fan=True, pci_device_id=0x220410DE, ecc=False,
)


def _ollama3x() -> Scenario:
    """The common home/small-team layout: three Ollama instances, each pinned with
    CUDA_VISIBLE_DEVICES and on its own OLLAMA_HOST port, behind an nginx least_conn upstream."""
    model = "qwen2.5:32b-instruct-q4_K_M"
    common = dict(kind="ollama", model=model, version="0.12.6", process_name="ollama", user="ollama",
                  load_period_s=80, load_base=0.6, load_amplitude=0.3, size_bytes=int(21.4 * GiB),
                  cmdline=("/usr/local/bin/ollama", "serve"))
    settings = (("OLLAMA_NUM_PARALLEL", "4"), ("OLLAMA_MAX_LOADED_MODELS", "1"), ("OLLAMA_KEEP_ALIVE", "24h"),
                ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"))
    instances = tuple(
        InstanceSpec(name=f"ollama-{i}", gpus=gpus, parallelism="single" if len(gpus) == 1 else "pipeline",
                     weights_bytes_per_gpu=per_gpu, peak_tokens_per_s=peak, port=11434 + i,
                     gpu_work_share=None if len(gpus) == 1 else (1.0, 0.95),
                     env=settings + (("OLLAMA_HOST", f"127.0.0.1:{11434 + i}"),) + extra, **common)
        for i, (gpus, per_gpu, peak, extra) in enumerate((
            ((0,), (int(21.4 * GiB),), 64.0, ()),
            ((1,), (int(21.4 * GiB),), 64.0, ()),
            # split by layers over two GPUs: a little slower per stream, room for a longer context
            ((2, 3), (int(11.2 * GiB), int(10.6 * GiB)), 62.0, (("OLLAMA_SCHED_SPREAD", "1"),)),
        )))
    return Scenario(
        name="ollama3x",
        description="4x RTX 3090: three Ollama instances (ports 11434-11436, CUDA_VISIBLE_DEVICES=0, 1, 2,3) "
                    "behind an nginx least_conn upstream",
        gpu=RTX_3090, count=4, driver_version="580.95.05", cuda_version=13000, nvml_version="13.580.95.05",
        numa_nodes=1, cpus=32, nvswitch=False, instances=instances, pcie_switch=(0, 0, 1, 1), driver=DRIVERS["r580"],
        pools=(PoolSpec(name="llm_backends", method="least_conn", members=tuple((i.name, 1) for i in instances)),),
    )


def _h200x8() -> Scenario:
    tp8 = InstanceSpec(
        name="vllm-llama405b", kind="vllm", model="meta-llama/Llama-3.1-405B-Instruct-FP8",
        gpus=tuple(range(8)), parallelism="tensor", weights_bytes_per_gpu=(126 * GiB,) * 8,
        peak_tokens_per_s=3100, load_period_s=110, version="0.11.0",
        cmdline=("/opt/vllm/bin/python3", "-m", "vllm.entrypoints.openai.api_server", "--model",
                 "meta-llama/Llama-3.1-405B-Instruct-FP8", "--tensor-parallel-size", "8", "--port", "8000"),
        process_name="python3", worker_name="VLLM::Worker_TP{rank}",
    )
    return Scenario(
        name="h200x8",
        description="HGX H200 (8x H200 on NVSwitch), two NUMA nodes: vLLM Llama 405B FP8 with TP=8",
        gpu=H200_SXM, count=8, driver_version="570.172.08", cuda_version=12080, nvml_version="12.570.172.08",
        numa_nodes=2, cpus=128, nvswitch=True, instances=(tp8,), pcie_switch=(0, 0, 1, 1, 2, 2, 3, 3),
    )


SCENARIOS = {"h100x8": _h100x8, "h100x8-4i": _h100x8_4i, "h200x8": _h200x8, "rtx4090x2": _rtx4090x2,
             "ollama3x": _ollama3x}
_SIZED = re.compile(r"h100x(\d{1,3})")
MAX_SIZED_GPUS = 256
ALIASES = {"8xh100": "h100x8", "h100": "h100x8", "h200": "h200x8", "8xh200": "h200x8", "4090": "rtx4090x2", "2x4090": "rtx4090x2", "rtx4090": "rtx4090x2",
           "3xollama": "ollama3x"}
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
    "lost-at-start": "a GPU is already lost when gpuwatch starts (NVML counts it, its handle is GPU_IS_LOST)",
    "mig": "MIG mode on a GPU, with two MIG devices (one running a process)",
    "fabric": "the NVSwitch fabric manager is down: fabric not started, NVLinks inactive",
    "nothresholds": "the absolute temperature-threshold query answers NOT_SUPPORTED (T.Limit fields only)",
    "container": "gpuwatch runs in a container PID namespace: NVML's host PIDs do not resolve here",
}
DEFAULT_FAULT_GPU = {
    "h100x8": {"hot": 2, "idle": 5, "pcie": 1, "lost": 7, "power": 3, "ecc": 4, "lost-at-start": 3, "mig": 7},
    "h200x8": {"hot": 2, "idle": 5, "pcie": 1, "lost": 7, "power": 3, "ecc": 4, "lost-at-start": 3, "mig": 7},
    "rtx4090x2": {"hot": 0, "idle": 1, "pcie": 1, "lost": 1, "power": 0, "ecc": 0, "lost-at-start": 1, "mig": 0},
}
DEFAULT_FAULT_GPU["h100x8-4i"] = DEFAULT_FAULT_GPU["h100x8"]
DEFAULT_FAULT_GPU["ollama3x"] = {"hot": 1, "idle": 3, "pcie": 1, "lost": 2, "power": 0, "ecc": 0, "lost-at-start": 2,
                                 "mig": 0}


def parse_scenario(spec: str | None) -> tuple[Scenario, dict[str, int]]:
    """``NAME[:FAULT[=GPU],...][,driver=BRANCH]`` -> (scenario, {fault: gpu index})."""
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
        if fault == "driver":
            profile = driver_profile(gpu)
            if profile is None:
                raise ScenarioError(f"unknown driver {gpu!r}; choose from: {', '.join(DRIVERS)}")
            scenario = with_driver(scenario, profile)
            continue
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
