"""What real NVIDIA drivers answer, generation by generation (issue 12), through the simulated
driver profiles: the collector must show the truth on each of them."""

from __future__ import annotations

import json
import os
import time

import pynvml as N
import pytest

from conftest import run_cli
from gpuwatch.analysis.alerts import evaluate_once
from gpuwatch.analysis.doctor import run_doctor
from gpuwatch.analysis.groups import assign_gpus
from gpuwatch.collect.host import HostView, nvml_bus_id, sysfs_bus_id
from gpuwatch.collect.nvml import pcie_capacity
from gpuwatch.model import Instance, Snapshot
from gpuwatch.sim import box as B
from gpuwatch.sim.drivers import DRIVERS


def ticks(col, clock, n=2, step=1.0):
    r = col.collect()
    for _ in range(n - 1):
        clock.advance(step)
        r = col.collect()
    return r


def snapshot_of(reading, t="2026-01-01T00:00:00Z"):
    return Snapshot(time=t, host="test", driver_version=reading.driver_version, gpus=reading.gpus,
                    nvml_error=reading.error, pid_namespace=reading.pid_namespace)


# ---- 1. a GPU lost before gpuwatch starts -------------------------------------------------------
def test_gpu_lost_at_start_shows_every_other_gpu_and_the_lost_one_by_bus_id(sim, clock):
    box, lib, col = sim("h100x8:lost-at-start=3")
    r = ticks(col, clock)
    assert r.error is None and len(r.gpus) == 8
    lost = r.gpus[3]
    assert lost.lost and lost.index == 3
    # NVML cannot open it; the kernel driver still lists it under /proc/driver/nvidia/gpus/
    assert lost.pci_bus_id == "00000000:5D:00.0" and lost.name == "NVIDIA H100 80GB HBM3"
    assert all(not g.lost and g.utilization_gpu_pct is not None for g in r.gpus if g.index != 3)
    alerts = evaluate_once([snapshot_of(r)])
    gone = [a for a in alerts if a.kind == "gpu_lost"]
    assert [a.subject for a in gone] == ["GPU 3"] and "00000000:5D:00.0" in gone[0].message


def test_gpu_lost_mid_run_keeps_uuid_name_and_bus_id(sim, clock):
    box, lib, col = sim("h100x8:lost=3")
    before = ticks(col, clock).gpus[3]
    clock.advance(B.LOST_AFTER_S + 1)
    after = col.collect().gpus[3]
    assert after.lost
    assert (after.uuid, after.name, after.pci_bus_id) == (before.uuid, before.name, before.pci_bus_id)
    assert after.pci_bus_id  # the ticket needs it for `nvidia-smi -r`
    d = snapshot_of(col.collect()).to_dict()["gpus"][3]
    assert d["pci_bus_id"] == before.pci_bus_id and d["uuid"] == before.uuid


@pytest.mark.parametrize("cmd", [("snapshot", "--json"), ("record", "--count", "2", "--interval", "0.2"),
                                 ("doctor", "--json")])
def test_lost_at_start_commands_finish_without_a_traceback(cmd, tmp_path):
    extra = ("-o", str(tmp_path / "rec.ndjson")) if cmd[0] == "record" else ()
    r = run_cli("--demo", "h100x8:lost-at-start", *cmd, *extra, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    if cmd[0] == "doctor":  # a lost GPU is a failed check: exit 1 is doctor's "something fails"
        assert r.returncode == 1
        report = json.loads(r.stdout)
        nvml = next(c for c in report["checks"] if c["name"] == "nvml")
        assert "GPU 3 lost" in nvml["detail"] and any("00000000:5D:00.0" in n for n in nvml["notes"])
        return
    assert r.returncode == 0, r.stderr
    if cmd[0] == "snapshot":
        gpus = json.loads(r.stdout)["gpus"]
        assert len(gpus) == 8 and [g["index"] for g in gpus if g["lost"]] == [3]


# ---- 2. process lists across driver generations ------------------------------------------------
def test_r470_processes_come_from_the_v2_entry_point(sim, clock):
    box, lib, col = sim("h100x8:driver=r470")
    r = ticks(col, clock)
    with pytest.raises(N.NVMLLibraryMismatchError):  # nvidia-ml-py >= 12.535 calls only _v3
        N.nvmlDeviceGetComputeRunningProcesses(N.nvmlDeviceGetHandleByIndex(0))
    assert [p.pid for p in r.gpus[0].processes] == [20010]
    assert r.gpus[0].processes[0].used_memory_bytes == box.gpu_state(0).mem_used
    assert lib.calls.get("nvmlDeviceGetComputeRunningProcesses_v2", 0) > 0


def test_original_process_entry_point_when_v2_is_missing_too(sim, clock):
    box, lib, col = sim("h100x8:driver=r470")
    lib.missing |= {"nvmlDeviceGetComputeRunningProcesses_v2", "nvmlDeviceGetGraphicsRunningProcesses_v2"}
    r = ticks(col, clock)
    assert [p.pid for p in r.gpus[4].processes] == [20110]
    assert r.gpus[4].processes[0].used_memory_bytes == box.gpu_state(4).mem_used
    assert lib.calls.get("nvmlDeviceGetComputeRunningProcesses", 0) > 0


def test_early_r535_impossible_pids_are_one_note_never_processes(sim, clock):
    box, lib, col = sim("h100x8:driver=r535-early")
    r = ticks(col, clock)
    g = r.gpus[0]
    assert [p.pid for p in g.processes] == [20010]
    assert all(0 < p.pid < 4294967295 for gg in r.gpus for p in gg.processes)
    assert "impossible PID" in g.errors["processes"] and "535" in g.errors["processes"]
    assert "processes" not in r.gpus[7].errors  # no process, no garbage, no note
    c = {c.name: c for c in run_doctor([snapshot_of(r)], alerts=[]).checks}
    assert c["GPU processes"].status == "warn" and "update the driver" in c["GPU processes"].notes[0]


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_snapshot_and_doctor_finish_on_every_driver_profile(driver):
    r = run_cli("--demo", f"h100x8:driver={driver}", "snapshot", "--json", "--interval", "0.2", timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    d = json.loads(r.stdout)
    assert d["driver_version"] == DRIVERS[driver].version and len(d["gpus"]) == 8
    assert all(g["numa_node"] in (0, 1) for g in d["gpus"])
    r = run_cli("--demo", f"h100x8:driver={driver}", "doctor", "--interval", "0.2", timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr


# ---- 3. PCIe byte counters and the background sampler ----------------------------------------------
def wait_for(fn, deadline_s=20.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    return fn()


def test_r550_unknown_counter_fields_fall_back_to_the_sampler(sim, clock):
    """R535/R550 answer INVALID_ARGUMENT for fields 197/198 (not NOT_SUPPORTED)."""
    from gpuwatch.collect.nvml import PcieSampler
    box, lib, col = sim("h100x8:driver=r535")
    col.pcie = PcieSampler(period_s=0.05)
    ticks(col, clock)
    rx = wait_for(lambda: col.collect().gpus[0].pcie.rx_bytes_per_s)
    assert rx == pytest.approx(box.gpu_state(0).pcie_rx_rate, rel=0.05)
    assert lib.calls.get("nvmlDeviceGetPcieThroughput", 0) > 0
    # the detail screen says these are 20 ms spot samples, not an average over the refresh
    assert {g.pcie.rate_source for g in col.collect().gpus} == {"samples"}


def test_sampler_unit_flip_is_settled_from_the_link_max_and_never_shown(sim, clock):
    """A driver whose sampler answers bytes/s where KB/s is documented: the readings above what a
    Gen5 x16 link can carry are discarded, the unit settled, and the true rate shown."""
    from gpuwatch.collect.nvml import PcieSampler
    box, lib, col = sim("h100x8:driver=r550")
    assert lib.driver.pcie_sampler_scale == 1000
    col.pcie = PcieSampler(period_s=0.05)
    cap = pcie_capacity(5, 16)
    seen = []

    def settled():
        r = col.collect()
        seen.extend(g.pcie.rx_bytes_per_s for g in r.gpus if g.pcie.rx_bytes_per_s is not None)
        return col.pcie.unit_bytes == 1.0 and r.gpus[0].pcie.rx_bytes_per_s
    assert wait_for(settled)
    assert all(v <= cap for v in seen)
    assert col.pcie.discarded >= 1
    assert col.collect().gpus[0].pcie.rx_bytes_per_s == pytest.approx(box.gpu_state(0).pcie_rx_rate, rel=0.05)


def test_geforce_on_r610_uses_the_byte_counters_not_the_sampler(sim, clock):
    box, lib, col = sim("rtx4090x2:driver=r610")
    r = ticks(col, clock, n=3)
    assert r.gpus[0].pcie.rx_bytes_per_s == pytest.approx(box.gpu_state(0).pcie_rx_rate, rel=0.1)
    assert lib.calls.get("nvmlDeviceGetPcieThroughput", 0) == 0
    assert {g.pcie.rate_source for g in r.gpus} == {"counters"}


def test_the_detail_screen_says_how_the_pcie_rates_were_measured():
    """R550 and older: what the driver counted in a 20 ms window, every PERIOD_S seconds (the
    note's figure is the sampler's own); with byte counters an average; unknown: no note."""
    from gpuwatch.collect.nvml import PcieSampler
    from gpuwatch.frontends.tui.screens import gpu_facts
    from gpuwatch.model import GPU, Pcie

    def facts(source):
        g = GPU(index=0, pcie=Pcie(gen=4, max_gen=5, width=16, max_width=16, rx_bytes_per_s=3e9,
                                   tx_bytes_per_s=2e9, rate_source=source))
        return "\n".join(line.plain for line in gpu_facts(g))

    sampled = facts("samples")
    assert "RX 3.0GB/s" in sampled and "20 ms driver samples" in sampled
    assert f"one every {PcieSampler.PERIOD_S:g} s" in sampled
    assert "averaged over the refresh" in facts("counters")
    # each note line fits beside the labels in an 80-column terminal (the screen wraps longer ones
    # to column 0, under the labels)
    assert all(len(line) <= 80 for source in ("samples", "counters") for line in facts(source).splitlines())
    assert "rates:" not in facts(None) and "rates:" not in facts("junk from a recording")


# ---- 4. field values added into a reused array ---------------------------------------------------------
def test_accumulating_field_values_give_true_rates(sim, clock):
    """go-nvml#46: an old driver adds into the value it finds; the reused array is zeroed."""
    box, lib, col = sim("h100x8:driver=r470")
    assert lib.driver.field_accumulates
    for _ in range(3):
        clock.advance(1.0)
        r = col.collect()
    after = box.gpu_state(0, box.t())
    one_second = (sum(after.nvlink_tx_total_kib) - sum(box.gpu_state(0, box.t() - 1).nvlink_tx_total_kib)) * 1024
    assert r.gpus[0].nvlink.tx_bytes_per_s == pytest.approx(one_second, rel=1e-6)


# ---- 5. NUMA on x86 -----------------------------------------------------------------------------------
def test_x86_numa_node_comes_from_memory_affinity(sim, clock):
    box, lib, col = sim("h100x8")
    r = ticks(col, clock)
    assert [g.numa_node for g in r.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert lib.calls.get("nvmlDeviceGetMemoryAffinity", 0) == 8
    with pytest.raises(N.NVMLError_NotSupported):  # x86: the GPU's own memory node is not reported
        N.nvmlDeviceGetNumaNodeId(N.nvmlDeviceGetHandleByIndex(0))
    c = {c.name: c for c in run_doctor([snapshot_of(r)], alerts=[]).checks}
    assert c["NUMA placement"].detail.startswith("2 NUMA nodes")


def test_numa_node_from_sysfs_when_the_affinity_call_is_missing(sim, clock):
    box, lib, col = sim("h100x8")
    lib.missing.add("nvmlDeviceGetMemoryAffinity")
    r = ticks(col, clock)
    assert r.gpus[6].numa_node == 1 and r.gpus[1].numa_node == 0


def test_host_view_reads_proc_and_sysfs(tmp_path):
    gpus = tmp_path / "proc" / "driver" / "nvidia" / "gpus"
    (gpus / "0000:3a:00.0").mkdir(parents=True)
    (gpus / "0000:3a:00.0" / "information").write_text(
        "Model: \t\t NVIDIA H100 80GB HBM3\nGPU UUID: \t GPU-????????-????-????-????-????????????\n")
    (gpus / "0000:18:00.0").mkdir()
    dev = tmp_path / "sys" / "bus" / "pci" / "devices" / "0000:3a:00.0"
    dev.mkdir(parents=True)
    (dev / "numa_node").write_text("1\n")
    (tmp_path / "sys" / "bus" / "pci" / "devices" / "0000:18:00.0").mkdir()
    (tmp_path / "sys" / "bus" / "pci" / "devices" / "0000:18:00.0" / "numa_node").write_text("-1\n")
    host = HostView(str(tmp_path / "proc"), str(tmp_path / "sys"))
    listed = host.nvidia_gpus()
    assert [g.bus_id for g in listed] == ["00000000:18:00.0", "00000000:3A:00.0"]
    assert listed[1].name == "NVIDIA H100 80GB HBM3" and listed[1].uuid is None  # a lost GPU's '?' UUID
    assert host.pci_numa_node("00000000:3A:00.0") == 1
    assert host.pci_numa_node("00000000:18:00.0") is None  # -1: unknown
    assert sysfs_bus_id("00000000:3A:00.0") == "0000:3a:00.0" and nvml_bus_id("0000:3a:00.0") == "00000000:3A:00.0"
    assert host.pid_namespace() is None  # nothing to read
    (tmp_path / "proc" / "self" / "ns").mkdir(parents=True)
    os.symlink("pid:[4026532999]", tmp_path / "proc" / "self" / "ns" / "pid")
    assert host.pid_namespace() == "container"
    os.unlink(tmp_path / "proc" / "self" / "ns" / "pid")
    os.symlink("pid:[4026531836]", tmp_path / "proc" / "self" / "ns" / "pid")
    assert host.pid_namespace() == "host"


# ---- 6. temperature thresholds from T.Limit --------------------------------------------------------------
def test_thresholds_from_tlimit_when_the_absolute_query_is_unsupported(sim, clock):
    box, lib, col = sim("h100x8:nothresholds,hot=2")
    r = ticks(col, clock)
    g = r.gpus[0]
    assert (g.temperature_slowdown_c, g.temperature_shutdown_c, g.temperature_max_operating_c) == (89, 92, 87)
    assert g.temperature_margin_c == pytest.approx(87 - g.temperature_c, abs=1)
    clock.advance(B.HOT_ONSET_S + B.HOT_RAMP_S)
    r = col.collect()
    alerts = evaluate_once([snapshot_of(r)])
    hot = [a for a in alerts if a.kind == "thermal_throttle"]
    assert [a.subject for a in hot] == ["GPU 2"] and "slowdown at 89" in hot[0].message


def test_thresholds_unknown_without_margin_call_is_not_a_crash(sim, clock):
    box, lib, col = sim("h100x8:driver=r535,nothresholds")
    r = ticks(col, clock)
    assert r.gpus[0].temperature_slowdown_c is None and r.gpus[0].temperature_c is not None


# ---- 7. MIG ---------------------------------------------------------------------------------------------
def test_mig_devices_shown_and_reprobed_when_mig_is_turned_off(sim, clock):
    box, lib, col = sim("h100x8:mig=7")
    r = ticks(col, clock)
    g = r.gpus[7]
    assert g.mig_mode is True and g.utilization_gpu_pct is None
    assert "MIG mode" in g.errors["utilization_gpu_pct"] and "imbalance" in g.errors["utilization_gpu_pct"]
    assert [d.name for d in g.mig_devices] == ["NVIDIA H100 80GB HBM3 MIG 3g.40gb"] * 2
    d0 = g.mig_devices[0]
    assert d0.pids == [24000] and d0.memory_used_bytes == 18 * 1024**3 and d0.uuid.startswith("MIG-")
    assert g.mig_devices[1].pids == [] and 24000 in [p.pid for p in g.processes]
    assert r.gpus[0].mig_mode is False and r.gpus[0].mig_devices == []
    back = Snapshot.from_dict(snapshot_of(r).to_dict())  # recordings and replay keep the MIG devices
    assert back.gpus[7].mig_devices == g.mig_devices and back.gpus[7].errors == g.errors
    box.set_mig(7, False)  # `nvidia-smi -i 7 -mig 0`
    clock.advance(col.slow_every_s + 1)
    r = ticks(col, clock)
    g = r.gpus[7]
    assert g.mig_mode is False and g.utilization_gpu_pct is not None and g.errors == {}


# ---- 8. HGX fabric --------------------------------------------------------------------------------------
def test_fabric_manager_down_is_an_alert_and_a_failed_doctor_check(sim, clock):
    box, lib, col = sim("h100x8:fabric")
    r = ticks(col, clock)
    assert {g.fabric_state for g in r.gpus} == {"not_started"}
    assert r.gpus[0].nvlink.links_active == 0 and r.gpus[0].nvlink.links_total == 18
    snap = snapshot_of(r)
    alerts = [a for a in evaluate_once([snap]) if a.kind == "nvlink_fabric"]
    assert len(alerts) == 1 and "systemctl status nvidia-fabricmanager" in alerts[0].message
    assert "GPU 0-7: fabric not started, 0 of 18 NVLinks active" in alerts[0].message
    c = {c.name: c for c in run_doctor([snap], alerts=alerts).checks}
    assert c["NVLink fabric"].status == "fail" and "nvidia-fabricmanager" in c["NVLink fabric"].notes[0]


def test_healthy_fabric_passes(sim, clock):
    box, lib, col = sim("h200x8")
    r = ticks(col, clock)
    snap = snapshot_of(r)
    assert {g.fabric_state for g in r.gpus} == {"completed"}
    assert not [a for a in evaluate_once([snap]) if a.kind == "nvlink_fabric"]
    c = {c.name: c for c in run_doctor([snap], alerts=[]).checks}
    assert c["NVLink fabric"].status == "pass"


# ---- 9. truthful defaults ------------------------------------------------------------------------------
def test_h200_figures(sim, clock):
    box, lib, col = sim("h200x8")
    g = ticks(col, clock).gpus[3]
    assert g.name == "NVIDIA H200" and g.memory_total_bytes == 143771 * 1024**2
    assert g.power_limit_w == 700 and g.nvlink.links_total == 18 and g.pstate == 0
    assert g.pcie.gen == 5 and g.pcie.width == 16


def test_rtx4090_runs_cuda_at_p2_and_its_fan_stops_when_cool(sim, clock):
    box, lib, col = sim("rtx4090x2:none,idle=1")
    r = ticks(col, clock)
    busy, idle = r.gpus[0], r.gpus[1]
    assert busy.utilization_gpu_pct > 5 and busy.pstate == 2
    assert idle.fan_pct == 0.0 and idle.pcie.gen == 1


# ---- 10. container PID namespace --------------------------------------------------------------------------
def test_container_pid_namespace_never_names_or_joins_host_pids(sim, clock):
    from gpuwatch.sim.procs import SimProcessTable
    box, lib, col = sim("h100x8:container", process_table=None)
    col.procs = SimProcessTable(box)
    r = ticks(col, clock)
    assert r.pid_namespace == "container"
    g0 = r.gpus[0].processes[0]
    # NVML's host pid for GPU 0 happens to be the pid of the SGLang server here: never named so
    assert g0.pid == box.server_pid(box.scenario.instances[-1])
    assert g0.name is None and g0.cmdline is None
    snap = snapshot_of(r)
    snap.instances = [Instance(name="sglang-mistral", kind="sglang", url="http://x", status="up", pid=g0.pid,
                               pids=[g0.pid], gpus=[6])]
    assign_gpus(snap)
    assert snap.instances[0].gpus == [6] and snap.gpus[0].instances == []
    alerts = [a for a in evaluate_once([snap]) if a.kind == "pid_namespace"]
    assert len(alerts) == 1 and "--pid=host" in alerts[0].message


def test_every_driver_profile_reads_a_box(sim, clock):
    for name in DRIVERS:
        box, lib, col = sim(f"h100x8:driver={name}")
        r = ticks(col, clock)
        assert r.driver_version == DRIVERS[name].version
        assert len(r.gpus) == 8 and r.gpus[0].memory_used_bytes and r.gpus[0].processes, name
        # fabric state through nvmlDeviceGetGpuFabricInfoV (R550+) or the first call (R525+)
        assert r.gpus[0].fabric_state == (None if name == "r470" else "completed"), name
        col.close()


async def test_dashboard_shows_eight_cards_with_a_gpu_lost_at_start():
    from test_dashboard import SimSource, visible_text

    from gpuwatch.frontends.tui.app import GpuWatchApp
    from gpuwatch.frontends.tui.widgets import GpuCard

    src = SimSource("h100x8:lost-at-start=3,mig=7,fabric")
    app = GpuWatchApp(src, interval=0.05)
    try:
        async with app.run_test(size=(200, 60)) as pilot:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (app.snapshot is None or len(list(app.query(GpuCard))) < 8):
                await pilot.pause(0.05)
            assert [c.index for c in app.query(GpuCard)] == list(range(8))
            await pilot.pause(0.2)
            text = visible_text(app)
            assert "GPU LOST" in text and "00000000:5D:00.0" in text
            assert "MIG 3g.40gb 18.0GiB/39.6GiB" in text  # the MIG devices on GPU 7's card
            assert "n/a in MIG mode" in text  # why utilization is missing
            assert "0/18 active fabric not started" in text
            cards = list(app.query(GpuCard))
            cards[7].focus()
            await pilot.press("enter")
            await pilot.pause(0.3)
            detail = visible_text(app)
            assert "MIG device 0" in detail and "pids 24000" in detail and "not started" in detail
    finally:
        src.close()


def test_field_call_refused_as_a_whole_drops_the_pcie_counters_not_nvlink(sim, clock, monkeypatch):
    """A driver that refuses the whole field-values call for an id it does not know
    (INVALID_ARGUMENT): ask again without 197/198 and sample PCIe in the background."""
    box, lib, col = sim("h100x8:driver=r535")
    real = type(lib).c_nvmlDeviceGetFieldValues
    refused = []

    def strict(self, handle, count, values):
        arr = values._obj
        if any(arr[k].fieldId in (N.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, N.NVML_FI_DEV_PCIE_COUNT_RX_BYTES)
               for k in range(count.value)):
            refused.append(1)
            return N.NVML_ERROR_INVALID_ARGUMENT
        return real(self, handle, count, values)

    monkeypatch.setattr(type(lib), "c_nvmlDeviceGetFieldValues", strict)
    lib._fns.clear()
    N._nvmlGetFunctionPointer_cache.clear()
    r = ticks(col, clock, n=3)
    assert len(refused) == 8  # once per GPU, then never asked again
    assert r.gpus[0].nvlink.tx_bytes_per_s and r.gpus[0].nvlink.tx_bytes_per_s > 1e9
    assert 0 in col.pcie._handles  # PCIe sampled in the background


def test_demo_help_names_every_scenario_fault_and_driver():
    """The command line does not import the simulator: its help text is checked against it."""
    from gpuwatch.cli.parser import SCENARIO_HELP
    from gpuwatch.sim.scenarios import FAULTS, SCENARIOS
    words = set(SCENARIO_HELP.replace(",", " ").replace(";", " ").replace(")", " ").replace(".", " ").split())
    assert set(SCENARIOS) <= words and set(FAULTS) <= words and set(DRIVERS) <= words


def test_the_sampler_stops_calling_the_driver_while_nobody_reads_and_resumes_on_a_read(sim, clock):
    """A paused dashboard reads every 10 s: the sampler's threads must not call the (20 ms a call)
    driver every period meanwhile, and a reading brings them back."""
    from gpuwatch.collect.nvml import PcieSampler
    box, lib, col = sim("h100x8:driver=r535")
    col.pcie = PcieSampler(period_s=0.05)
    ticks(col, clock)
    assert wait_for(lambda: col.collect().gpus[0].pcie.rx_bytes_per_s)  # sampling while read
    calls = lambda: lib.calls.get("nvmlDeviceGetPcieThroughput", 0)
    # nobody reads: within a few periods the calls stop
    def quiet():
        before = calls()
        time.sleep(0.3)  # 6 periods
        return calls() == before
    assert wait_for(quiet)
    still = calls()
    time.sleep(0.3)
    assert calls() == still
    col.collect()  # a reading: the threads sample again
    assert wait_for(lambda: calls() >= still + 16)  # 8 GPUs, tx and rx
    # a slow reader (paused: every 10 s; here 10 periods): one round of calls per reading, not
    # the rounds a reader at the sampler's pace gets
    for _ in range(3):
        time.sleep(0.5)
        before = calls()
        assert before == still + 16
        col.collect()
        assert wait_for(lambda: calls() >= before + 16)
        still = before
    time.sleep(0.5)
    assert calls() == still + 16
    # back at the sampler's pace: sampled every period again
    before = calls()
    for _ in range(6):
        col.collect()
        time.sleep(0.05)
    assert wait_for(lambda: calls() >= before + 3 * 16)
    col.pcie.close()


def test_the_sampler_uses_one_thread_per_eight_gpus_and_samples_every_gpu(sim, clock):
    """Eight GPUs' calls only wait on the driver and fit well inside the period on one thread;
    more threads only woke together and queued for the interpreter lock. Twenty GPUs: three
    threads, and every GPU still gets its rate."""
    from gpuwatch.collect.nvml import PcieSampler
    for n, threads in ((8, 1), (20, 3)):
        box, lib, col = sim(f"h100x{n}:driver=r550")
        col.pcie = PcieSampler(period_s=0.05)
        ticks(col, clock)

        def every_gpu_sampled():
            r = col.collect()
            return r if all(g.pcie.rx_bytes_per_s for g in r.gpus) else None
        got = wait_for(every_gpu_sampled)
        assert len(got.gpus) == n
        assert len(col.pcie._threads) == threads
        assert sorted(t.name for t in col.pcie._threads) == [f"gpuwatch-pcie-{w}" for w in range(threads)]
        for i, g in enumerate(got.gpus):
            assert g.pcie.rx_bytes_per_s == pytest.approx(box.gpu_state(i).pcie_rx_rate, rel=0.05), i
        col.pcie.close()


def test_without_byte_counters_pcie_is_sampled_every_two_seconds_while_read(sim, clock):
    """Each sampler reading is the driver's own 20 ms window, a spot check at any cadence: the
    default sampler reads each GPU's link every 2 s (16 calls of 20 ms per round at 8 GPUs), not
    every second, while a reader reads every half second. Counted over 6 s after the first
    round: rounds at 2, 4 and 6 s, one more at most for timing (every second: six); a slow
    machine can only make fewer."""
    from gpuwatch.collect.nvml import PcieSampler
    box, lib, col = sim("h100x8:driver=r550")
    col.pcie = PcieSampler()
    calls = lambda: lib.calls.get("nvmlDeviceGetPcieThroughput", 0)
    assert wait_for(lambda: all(g.pcie.rx_bytes_per_s for g in col.collect().gpus))  # the first round
    before, start = calls(), time.monotonic()
    while time.monotonic() - start < 6.0:
        col.collect()
        time.sleep(0.5)
    col.pcie.close()
    assert 16 <= calls() - before <= 4 * 16
