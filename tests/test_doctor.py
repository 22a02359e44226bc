"""The doctor report: pass/warn/fail lines from snapshots and alerts."""

import json

from alerts_support import T0, Pcie, Process, gpu, inst, snap

from gpuwatch.analysis.doctor import run_doctor
from gpuwatch.frontends.text import render_doctor
from gpuwatch.model import Alert


def nv_box(per=None, n=4):
    per = per or {}
    gs = []
    for i in range(n):
        g = gpu(i, **per.get(i, {}))
        g.topology = {str(o): ("NV18" if (o < 2) == (i < 2) else "SYS") for o in range(n) if o != i}
        gs.append(g)
    return gs


def checks(report):
    return {c.name: c for c in report.checks}


def test_healthy_box_passes_and_summarises_topology():
    s = snap(T0, nv_box(), [inst("vllm-tp2", [0, 1]), inst("vllm-tp2b", [2, 3])], cuda_version="12.8")
    r = run_doctor([s], alerts=[])
    assert r.exit_code == 0 and r.status == "pass"
    c = checks(r)
    assert c["nvml"].detail.startswith("4 GPUs (4× NVIDIA H100 80GB HBM3), driver 570.172.08, CUDA 12.8")
    assert c["topology"].detail == "NVLink: 2 pairs; cross-socket: 4 pairs"
    assert any("NV18" in line and "SYS" in line for line in c["topology"].notes)  # the matrix
    assert c["driver"].status == "pass" and c["persistence mode"].status == "pass"
    assert c["instance vllm-tp2"].status == "pass" and "GPU 0, 1, tensor" in c["instance vllm-tp2"].detail
    assert c["alerts"].detail.startswith("none raised")


def test_idle_gpu_at_gen1_passes_with_a_note():
    idle = {"utilization_gpu_pct": 0.0, "pcie": Pcie(gen=1, max_gen=5, width=16, max_width=16)}
    r = run_doctor([snap(T0, nv_box({3: idle}), [inst("a", [0])])], alerts=[])
    c = checks(r)["PCIe GPU 3"]
    assert c.status == "pass" and "idle" in c.detail and "save power" in c.notes[0]
    assert r.exit_code == 0


def test_narrow_link_passes_when_idle_and_warns_when_busy():
    """An idle link may narrow as well as drop its generation (issue 12): judged under load only."""
    x4_idle = {"utilization_gpu_pct": 0.0, "pcie": Pcie(gen=1, max_gen=4, width=4, max_width=16)}
    x4_busy = {"utilization_gpu_pct": 80.0, "pcie": Pcie(gen=4, max_gen=4, width=4, max_width=16)}
    gen_busy = {"utilization_gpu_pct": 90.0, "pcie": Pcie(gen=3, max_gen=5, width=16, max_width=16)}
    r = run_doctor([snap(T0, nv_box({1: x4_idle, 2: gen_busy, 3: x4_busy}), [inst("a", [0])])], alerts=[])
    c = checks(r)
    assert c["PCIe GPU 1"].status == "pass" and "idle" in c["PCIe GPU 1"].detail
    assert "judged again under load" in c["PCIe GPU 1"].notes[0]
    assert c["PCIe GPU 3"].status == "warn" and "x4" in c["PCIe GPU 3"].detail
    assert c["PCIe GPU 2"].status == "warn" and "90 % busy" in c["PCIe GPU 2"].detail
    assert r.exit_code == 0  # warnings do not fail the run


def test_persistence_off_and_numa_mismatch_warn():
    procs = {2: {"persistence_mode": False,
                 "processes": [Process(pid=77, name="python3", cpu_affinity=list(range(56, 112)))]}}
    r = run_doctor([snap(T0, nv_box(procs), [inst("a", [2])])], alerts=[])
    c = checks(r)
    assert c["persistence mode"].status == "warn" and c["persistence mode"].detail == "off on GPU 2"
    assert "nvidia-smi -pm 1" in c["persistence mode"].notes[0]
    assert c["NUMA placement"].status == "warn"
    assert "pid 77 (python3) on GPU 2 runs on CPUs 56-111" in c["NUMA placement"].notes[0]


def test_tensor_group_across_the_socket_warns():
    r = run_doctor([snap(T0, nv_box(), [inst("vllm-tp4", [0, 1, 2, 3])])], alerts=[])
    c = checks(r)["topology"]
    assert c.status == "warn" and any("crosses the CPU socket" in n for n in c.notes)


def test_failures_set_exit_code_1():
    down = inst("ollama", [0], kind="ollama", status="down", error="connection refused")
    crit = Alert(kind="gpu_lost", severity="critical", subject="GPU 3", message="GPU 3 fell off the bus")
    r = run_doctor([snap(T0, nv_box({3: {"lost": True}}), [down])], alerts=[crit])
    c = checks(r)
    assert r.exit_code == 1 and r.status == "fail"
    assert c["instance ollama"].status == "fail" and "connection refused" in c["instance ollama"].detail
    assert c["alert gpu_lost"].status == "fail"
    assert c["nvml"].status == "fail" and "GPU 3 lost" in c["nvml"].detail


def test_driver_mismatch_fails():
    gs = nv_box()
    gs[1].driver_version = "550.54.15"
    r = run_doctor([snap(T0, gs, [inst("a", [0])])], alerts=[])
    assert checks(r)["driver"].status == "fail" and r.exit_code == 1


def test_no_nvml_and_no_instances():
    r = run_doctor([snap(T0, [], [], nvml_error="NVML Shared Library Not Found")])
    c = checks(r)
    assert c["nvml"].status == "fail" and c["instances"].status == "warn"
    assert r.exit_code == 1
    assert run_doctor([]).exit_code == 1


def test_alerts_are_computed_when_not_given():
    hot = {"temperature_c": 88.0, "throttle_reasons": ["sw_thermal_slowdown"]}
    r = run_doctor([snap(T0, nv_box({0: hot}), [inst("a", [0])]), snap(T0 + 1, nv_box({0: hot}), [inst("a", [0])])])
    assert checks(r)["alert thermal_throttle"].status == "warn"


def test_text_is_aligned_and_json_is_plain_data():
    r = run_doctor([snap(T0, nv_box(), [inst("vllm-tp2", [0, 1])])], alerts=[])
    text = render_doctor(r)
    lines = [l for l in text.splitlines() if l[:4] in ("PASS", "WARN", "FAIL")]
    starts = {l.index(l.split()[1]) for l in lines}
    details = {len(l) - len(l[6:].lstrip()) for l in lines}
    assert starts == {6} and len(details) == 1  # names and details in columns
    assert "\x1b[" not in text and text.rstrip().endswith("0 failed")
    d = json.loads(json.dumps(r.to_dict()))
    assert d["exit_code"] == 0 and d["counts"]["fail"] == 0
    assert {"name", "status", "detail", "notes"} == set(d["checks"][0])
