"""What each NVIDIA driver generation answers through NVML: one row per branch the simulator can
play (``--demo h100x8:driver=r535-early``). Everything the simulated library does differently
per driver is read from here; the source of each fact is in the comment beside it.

Sources named below:
- [nvml.h]     the NVML header of the matching CUDA toolkit (functions and field ids appear in
               the release that added them; e.g. field ids 193-198 first appear in CUDA 12.5 /
               R555's nvml.h).
- [nvitop#75]  github.com/XuehaiPan/nvitop/issues/75 and #76: 535.43-535.86 drivers with
               nvidia-ml-py < 12.535.77 list PIDs [pid, 0, 4294967295, 4294967295, ...].
- [pynvml]     nvidia-ml-py >= 12.535: nvmlDeviceGetComputeRunningProcesses calls only the
               ``_v3`` entry point, which the driver exports from R535 (issue 12).
- [go-nvml#46] github.com/NVIDIA/go-nvml/issues/46 (2022, R470/R510 era): nvmlDeviceGetFieldValues
               adds the value into the caller's buffer instead of overwriting it.
- [issue 12]   captures quoted in gpuwatch issue 12: on R535/R550 an unknown field id answers
               INVALID_ARGUMENT; the PCIe byte counters (197/198) exist from R555 and on GeForce
               from newer branches (an RTX 5090 on R610); the NVML change log of R570 reverts
               "the fix for the issue where PCIe throughput is 1000 times bigger".
Where the first branch of a function is not documented the comment says "approx."; the collector
never relies on a branch number, only on what the library answers.
"""

from __future__ import annotations

from dataclasses import dataclass

# C entry points by the branch that first exported them
_V3_PROCS = frozenset({"nvmlDeviceGetComputeRunningProcesses_v3",
                       "nvmlDeviceGetGraphicsRunningProcesses_v3"})  # R535 [pynvml]
_CLOCK_EVENTS = frozenset({"nvmlDeviceGetCurrentClocksEventReasons"})  # renamed from Throttle in R535 [nvml.h 12.2]
_MEMORY_V2 = frozenset({"nvmlDeviceGetMemoryInfo_v2"})  # R510 era [nvml.h 11.6] (approx.: absent on R470)
_TEMPERATURE_V = frozenset({"nvmlDeviceGetTemperatureV"})  # R555 [nvml.h 12.5] (approx.)
_MARGIN = frozenset({"nvmlDeviceGetMarginTemperature"})  # R555 [nvml.h 12.5]
_FABRIC_V1 = frozenset({"nvmlDeviceGetGpuFabricInfo"})  # R525, Hopper [nvml.h 12.0]
_FABRIC_V = frozenset({"nvmlDeviceGetGpuFabricInfoV"})  # R550 (health mask) [nvml.h 12.4]


@dataclass(frozen=True)
class DriverProfile:
    name: str  # the spelling in --demo ...:driver=NAME
    version: str
    cuda_version: int  # as NVML reports it: 12080 for 12.8
    nvml_version: str
    missing: frozenset[str] = frozenset()  # C entry points this branch does not export
    # _v3 process lists scrambled: [pid, 0, 4294967295, 4294967295] per process [nvitop#75]
    scrambled_pids: bool = False
    # PCIe byte-count fields 197/198: None = unknown field (INVALID_ARGUMENT) on every GPU,
    # "datacenter" = answered on datacenter parts, "all" = GeForce too [issue 12]
    pcie_byte_counters: str | None = "datacenter"
    # nvmlDeviceGetPcieThroughput answers in KB/s as documented (1) or in bytes/s (1000) [issue 12]
    pcie_sampler_scale: int = 1
    # field values accumulate into the caller's buffer [go-nvml#46]
    field_accumulates: bool = False
    # the T.Limit threshold fields 193-196 [nvml.h 12.5: "supported on Ada and later architectures and
    # supersedes nvmlDeviceGetTemperatureThreshold"]; signed offsets from T.Limit, e.g. -5/-2/0 for
    # shutdown/slowdown/max-operating (a public capture on an Ada card: 96/93/90 °C absolute)
    tlimit_fields: bool = True

    @property
    def branch(self) -> int:
        return int(self.version.split(".")[0])


DRIVERS: dict[str, DriverProfile] = {p.name: p for p in (
    DriverProfile(
        "r470", "470.256.02", 11040, "11.470.256.02",
        missing=_V3_PROCS | _CLOCK_EVENTS | _MEMORY_V2 | _TEMPERATURE_V | _MARGIN | _FABRIC_V1 | _FABRIC_V,
        pcie_byte_counters=None, field_accumulates=True, tlimit_fields=False),
    DriverProfile(
        "r525", "525.147.05", 12000, "12.525.147.05",
        missing=_V3_PROCS | _CLOCK_EVENTS | _TEMPERATURE_V | _MARGIN | _FABRIC_V,
        pcie_byte_counters=None, tlimit_fields=False),
    DriverProfile(  # the first R535 releases (535.43-535.86) [nvitop#75]
        "r535-early", "535.54.03", 12020, "12.535.54.03",
        missing=_TEMPERATURE_V | _MARGIN | _FABRIC_V, scrambled_pids=True,
        pcie_byte_counters=None, tlimit_fields=False),
    DriverProfile(
        "r535", "535.247.01", 12020, "12.535.247.01",
        missing=_TEMPERATURE_V | _MARGIN | _FABRIC_V, pcie_byte_counters=None, tlimit_fields=False),
    DriverProfile(  # the sampler's unit: which branch carries the x1000 reading is not documented;
        # gpuwatch settles it from the link maximum whatever the branch [issue 12]
        "r550", "550.163.01", 12040, "12.550.163.01",
        missing=_TEMPERATURE_V | _MARGIN, pcie_byte_counters=None, pcie_sampler_scale=1000,
        tlimit_fields=False),
    DriverProfile("r570", "570.172.08", 12080, "12.570.172.08"),
    DriverProfile("r580", "580.95.05", 13000, "13.580.95.05"),
    DriverProfile("r610", "610.43.02", 13020, "13.610.43.02", pcie_byte_counters="all"),
)}

DRIVER_ALIASES = {"r535early": "r535-early", "535.54": "r535-early", "early-r535": "r535-early"}


def driver_profile(name: str) -> DriverProfile | None:
    name = name.lower()
    name = DRIVER_ALIASES.get(name, name)
    if not name.startswith("r") and name[:1].isdigit():
        name = "r" + name.split(".")[0]
    return DRIVERS.get(name)
