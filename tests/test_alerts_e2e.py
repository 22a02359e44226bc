"""End to end: the simulated box through the lead's sampler (NVML collector on the fake
library, ManualClock) into the alert engine. Each fault switch raises its alert; the healthy
scenarios raise none over a few simulated minutes.

Instances come from the real instance collector when it is present (loopback HTTP servers
of the simulated box); until then a small adapter reads the box's server state directly, so
the instance rules are still driven by the simulated numbers."""

from __future__ import annotations

import pytest

from gpuwatch.analysis.alerts import AlertEngine
from gpuwatch.analysis.doctor import run_doctor
from gpuwatch.frontends.text import render_doctor
from gpuwatch.model import Instance, ModelInfo

FAULT_ALERTS = {"critical", "warning"}


def _sim_instances(box):
    """Instances as a collector would report them, read straight from the simulated box."""
    def step(snap):
        insts = []
        for spec in box.scenario.instances:
            st = box.instance_state(spec.name)
            models = [ModelInfo(name=spec.model)]
            if spec.kind == "ollama":
                size, vram = box.ollama_size_vram(spec)
                models = [ModelInfo(name=spec.model, size_bytes=size, size_vram_bytes=vram)]
            insts.append(Instance(
                name=spec.name, kind=spec.kind, url=f"sim://{spec.name}", status="up" if st.up else "down",
                error=None if st.up else "connection refused", models=models, gpus=list(spec.gpus),
                parallelism=spec.parallelism, parallel_size=len(spec.gpus),
                generation_tokens_per_s=st.generation_tokens_per_s if st.up else None,
                requests_running=float(st.requests_running), requests_waiting=float(st.requests_waiting),
                kv_cache_usage_pct=100 * st.kv_cache_usage if spec.kind != "ollama" else None))
            for g in spec.gpus:
                gpu = snap.gpu(g)
                if gpu is not None:
                    gpu.instances.append(spec.name)
        snap.instances = insts
    return step


@pytest.fixture
def run_box():
    from gpuwatch.runtime import make_sampler
    from gpuwatch.sim.box import ManualClock

    samplers = []

    def run(spec: str, seconds: float, step: float = 2.0):
        clock = ManualClock()
        sampler = make_sampler(demo=spec, clock=clock, servers=False, discover=False)
        samplers.append(sampler)
        sampler.analyzers.insert(0, _sim_instances(sampler.demo.box))
        engine = AlertEngine(clock=clock)
        snaps = []
        for _ in range(int(seconds / step)):
            snap = sampler.sample()
            engine.update(snap)
            snaps.append(snap)
            clock.advance(step)
        return engine, snaps

    yield run
    for s in samplers:
        s.close()


def raised(engine, severities=FAULT_ALERTS):
    return {(e.kind, e.subject) for e in engine.history if e.state == "raised" and e.severity in severities}


@pytest.mark.parametrize("spec", ["h100x8:none", "rtx4090x2:none"])
def test_healthy_boxes_raise_nothing(run_box, spec):
    engine, snaps = run_box(spec, 240)
    assert engine.history == [], [(e.kind, e.subject, e.message) for e in engine.history]
    assert engine.rule_errors == {}


@pytest.mark.parametrize("spec, seconds, expected", [
    ("h100x8:hot", 60, {("thermal_throttle", "GPU 2"), ("throughput_drop", "vllm-llama70b")}),
    ("h100x8:idle", 60, {("imbalance", "vllm-qwen32b")}),
    ("h100x8:pcie", 40, {("pcie_degraded", "GPU 1")}),
    ("h100x8:power", 40, {("power_cap", "GPU 3")}),
    ("h100x8:ecc", 20, {("ecc_errors", "GPU 4")}),
    ("h100x8:lost=3", 30, {("gpu_lost", "GPU 3"), ("backend_down", "vllm-llama70b")}),
    ("rtx4090x2:none,pcie=0", 60, {("pcie_degraded", "GPU 0")}),
    ("rtx4090x2:none,idle", 60, {("imbalance", "ollama")}),
    ("rtx4090x2:none,offload", 20, {("cpu_offload", "ollama: llama3.3:70b-instruct-q4_K_M")}),
])
def test_each_fault_raises_its_alert(run_box, spec, seconds, expected):
    engine, _ = run_box(spec, seconds)
    assert raised(engine) == expected


def test_lost_gpu_is_critical_at_once_and_notified(run_box):
    engine, snaps = run_box("h100x8:lost", 30, step=1.0)
    lost = [e for e in engine.history if e.kind == "gpu_lost"]
    assert lost and lost[0].severity == "critical" and lost[0].subject == "GPU 7"
    assert lost[0].time == lost[0].since  # no raise delay


@pytest.mark.parametrize("spec", ["h100x8:none,unsupported", "h100x8:none,olddriver"])
def test_missing_fields_raise_nothing_and_break_nothing(run_box, spec):
    engine, _ = run_box(spec, 60)
    assert engine.history == [] and engine.rule_errors == {}


def test_hot_gpu_explains_the_throughput_drop(run_box):
    engine, _ = run_box("h100x8:hot", 110, step=1.0)
    drops = [e for e in engine.history if e.kind == "throughput_drop" and e.state == "raised"]
    assert len(drops) == 1
    msg = drops[0].message
    assert drops[0].subject == "vllm-llama70b"
    assert "fell 3" in msg and "GPU 2 was in thermal slowdown" in msg and "fix the cooling of GPU 2" in msg
    # only the hot GPU's own instance
    assert not [e for e in engine.history if e.kind == "throughput_drop" and e.subject != "vllm-llama70b"]


def test_doctor_on_the_healthy_simulated_box(run_box):
    engine, snaps = run_box("h100x8:none", 6, step=1.0)
    report = run_doctor(snaps[-3:])
    assert report.exit_code == 0, render_doctor(report)
    by = {c.name: c for c in report.checks}
    # an idle H100 holds Gen5 x16 (issue 12: the link does not drop on HGX H100)
    assert by["PCIe GPU 7"].status == "pass" and by["PCIe GPU 7"].detail == "Gen5 x16 (max Gen5 x16)"
    assert by["NVLink fabric"].status == "pass" and by["NUMA placement"].detail.startswith("2 NUMA nodes")
    assert by["persistence mode"].status == "pass"
    assert "NVLink: 28 pairs" in by["topology"].detail


def test_doctor_fails_on_a_lost_gpu(run_box):
    engine, snaps = run_box("h100x8:lost", 26, step=1.0)
    report = run_doctor(snaps[-3:])
    assert report.exit_code == 1
    assert any(c.status == "fail" and c.name == "alert gpu_lost" for c in report.checks)
