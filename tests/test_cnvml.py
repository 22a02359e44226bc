"""The compiled NVML stand-in (gpuwatch/sim/cnvml), loaded by pynvml through its ordinary
library search: gpuwatch runs as a real subprocess with LD_LIBRARY_PATH pointing at the build
and no simulator anywhere in the process (no --demo)."""

from __future__ import annotations

import ctypes
import gzip
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, run_cli

MIB = 1 << 20


@pytest.fixture(scope="module")
def cnvml(tmp_path_factory):
    from gpuwatch.sim import cnvml

    if cnvml.compiler() is None:
        pytest.skip("no C compiler (cc/gcc/clang) on this machine: the NVML stand-in cannot be built")
    return cnvml.build(tmp_path_factory.mktemp("cnvml"))


def env_for(lib_dir, **kw):
    from gpuwatch.sim import cnvml

    return cnvml.environment(lib_dir, **kw)


def test_snapshot_loads_the_stand_in_through_pynvml_and_shows_the_box(cnvml):
    r = run_cli("snapshot", "--json", "--no-discover", "--interval", "0.3", env=env_for(cnvml))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    d = json.loads(r.stdout)
    assert d["nvml_error"] is None
    assert d["scenario"] is None  # a live reading, not the demo
    assert d["driver_version"] == "550.127.05" and d["cuda_version"] == "12.4"
    assert [g["index"] for g in d["gpus"]] == list(range(8))
    assert len({g["uuid"] for g in d["gpus"]}) == 8
    for g in d["gpus"]:
        assert g["name"] == "NVIDIA H100 80GB HBM3"
        assert g["memory_total_bytes"] == 81559 * MIB
        assert g["memory_reserved_bytes"] == 512 * MIB
        assert 0 < g["memory_used_bytes"] < g["memory_total_bytes"]
        assert (g["temperature_shutdown_c"], g["temperature_slowdown_c"], g["temperature_max_operating_c"]) == (92, 89, 87)
        assert g["power_limit_w"] == 700.0 and 0 < g["power_w"] < 700
        assert (g["pcie"]["gen"], g["pcie"]["width"]) == (5, 16)
        assert g["pstate"] == 0
        assert g["fan_pct"] is None  # an SXM board has no fan of its own
        assert g["nvlink"]["links_active"] == g["nvlink"]["links_total"] == 18
        # the second sample turns the cumulative NVLink counters into rates
        assert g["nvlink"]["tx_bytes_per_s"] > 0 and g["nvlink"]["rx_bytes_per_s"] > 0
    assert d["gpus"][0]["pci_bus_id"] == "00000000:18:00.0"
    assert d["gpus"][7]["pci_bus_id"] == "00000000:DB:00.0"


def test_rates_appear_from_the_second_recorded_sample(cnvml, tmp_path):
    """On a driver with PCIe byte counters (R555+), the first snapshot has no rates (one reading of
    a counter is no rate) and the second has them, from the counters the library integrates."""
    out = tmp_path / "rec.ndjson.gz"
    r = run_cli("record", "-o", str(out), "--count", "2", "--interval", "0.5", "--no-discover",
                env=env_for(cnvml, driver="555.42.06", gpus=16))
    assert r.returncode == 0, r.stderr
    first, second = (json.loads(line) for line in gzip.open(out, "rt"))
    assert len(first["gpus"]) == len(second["gpus"]) == 16
    assert first["gpus"][3]["pcie"]["tx_bytes_per_s"] is None
    assert first["gpus"][3]["nvlink"]["tx_bytes_per_s"] is None
    for g in second["gpus"]:
        # the stand-in's traffic: TX 2 +- 1.2 GB/s, RX 3 +- 1.5 GB/s on a busy GPU
        assert 0.7e9 <= g["pcie"]["tx_bytes_per_s"] <= 3.3e9
        assert 1.4e9 <= g["pcie"]["rx_bytes_per_s"] <= 4.6e9
        assert g["nvlink"]["tx_bytes_per_s"] > 0
    assert second["gpus"][8]["pci_bus_id"] == "00000001:18:00.0"  # the second baseboard


def test_processes_come_from_the_driver_and_resolve_to_real_processes(cnvml):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        env = env_for(cnvml, procs=f"{sleeper.pid}:0-1:70000")
        r = run_cli("snapshot", "--json", "--no-discover", "--interval", "0.2", env=env)
        assert r.returncode == 0, r.stderr
        gpus = json.loads(r.stdout)["gpus"]
    finally:
        sleeper.kill()
        sleeper.wait()
    for g in gpus[:2]:
        (p,) = g["processes"]
        assert p["pid"] == sleeper.pid and p["name"] == "sleep"
        assert p["used_memory_bytes"] == 70000 * MIB == g["memory_used_bytes"]
        assert g["utilization_gpu_pct"] > 0
    for g in gpus[2:]:  # no process: idle, nothing allocated, still in P0
        assert g["processes"] == [] and g["memory_used_bytes"] == 0
        assert g["utilization_gpu_pct"] == 0 and g["pstate"] == 0
        assert "gpu_idle" in g["throttle_reasons"]


def test_a_gpu_lost_before_start_is_shown_lost_and_alerted(cnvml):
    """The driver counts the lost GPU but gives it no handle (GPU_IS_LOST): the others are read,
    the lost one is a card of its own and gpu_lost fires."""
    r = run_cli("snapshot", "--json", "--no-discover", "--interval", "0.2", env=env_for(cnvml, lost="5"))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [g["lost"] for g in d["gpus"]] == [False] * 5 + [True] + [False] * 2
    assert d["gpus"][6]["name"] == "NVIDIA H100 80GB HBM3" and d["gpus"][6]["utilization_gpu_pct"] is not None
    assert [(a["kind"], a["subject"]) for a in d["alerts"]] == [("gpu_lost", "GPU 5")]


def test_dashboard_frame_and_doctor_on_the_stand_in(cnvml, tmp_path):
    env = env_for(cnvml)
    svg = tmp_path / "frame.svg"
    r = run_cli("snapshot", "--svg", str(svg), "--size", "120x40", "--no-discover", "--interval", "0.2", env=env)
    assert r.returncode == 0, r.stderr
    frame = svg.read_text()
    assert "H100" in frame and "550.127.05" in frame
    r = run_cli("doctor", "--no-discover", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "8 GPUs" in r.stdout and "driver 550.127.05" in r.stdout
    assert "fabric completed" in r.stdout  # the NVSwitch fabric answers as on a healthy HGX board


# Every entry point gpuwatch's collector calls, and every one `nvitop -m full` calls (logged from
# nvitop 1.7 against the Python simulator), must be exported.
COLLECTOR_CALLS = """
nvmlInitWithFlags nvmlShutdown nvmlErrorString nvmlSystemGetDriverVersion nvmlSystemGetNVMLVersion
nvmlSystemGetCudaDriverVersion nvmlSystemGetCudaDriverVersion_v2 nvmlDeviceGetCount_v2
nvmlDeviceGetHandleByIndex_v2 nvmlDeviceGetName nvmlDeviceGetUUID nvmlDeviceGetPciInfo_v3
nvmlDeviceGetTemperatureThreshold nvmlDeviceGetPowerManagementDefaultLimit nvmlDeviceGetMaxClockInfo
nvmlDeviceGetMaxPcieLinkGeneration nvmlDeviceGetMaxPcieLinkWidth nvmlDeviceGetNumaNodeId
nvmlDeviceGetCpuAffinity nvmlDeviceGetFieldValues nvmlDeviceGetPersistenceMode nvmlDeviceGetEnforcedPowerLimit
nvmlDeviceGetTotalEccErrors nvmlDeviceGetGraphicsRunningProcesses_v3 nvmlDeviceGetComputeRunningProcesses_v3
nvmlDeviceGetNvLinkState nvmlDeviceGetNvLinkRemotePciInfo_v2 nvmlDeviceGetTopologyCommonAncestor
nvmlDeviceGetUtilizationRates nvmlDeviceGetMemoryInfo nvmlDeviceGetMemoryInfo_v2 nvmlDeviceGetTemperatureV
nvmlDeviceGetTemperature nvmlDeviceGetPowerUsage nvmlDeviceGetClockInfo nvmlDeviceGetFanSpeed
nvmlDeviceGetPerformanceState nvmlDeviceGetCurrentClocksEventReasons nvmlDeviceGetCurrentClocksThrottleReasons
nvmlDeviceGetCurrPcieLinkGeneration nvmlDeviceGetCurrPcieLinkWidth nvmlDeviceGetPcieThroughput
nvmlDeviceGetMigMode nvmlDeviceGetMaxMigDeviceCount nvmlDeviceGetMigDeviceHandleByIndex nvmlDeviceGetGpuInstanceId
nvmlDeviceGetComputeInstanceId nvmlDeviceGetGpuFabricInfoV nvmlDeviceGetGpuFabricInfo
""".split()
NVITOP_CALLS = """
nvmlInitWithFlags nvmlDeviceGetCount_v2 nvmlDeviceGetHandleByIndex_v2 nvmlDeviceGetUUID nvmlDeviceIsMigDeviceHandle
nvmlDeviceGetMigMode nvmlSystemGetDriverVersion nvmlSystemGetCudaDriverVersion nvmlDeviceGetName
nvmlDeviceGetPciInfo_v3 nvmlDeviceGetMemoryInfo_v2 nvmlDeviceGetUtilizationRates nvmlDeviceGetEncoderUtilization
nvmlDeviceGetDecoderUtilization nvmlDeviceGetFanSpeed nvmlDeviceGetTemperatureV nvmlDeviceGetPowerUsage
nvmlDeviceGetPowerManagementLimit nvmlDeviceGetDisplayActive nvmlDeviceGetDriverModel_v2
nvmlDeviceGetPersistenceMode nvmlDeviceGetPerformanceState nvmlDeviceGetTotalEccErrors nvmlDeviceGetComputeMode
nvmlDeviceGetComputeRunningProcesses_v3 nvmlDeviceGetGraphicsRunningProcesses_v3 nvmlDeviceGetProcessUtilization
nvmlDeviceGetClockInfo nvmlDeviceGetRunningProcessDetailList nvmlDeviceGetConfComputeMemSizeInfo nvmlShutdown
""".split()


def test_every_entry_point_gpuwatch_and_nvitop_call_is_exported(cnvml):
    lib = ctypes.CDLL(str(cnvml / "libnvidia-ml.so.1"))
    missing = [name for name in dict.fromkeys(COLLECTOR_CALLS + NVITOP_CALLS) if not hasattr(lib, name)]
    assert missing == []
    assert not hasattr(lib, "load_config") and not hasattr(lib, "gpu_load")  # internals stay hidden


# Return codes as nvml.h documents them, seen through pynvml in a process that loaded the library
# the ordinary way.
NVML_H_CHECKS = textwrap.dedent("""
    import ctypes, time
    import pynvml as N

    def code(fn, *a):
        try:
            fn(*a)
        except N.NVMLError as e:
            return e.value
        return 0

    out = {}
    out["before_init"] = code(N.nvmlDeviceGetCount)
    N.nvmlInit()
    out["library"] = N.nvmlLib._name
    out["count"] = N.nvmlDeviceGetCount()
    out["lost_handle"] = code(N.nvmlDeviceGetHandleByIndex, 2)
    out["bad_index"] = code(N.nvmlDeviceGetHandleByIndex, 99)
    h = N.nvmlDeviceGetHandleByIndex(0)
    out["numa"] = code(N.nvmlDeviceGetNumaNodeId, h)
    out["fan"] = code(N.nvmlDeviceGetFanSpeed, h)
    out["missing_symbol"] = code(N.nvmlDeviceGetGpcClkVfOffset, h)
    v1 = N.nvmlDeviceGetMemoryInfo(h)
    v2 = N.nvmlDeviceGetMemoryInfo(h, version=N.nvmlMemory_v2)
    out["mem"] = [v1.total, v1.used, v2.used, v2.reserved]
    m = N.c_nvmlMemory_v2_t(); m.version = 1
    out["mem_version_mismatch"] = N._nvmlGetFunctionPointer("nvmlDeviceGetMemoryInfo_v2")(h, ctypes.byref(m))
    c = ctypes.c_uint(0)
    out["procs_sizing"] = [N._nvmlGetFunctionPointer("nvmlDeviceGetComputeRunningProcesses_v3")(h, ctypes.byref(c), None), c.value]
    out["procs"] = [(p.pid, p.usedGpuMemory, p.gpuInstanceId) for p in N.nvmlDeviceGetComputeRunningProcesses(h)]
    out["procs_gpu3"] = N.nvmlDeviceGetComputeRunningProcesses(N.nvmlDeviceGetHandleByIndex(3))
    out["proc_util_none"] = code(N.nvmlDeviceGetProcessUtilization, N.nvmlDeviceGetHandleByIndex(3), 0)
    out["topology"] = N.nvmlDeviceGetTopologyCommonAncestor(h, N.nvmlDeviceGetHandleByIndex(1))
    out["topology_far"] = N.nvmlDeviceGetTopologyCommonAncestor(h, N.nvmlDeviceGetHandleByIndex(5))
    fv = N.nvmlDeviceGetFieldValues(h, [N.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, (N.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 3),
                                        (N.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 18)])
    out["fields"] = [f.nvmlReturn for f in fv]
    t0 = time.perf_counter()
    for _ in range(50):
        N.nvmlDeviceGetPowerUsage(h)
    out["call_s"] = (time.perf_counter() - t0) / 50
    N.nvmlShutdown()
    print(__import__("json").dumps(out))
""")


def test_return_codes_follow_nvml_h(cnvml):
    env = env_for(cnvml, gpus=6, lost="2", busy_us=300, procs=f"{os.getpid()}:0+1:1000,4242:0")
    r = subprocess.run([sys.executable, "-c", NVML_H_CHECKS], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["library"] == "libnvidia-ml.so.1"  # found by name, as on a real box
    assert out["before_init"] == 1  # UNINITIALIZED
    assert out["count"] == 6  # the lost GPU is still counted...
    assert out["lost_handle"] == 15  # ...but has no handle: GPU_IS_LOST
    assert out["bad_index"] == 2  # INVALID_ARGUMENT
    assert out["numa"] == 3 and out["fan"] == 3  # NOT_SUPPORTED on an x86 SXM box
    assert out["missing_symbol"] == 13  # FUNCTION_NOT_FOUND, from pynvml's symbol lookup
    total, used_v1, used_v2, reserved = out["mem"]
    assert total == 81559 * MIB and reserved == 512 * MIB
    assert used_v2 == 1000 * MIB + 66000 * MIB and used_v1 == used_v2 + reserved
    assert out["mem_version_mismatch"] == 25  # ARGUMENT_VERSION_MISMATCH
    assert out["procs_sizing"] == [7, 2]  # INSUFFICIENT_SIZE with the count
    assert out["procs"] == [[os.getpid(), 1000 * MIB, 0xFFFFFFFF], [4242, 66000 * MIB, 0xFFFFFFFF]]
    assert out["procs_gpu3"] == [] and out["proc_util_none"] == 6  # NOT_FOUND: no samples
    assert out["topology"] == 40 and out["topology_far"] == 50  # NODE, SYSTEM
    assert out["fields"] == [3, 0, 2]  # no PCIe counters before R555; link 18 does not exist
    assert out["call_s"] >= 300e-6  # every call costs its configured driver time
