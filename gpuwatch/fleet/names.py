"""gpuwatch's Prometheus metrics, as data (docs/PROMETHEUS.md lists them for humans).

One table drives both directions: the exporter (``gpuwatch serve``) turns a Snapshot into these
series, and the fleet reader (``gpuwatch --prometheus``) turns them back into a Snapshot. Names
follow Prometheus conventions: base units (bytes, celsius, watts, hertz, seconds), ratios 0..1,
``_total`` for counters.

Counters: the snapshot carries *rates* (``*_per_s``); the exporter integrates rate x interval
into a monotonically increasing total (starting at 0 when ``serve`` starts), and the reader
takes ``rate(total[window])`` back into the same model field.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Series:
    metric: str
    path: str  # model attribute, dotted for nested objects: "pcie.tx_bytes_per_s"
    scale: float = 1.0  # metric value = model value * scale
    kind: str = "gauge"  # gauge | counter
    cast: type = float  # type of the model field when read back
    help: str = ""
    # a property of the GPU that does not change while the box runs (its memory, thresholds,
    # maximum clocks and link, default limit): the fleet reads these series once a minute and
    # when a box or GPU is new, not every refresh (fleet/source.py, STATIC_EVERY_S)
    static: bool = False


PREFIX = "gpuwatch_"

# labels on every per-GPU series; per-instance series carry host + instance_name + kind.
# (``instance`` and ``job`` are Prometheus's own target labels: ours must not collide with them)
GPU_LABELS = ("host", "gpu", "uuid")
INSTANCE_LABELS = ("host", "instance_name", "kind")

GPU_SERIES: tuple[Series, ...] = (
    Series("gpuwatch_gpu_utilization_ratio", "utilization_gpu_pct", 0.01, help="GPU busy time, 0..1"),
    Series("gpuwatch_gpu_memory_utilization_ratio", "utilization_memory_pct", 0.01,
           help="memory controller busy time, 0..1"),
    Series("gpuwatch_gpu_memory_used_bytes", "memory_used_bytes", cast=int, help="GPU memory used"),
    Series("gpuwatch_gpu_memory_total_bytes", "memory_total_bytes", cast=int, static=True, help="GPU memory total"),
    Series("gpuwatch_gpu_memory_reserved_bytes", "memory_reserved_bytes", cast=int,
           help="GPU memory reserved by the driver"),
    Series("gpuwatch_gpu_temperature_celsius", "temperature_c", help="GPU core temperature"),
    Series("gpuwatch_gpu_temperature_slowdown_celsius", "temperature_slowdown_c",
           static=True, help="this GPU's own slowdown threshold"),
    Series("gpuwatch_gpu_temperature_shutdown_celsius", "temperature_shutdown_c",
           static=True, help="this GPU's own shutdown threshold"),
    Series("gpuwatch_gpu_power_watts", "power_w", help="power draw"),
    Series("gpuwatch_gpu_power_limit_watts", "power_limit_w", help="enforced power limit"),
    Series("gpuwatch_gpu_power_default_limit_watts", "power_default_limit_w", static=True, help="default power limit"),
    Series("gpuwatch_gpu_sm_clock_hertz", "sm_clock_mhz", 1e6, cast=int, help="SM clock"),
    Series("gpuwatch_gpu_sm_clock_max_hertz", "sm_clock_max_mhz", 1e6, cast=int, static=True,
           help="maximum SM clock"),
    Series("gpuwatch_gpu_mem_clock_hertz", "mem_clock_mhz", 1e6, cast=int, help="memory clock"),
    Series("gpuwatch_gpu_mem_clock_max_hertz", "mem_clock_max_mhz", 1e6, cast=int, static=True,
           help="maximum memory clock"),
    Series("gpuwatch_gpu_fan_ratio", "fan_pct", 0.01, help="fan speed, 0..1"),
    Series("gpuwatch_gpu_pstate", "pstate", cast=int, help="performance state, 0 (max) .. 15"),
    Series("gpuwatch_gpu_pcie_link_gen", "pcie.gen", cast=int, help="current PCIe generation"),
    Series("gpuwatch_gpu_pcie_link_gen_max", "pcie.max_gen", cast=int, static=True, help="maximum PCIe generation"),
    Series("gpuwatch_gpu_pcie_link_width", "pcie.width", cast=int, help="current PCIe lanes"),
    Series("gpuwatch_gpu_pcie_link_width_max", "pcie.max_width", cast=int, static=True, help="maximum PCIe lanes"),
    Series("gpuwatch_gpu_pcie_tx_bytes_total", "pcie.tx_bytes_per_s", kind="counter",
           help="bytes sent over PCIe since gpuwatch serve started"),
    Series("gpuwatch_gpu_pcie_rx_bytes_total", "pcie.rx_bytes_per_s", kind="counter",
           help="bytes received over PCIe since gpuwatch serve started"),
    Series("gpuwatch_gpu_nvlink_links_active", "nvlink.links_active", cast=int, help="active NVLink links"),
    Series("gpuwatch_gpu_nvlink_links", "nvlink.links_total", cast=int, static=True, help="NVLink links of this GPU"),
    Series("gpuwatch_gpu_nvlink_tx_bytes_total", "nvlink.tx_bytes_per_s", kind="counter",
           help="NVLink payload bytes sent, all links, since gpuwatch serve started"),
    Series("gpuwatch_gpu_nvlink_rx_bytes_total", "nvlink.rx_bytes_per_s", kind="counter",
           help="NVLink payload bytes received, all links, since gpuwatch serve started"),
    Series("gpuwatch_gpu_ecc_uncorrected_errors", "ecc_uncorrected_volatile", cast=int,
           help="uncorrected ECC errors since the driver loaded"),
    Series("gpuwatch_gpu_lost", "lost", cast=bool, help="1 when the GPU fell off the bus"),
    Series("gpuwatch_gpu_processes", "#processes", cast=int, help="processes using this GPU"),
)

INSTANCE_SERIES: tuple[Series, ...] = (
    Series("gpuwatch_instance_up", "#up", cast=int, help="1 when the inference server answers usefully"),
    Series("gpuwatch_instance_generation_tokens_total", "generation_tokens_per_s", kind="counter",
           help="generated tokens since gpuwatch serve started"),
    Series("gpuwatch_instance_prompt_tokens_total", "prompt_tokens_per_s", kind="counter",
           help="prompt tokens processed since gpuwatch serve started"),
    Series("gpuwatch_instance_preemptions_total", "preemptions_per_s", kind="counter",
           help="preempted requests since gpuwatch serve started"),
    Series("gpuwatch_instance_requests_running", "requests_running", help="requests being served"),
    Series("gpuwatch_instance_requests_waiting", "requests_waiting", help="requests queued"),
    Series("gpuwatch_instance_kv_cache_usage_ratio", "kv_cache_usage_pct", 0.01, help="KV cache in use, 0..1"),
    Series("gpuwatch_instance_prefix_cache_hit_ratio", "prefix_cache_hit_pct", 0.01, help="prefix cache hits, 0..1"),
    Series("gpuwatch_instance_ttft_p50_seconds", "ttft_p50_s", help="time to first token, median"),
    Series("gpuwatch_instance_ttft_p95_seconds", "ttft_p95_s", help="time to first token, 95th percentile"),
    Series("gpuwatch_instance_itl_p50_seconds", "itl_p50_s", help="inter-token latency, median"),
    Series("gpuwatch_instance_itl_p95_seconds", "itl_p95_s", help="inter-token latency, 95th percentile"),
    Series("gpuwatch_instance_slots_busy", "slots_busy", cast=int, help="busy slots (llama.cpp)"),
    Series("gpuwatch_instance_slots", "slots_total", cast=int, help="slots (llama.cpp)"),
    Series("gpuwatch_instance_gpus", "#gpus", cast=int, help="GPUs the instance holds memory on"),
    Series("gpuwatch_instance_power_watts", "power_w",
           help="power of the instance's GPUs (a shared GPU split by memory share)"),
    Series("gpuwatch_instance_joules_per_token", "joules_per_token", help="energy per generated token"),
    Series("gpuwatch_instance_generation_tokens_per_second_per_kilowatt", "tokens_per_s_per_kw",
           help="generated tokens per second per kW of the instance's GPU power"),
    Series("gpuwatch_instance_model_flops_utilization_ratio", "mfu_pct", 0.01,
           help="vLLM estimated FLOP/s per GPU over the GPU's peak, 0..1"),
    Series("gpuwatch_instance_memory_bandwidth_utilization_ratio", "mem_bw_util_pct", 0.01,
           help="vLLM estimated memory reads per GPU over the GPU's peak bandwidth, 0..1"),
)

# info-style series (value 1, facts in labels)
HOST_INFO = "gpuwatch_host_info"  # host, driver_version, cuda_version, nvml_version, source, scenario, nvml_error
GPU_INFO = "gpuwatch_gpu_info"  # GPU_LABELS + name, pci_bus_id
GPU_THROTTLE = "gpuwatch_gpu_throttle_reason"  # GPU_LABELS + reason; 0/1
INSTANCE_INFO = "gpuwatch_instance_info"  # INSTANCE_LABELS + status, parallelism, parallel_size, model, version, gpus
INSTANCE_GPU_MEMORY = "gpuwatch_instance_gpu_memory_bytes"  # INSTANCE_LABELS + gpu
INSTANCE_MODEL = "gpuwatch_instance_model_info"  # INSTANCE_LABELS + model, cpu_offload_pct -> value: offload ratio
ALERT = "gpuwatch_alert"  # host, kind, severity, subject; 1 while active
SNAPSHOT_TIME = "gpuwatch_snapshot_timestamp_seconds"  # host; wall time of the last snapshot
COLLECT_SECONDS = "gpuwatch_collect_seconds"  # host; how long the last collection took
NVML_UP = "gpuwatch_nvml_up"  # host; 0 when the GPUs cannot be read at all

# info series of the same kind as the static GPU series above
STATIC_INFO = (GPU_INFO,)

INFO_SERIES = (HOST_INFO, GPU_INFO, GPU_THROTTLE, INSTANCE_INFO, INSTANCE_GPU_MEMORY, INSTANCE_MODEL, ALERT,
               SNAPSHOT_TIME, COLLECT_SECONDS, NVML_UP)


def counters(table) -> tuple[Series, ...]:
    return tuple(s for s in table if s.kind == "counter")


def gauges(table) -> tuple[Series, ...]:
    return tuple(s for s in table if s.kind == "gauge")
