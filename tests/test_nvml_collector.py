"""The NVML collector against the simulated NVML library (the real pynvml code path)."""

from __future__ import annotations

import ctypes
import threading
import time

import pynvml as N
import pytest

from gpuwatch.vocab import decode_throttle_reasons
from gpuwatch.sim import box as B


def test_decode_throttle_reasons_names_every_bit():
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(None) == []
    assert decode_throttle_reasons(0x1 | 0x20 | 0x40) == ["gpu_idle", "sw_thermal_slowdown", "hw_thermal_slowdown"]
    assert decode_throttle_reasons(0x4 | 0x80) == ["sw_power_cap", "hw_power_brake"]


def test_healthy_h100_box_reads_every_field(sim, clock):
    box, lib, col = sim("h100x8")
    col.collect()
    clock.advance(1.0)
    r = col.collect()
    assert r.error is None
    assert r.driver_version == "570.172.08" and r.cuda_version == "12.8"
    assert len(r.gpus) == 8
    g0 = r.gpus[0]
    assert g0.name == "NVIDIA H100 80GB HBM3" and g0.uuid.startswith("GPU-")
    assert g0.pci_bus_id == "00000000:18:00.0"
    assert g0.temperature_slowdown_c == 89 and g0.temperature_shutdown_c == 92  # 92/89/87 °C
    assert g0.temperature_max_operating_c == 87
    assert g0.power_limit_w == 700.0 and 70 < g0.power_w <= 700
    assert g0.memory_total_bytes == 81559 * 1024**2  # nvidia-smi: 81,559 MiB
    # v2 memory: reserved is apart from used
    st = box.gpu_state(0)
    assert g0.memory_used_bytes == st.mem_used and g0.memory_reserved_bytes == box.spec.memory_reserved_bytes
    assert g0.pcie.max_gen == 5 and g0.pcie.max_width == 16
    assert g0.nvlink.links_active == 18 and g0.nvlink.tx_bytes_per_s > 1e9
    assert g0.topology["1"] == "NV18"
    assert g0.numa_node == 0 and g0.cpu_affinity == list(range(56))
    assert r.gpus[7].numa_node == 1 and r.gpus[7].cpu_affinity[0] == 56
    assert [p.pid for p in g0.processes] == [20010]
    assert g0.processes[0].used_memory_bytes == st.mem_used
    # H100 SXM has no fan: unknown, not zero
    assert g0.fan_pct is None
    # the idle spare H100 stays at P0 and Gen5 x16, with the idle reason set
    assert r.gpus[7].pcie.gen == 5 and r.gpus[7].pcie.width == 16 and r.gpus[7].pstate == 0
    assert "gpu_idle" in r.gpus[7].throttle_reasons
    assert r.gpus[7].processes == []


def test_pcie_and_nvlink_rates_are_counter_differences(sim, clock):
    box, lib, col = sim("h100x8")
    col.collect()
    t0 = box.t()
    before = box.gpu_state(0, t0)
    clock.advance(2.0)
    r = col.collect()
    after = box.gpu_state(0, box.t())
    g = r.gpus[0]
    assert g.pcie.rx_bytes_per_s == pytest.approx((after.pcie_rx_total - before.pcie_rx_total) / 2.0, rel=1e-6)
    nv_tx = sum(after.nvlink_tx_total_kib) - sum(before.nvlink_tx_total_kib)
    assert g.nvlink.tx_bytes_per_s == pytest.approx(nv_tx * 1024 / 2.0, rel=1e-6)
    # and the average over the interval is close to the box's instantaneous rate
    assert g.pcie.rx_bytes_per_s == pytest.approx(after.pcie_rx_rate, rel=0.1)



@pytest.mark.parametrize("bits", [64, 32])
def test_nvlink_rate_is_the_links_traffic_with_wide_and_narrow_counters(sim, clock, monkeypatch, bits):
    """64-bit counters (what drivers report) are summed and read as one counter; narrower ones
    wrap, so each link gets its own rate. The user sees the same figure either way."""
    if bits == 32:  # as if the driver reported each link in a 32-bit value
        from gpuwatch.collect import nvml as collector
        monkeypatch.setitem(collector._VALUE_BITS, N.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, 32)
    box, lib, col = sim("h100x8")
    col.collect()
    before = box.gpu_state(3, box.t())
    clock.advance(2.0)
    g = col.collect().gpus[3]
    after = box.gpu_state(3, box.t())
    for mine, total in ((g.nvlink.tx_bytes_per_s, "nvlink_tx_total_kib"), (g.nvlink.rx_bytes_per_s, "nvlink_rx_total_kib")):
        moved = sum(getattr(after, total)) - sum(getattr(before, total))
        assert moved > 0 and mine == pytest.approx(moved * 1024 / 2.0, rel=1e-6)


def test_a_link_coming_back_is_not_read_as_a_burst_of_traffic(sim, clock):
    """The set of active links is refreshed now and then; a link that joins brings its whole
    counter (terabytes) into the links' sum. The figure stays the links' traffic."""
    box, lib, col = sim("h100x8")
    clock.advance(3600)  # an hour of traffic on every link's counter
    col.collect()
    col.slow_every_s = 1e9  # the links as this test sets them, not re-read from the driver
    st = col._static[0]
    everything = list(st.nvlinks_active)
    st.nvlinks_active = everything[:-1]  # one link down at the last refresh
    for _ in range(2):
        clock.advance(1.0)
        col.collect()
    st.nvlinks_active = everything  # it is back
    before = box.gpu_state(0, box.t())
    clock.advance(1.0)
    g = col.collect().gpus[0]
    after = box.gpu_state(0, box.t())
    moved = sum(after.nvlink_tx_total_kib) - sum(before.nvlink_tx_total_kib)
    assert g.nvlink.links_active == len(everything)
    assert g.nvlink.tx_bytes_per_s == pytest.approx(moved * 1024, rel=0.2)  # not the link's whole counter
    before = after
    clock.advance(1.0)
    g = col.collect().gpus[0]
    after = box.gpu_state(0, box.t())
    moved = sum(after.nvlink_tx_total_kib) - sum(before.nvlink_tx_total_kib)
    assert g.nvlink.tx_bytes_per_s == pytest.approx(moved * 1024, rel=1e-6)


def test_rates_divide_by_the_time_each_gpus_counters_were_read(sim, clock, monkeypatch):
    """The GPUs are read one after another: in a slow tick (a loaded box, 64 GPUs) the last one's
    counters are read well after the tick began. Its rate is still its traffic per second."""
    from gpuwatch.sim.nvml import FakeNvmlLibrary

    slow = {"on": True}
    real = FakeNvmlLibrary.c_nvmlDeviceGetFieldValues

    def field_values(self, handle, count, values):
        if slow["on"] and (count.value if hasattr(count, "value") else int(count)) > 30:
            clock.advance(0.05)  # each GPU's counters call (PCIe + 18 links x 2) takes 50 ms
        return real(self, handle, count, values)

    monkeypatch.setattr(FakeNvmlLibrary, "c_nvmlDeviceGetFieldValues", field_values)
    box, lib, col = sim("h100x8")
    start = box.t()
    col.collect()  # slow: GPU k is read (k + 1) x 50 ms into the tick, GPU 7 0.4 s
    slow["on"] = False
    clock.advance(1.0)
    r = col.collect()  # prompt
    end = box.t()
    for g in r.gpus:
        read_at = start + 0.05 * (g.index + 1)
        moved = box.gpu_state(g.index, end).pcie_rx_total - box.gpu_state(g.index, read_at).pcie_rx_total
        assert g.pcie.rx_bytes_per_s == pytest.approx(moved / (end - read_at), rel=1e-6), g.index
        assert g.nvlink.tx_bytes_per_s is not None

def test_field_values_are_batched_one_call_per_gpu_per_tick(sim, clock):
    box, lib, col = sim("h100x8")
    col.collect()
    n = lib.calls.get("nvmlDeviceGetFieldValues", 0)
    clock.advance(1)
    col.collect()
    assert lib.calls["nvmlDeviceGetFieldValues"] - n == 8
    # H100 exposes PCIe byte counters: the blocking 20 ms throughput call is never made
    assert lib.calls.get("nvmlDeviceGetPcieThroughput", 0) == 0


def test_counter_reset_gives_no_rate_not_a_negative_one(sim, clock):
    box, lib, col = sim("h100x8")
    col.collect()
    clock.advance(100)
    col.collect()
    box.reset_counters(0)
    clock.advance(1)
    r = col.collect()
    assert r.gpus[0].pcie.rx_bytes_per_s is None
    assert r.gpus[0].nvlink.tx_bytes_per_s is None
    assert r.gpus[1].pcie.rx_bytes_per_s > 0  # the others are unaffected
    clock.advance(1)
    r = col.collect()
    assert r.gpus[0].pcie.rx_bytes_per_s > 0


def test_blocking_pcie_throughput_runs_off_the_tick(sim, clock):
    """GeForce cards have no PCIe byte counters: the 20 ms sampling call runs on background
    threads, and a tick never waits for it."""
    box, lib, col = sim("rtx4090x2", pcie_sample_s=0.02)
    lib.pcie_gate = gate = threading.Event()  # the sample takes as long as the test says
    try:
        col.collect()
        assert wait_until(lambda: lib.pcie_waiting > 0)  # a background sampler is inside the call...
        for _ in range(5):
            clock.advance(1)
            r = col.collect()  # ...and ticks go on meanwhile
        assert lib.pcie_waiting > 0 and r.gpus[0].pcie.rx_bytes_per_s is None
    finally:
        gate.set()
    assert wait_until(lambda: col.collect().gpus[0].pcie.rx_bytes_per_s)  # the sample lands on a later tick
    assert col.collect().gpus[0].pcie.rx_bytes_per_s > 0


def wait_until(condition, timeout: float = 30.0, step: float = 0.02):
    """Poll ``condition`` until it is truthy (returned) or a generous deadline passes (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return None


def test_unsupported_fields_are_null_and_not_asked_again(sim, clock):
    box, lib, col = sim("rtx4090x2:none,unsupported")
    col.collect()
    first = lib.calls.get("nvmlDeviceGetFanSpeed", 0)
    for _ in range(3):
        clock.advance(1)
        r = col.collect()
    g = r.gpus[0]
    assert g.fan_pct is None and g.ecc_uncorrected_volatile is None and g.numa_node is None
    assert g.temperature_c is not None and g.utilization_gpu_pct is not None  # the rest goes on
    assert lib.calls.get("nvmlDeviceGetFanSpeed", 0) == first  # probed once per GPU


def test_old_driver_falls_back_to_throttle_reasons_and_v1_memory(sim, clock):
    box, lib, col = sim("h100x8:olddriver,hot=0")
    clock.advance(30)
    col.collect()
    clock.advance(1)
    r = col.collect()
    g = r.gpus[0]
    assert "sw_thermal_slowdown" in g.throttle_reasons  # via the older throttle-reasons call
    assert lib.calls.get("nvmlDeviceGetCurrentClocksThrottleReasons", 0) >= 2
    # v1 memory: reserved is counted as used, and reported unknown
    assert g.memory_reserved_bytes is None
    assert g.memory_used_bytes == box.gpu_state(0).mem_used + box.spec.memory_reserved_bytes
    assert g.temperature_c is not None  # legacy temperature call


def test_missing_function_is_probed_once(sim, clock, monkeypatch):
    box, lib, col = sim("h100x8:olddriver")
    lookups = []
    real_getattr = type(lib).__getattr__

    def counting(self, name):
        if name == "nvmlDeviceGetCurrentClocksEventReasons":
            lookups.append(name)
        return real_getattr(self, name)

    monkeypatch.setattr(type(lib), "__getattr__", counting)
    N._nvmlGetFunctionPointer_cache.clear()
    for _ in range(4):
        clock.advance(1)
        col.collect()
    assert len(lookups) == 1


def test_lost_gpu_is_marked_while_the_others_go_on(sim, clock):
    box, lib, col = sim("h100x8:lost=3")
    col.collect()
    clock.advance(B.LOST_AFTER_S + 1)
    r = col.collect()
    lost = r.gpus[3]
    assert lost.lost is True
    assert lost.name == "NVIDIA H100 80GB HBM3" and lost.uuid  # identity kept
    assert lost.utilization_gpu_pct is None and lost.processes == []
    assert all(not g.lost and g.utilization_gpu_pct is not None for g in r.gpus if g.index != 3)
    d = r.gpus[3]
    assert d.index == 3


def test_no_driver_is_a_sentence_not_a_crash(sim, clock):
    box, lib, col = sim("h100x8", init_error=N.NVML_ERROR_DRIVER_NOT_LOADED)
    r = col.collect()
    assert r.gpus == []
    assert "driver" in r.error and "not loaded" in r.error


def test_no_library_is_a_sentence_not_a_crash(monkeypatch, clock):
    from gpuwatch.collect.nvml import NvmlCollector
    from gpuwatch.sim.nvml import uninstall

    uninstall()

    def no_lib(*a, **k):
        raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    monkeypatch.setattr(N, "CDLL", no_lib)
    col = NvmlCollector(process_table=None, clock=clock.now)
    r = col.collect()
    assert r.gpus == [] and "No NVIDIA driver found" in r.error
    col.close()


def test_fake_library_checks_struct_versions_like_the_driver(sim):
    box, lib, col = sim("h100x8")
    N.nvmlInit()
    h = N.nvmlDeviceGetHandleByIndex(0)
    mem = N.c_nvmlMemory_v2_t()
    mem.version = 1  # wrong version
    ret = lib.nvmlDeviceGetMemoryInfo_v2(h, ctypes.byref(mem))
    assert ret == N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
    with pytest.raises(N.NVMLError_InvalidArgument):
        N.nvmlDeviceGetHandleByIndex(99)


def test_a_process_on_several_gpus_is_looked_up_once_a_tick_and_shows_one_cpu_share(sim, clock):
    """A server split over GPUs in one process (Ollama, llama.cpp) is listed on each of them. Its CPU % (psutil: the share since
    the previous call) is read once a tick: read per GPU, the second GPU's read came microseconds
    after the first and showed about 0 %."""
    from gpuwatch.collect.procs import ProcInfo

    class Table:
        calls: list[int] = []

        def info(self, pid):
            self.calls.append(pid)
            return ProcInfo(pid=pid, name="vllm", cpu_pct=95.0 if self.calls.count(pid) % 2 else 0.0)

    table = Table()
    box, lib, col = sim("rtx4090x2", process_table=table)  # Ollama split over both GPUs: one process
    col.collect()
    table.calls.clear()
    clock.advance(1.0)
    r = col.collect()
    seen: dict[int, set] = {}
    for g in r.gpus:
        for p in g.processes:
            seen.setdefault(p.pid, set()).add(p.cpu_pct)
    multi = [pid for pid in seen if sum(p.pid == pid for g in r.gpus for p in g.processes) > 1]
    assert multi, "the scenario has a process on several GPUs"
    assert sorted(table.calls) == sorted(seen)  # each pid once this tick
    assert all(len(v) == 1 for v in seen.values())


def test_process_table_rereads_rarely_changing_fields_only_now_and_then():
    import os

    from gpuwatch.collect.procs import ProcessTable

    now = [0.0]
    table = ProcessTable(clock=lambda: now[0])
    first = table.info(os.getpid())
    assert first.name and first.cmdline and first.rss_bytes
    table._static[os.getpid()][2].name = "renamed"  # as if the process had changed its title
    now[0] += 1.0
    assert table.info(os.getpid()).name == "renamed"  # kept: read at most once per STATIC_S
    assert table.info(os.getpid()).rss_bytes  # the changing figures are read every time
    now[0] += ProcessTable.STATIC_S
    assert table.info(os.getpid()).name == first.name  # read again, from the process itself
