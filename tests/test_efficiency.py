"""Energy per token and MFU per instance: from the power of its own GPUs (shared GPUs split by
memory share), through the snapshot, the screen text and the exporter."""

from __future__ import annotations

import pytest

from gpuwatch.analysis.efficiency import instance_efficiency
from gpuwatch.analysis.groups import assign_gpus
from gpuwatch.analysis.peaks import peak_for
from gpuwatch.model import GPU, Instance, Process, Snapshot

GIB = 1 << 30


def box() -> Snapshot:
    """GPUs 0-1: a vLLM TP pair alone (300 W each). GPU 2 (200 W): two Ollama replicas holding
    30 and 10 GiB. GPU 3 (400 W): an SGLang with the MFU counters of vLLM (none)."""
    gpus = [GPU(index=0, name="NVIDIA H100 80GB HBM3", power_w=300.0, processes=[Process(pid=10, used_memory_bytes=70 * GIB)]),
            GPU(index=1, name="NVIDIA H100 80GB HBM3", power_w=300.0, processes=[Process(pid=11, used_memory_bytes=70 * GIB)]),
            GPU(index=2, name="NVIDIA GeForce RTX 4090", power_w=200.0,
                processes=[Process(pid=20, used_memory_bytes=30 * GIB), Process(pid=30, used_memory_bytes=10 * GIB)])]
    vllm = Instance(name="vllm", kind="vllm", url="u", status="up", pids=[10, 11], generation_tokens_per_s=1200.0,
                    flops_per_gpu_per_s=247.4e12, read_bytes_per_gpu_per_s=1.675e12)
    big = Instance(name="ollama-a", kind="ollama", url="u", status="up", pids=[20], generation_tokens_per_s=50.0)
    small = Instance(name="ollama-b", kind="ollama", url="u", status="up", pids=[30], generation_tokens_per_s=0.0)
    return assign_gpus(Snapshot(time="t", host="h", gpus=gpus, instances=[vllm, big, small]))


def test_joules_per_token_from_the_instances_own_gpus():
    snap = instance_efficiency(box())
    vllm, big, small = snap.instances
    assert vllm.power_w == 600.0 and not vllm.power_shared
    assert vllm.joules_per_token == pytest.approx(0.5)
    assert vllm.tokens_per_s_per_kw == pytest.approx(2000.0)
    # GPU 2 split by memory: 3/4 and 1/4 of 200 W
    assert (big.power_w, small.power_w) == (pytest.approx(150.0), pytest.approx(50.0))
    assert big.power_shared and small.power_shared
    assert big.joules_per_token == pytest.approx(3.0)
    # idle: no energy per token (it would be infinite), 0 tok/s per kW
    assert small.joules_per_token is None and small.tokens_per_s_per_kw == 0.0


def test_mfu_and_bandwidth_against_the_gpu_models_peak():
    vllm = instance_efficiency(box()).instances[0]
    assert vllm.mfu_pct == pytest.approx(25.0, rel=0.01)  # 247.4 of 989.5 TFLOP/s
    assert vllm.mem_bw_util_pct == pytest.approx(50.0, rel=0.01)  # 1.675 of 3.35 TB/s
    assert peak_for("NVIDIA H100 PCIe")[0] == pytest.approx(756.5e12)
    assert peak_for("NVIDIA A100-SXM4-80GB")[1] == pytest.approx(2.039e12)
    assert peak_for("Tesla T4") is None


def test_an_instance_that_is_not_up_gets_no_energy_figures():
    snap = box()
    snap.instances[0].status = "sleeping"
    vllm = instance_efficiency(snap).instances[0]
    assert vllm.power_w is None and vllm.joules_per_token is None and vllm.mfu_pct is None


def test_efficiency_in_snapshot_json_text_and_exporter():
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from gpuwatch.frontends.exporter import _Integrator, _LastSnapshotCollector, build_families
    from gpuwatch.frontends.text import render_text

    snap = instance_efficiency(box())
    doc = snap.to_dict()
    assert doc["instances"][0]["joules_per_token"] == pytest.approx(0.5)
    assert Snapshot.from_dict(doc).instances[1].power_shared is True
    text = render_text(snap)
    assert "0.50 J/token, 2000 tok/s per kW of 600 W" in text
    assert "shared GPUs split by memory share" in text
    reg = CollectorRegistry(auto_describe=False)
    col = _LastSnapshotCollector()
    reg.register(col)
    col.set(build_families(snap, _Integrator(), 1000.0, host="box"))
    samples = {(s.name, s.labels.get("instance_name")): s.value
               for f in text_string_to_metric_families(generate_latest(reg).decode()) for s in f.samples}
    assert samples[("gpuwatch_instance_joules_per_token", "vllm")] == pytest.approx(0.5)
    assert samples[("gpuwatch_instance_generation_tokens_per_second_per_kilowatt", "vllm")] == pytest.approx(2000.0)
    assert samples[("gpuwatch_instance_power_watts", "ollama-b")] == pytest.approx(50.0)
    assert samples[("gpuwatch_instance_model_flops_utilization_ratio", "vllm")] == pytest.approx(0.25, rel=0.01)


def test_vllm_mfu_counters_per_gpu_through_the_collector(clock, servers):
    """Two data-parallel engines, each reporting per-GPU estimates: the instance's per-GPU
    rate is their mean, not their sum."""
    from gpuwatch.collect.instances import BackendConfig, InstanceCollector

    t = {"s": 0.0}

    def body(h):
        lines = []
        for engine, share in (("0", 1.0), ("1", 0.5)):
            lb = f'engine="{engine}",model_name="m"'
            lines += [f"vllm:num_requests_running{{{lb}}} 1",
                      f"vllm:estimated_flops_per_gpu_total{{{lb}}} {300e12 * share * t['s']}",
                      f"vllm:estimated_read_bytes_per_gpu_total{{{lb}}} {2e12 * share * t['s']}"]
        return "\n".join(lines) + "\n"

    srv = servers({"/metrics": body, "/version": {"version": "0.26.0"}})
    with InstanceCollector([BackendConfig(url=srv.url, kind="vllm")], discover=False, clock=clock.now) as col:
        col.collect()
        clock.advance(2.0)
        t["s"] = 2.0
        inst = col.collect()[0]
    assert inst.flops_per_gpu_per_s == pytest.approx(225e12)
    assert inst.read_bytes_per_gpu_per_s == pytest.approx(1.5e12)
