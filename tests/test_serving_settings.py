"""Ollama's serving settings from its process environment, and doctor's CUDA device-order check."""

from __future__ import annotations

from alerts_support import T0, gpu, inst, snap
from gpuwatch.analysis.doctor import run_doctor
from gpuwatch.collect.instances import serving_settings


def test_only_the_serving_variables_are_kept_and_made_printable():
    env = {"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_KEEP_ALIVE": "-1", "CUDA_VISIBLE_DEVICES": "2,3",
           "OLLAMA_API_KEY": "secret", "HOME": "/root", "OLLAMA_MAX_LOADED_MODELS": "2\x1b[31m"}
    got = serving_settings("ollama", env)
    assert got == {"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_MAX_LOADED_MODELS": "2?[31m", "OLLAMA_KEEP_ALIVE": "-1",
                   "CUDA_VISIBLE_DEVICES": "2,3"}
    assert serving_settings("vllm", env) == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert serving_settings("ollama", None) == {}  # another user's process


def test_simulated_ollama_instances_show_their_settings():
    from gpuwatch.runtime import make_sampler

    sampler = make_sampler(demo="ollama3x")
    try:
        s = sampler.sample(wait_instances=True)
        by = {i.name: i for i in s.instances}
        assert by["ollama-2"].settings["CUDA_VISIBLE_DEVICES"] == "2,3"
        assert by["ollama-0"].settings["OLLAMA_NUM_PARALLEL"] == "4"
    finally:
        sampler.close()


def _mixed_box():
    return [gpu(0, name="NVIDIA GeForce RTX 4090"), gpu(1, name="NVIDIA GeForce RTX 3090")]


def test_doctor_warns_when_cuda_order_differs_from_nvidia_smi():
    pinned = inst("ollama-1", [1], kind="ollama", settings={"CUDA_VISIBLE_DEVICES": "1"})
    r = run_doctor([snap(T0, _mixed_box(), [pinned])], alerts=[])
    c = {c.name: c for c in r.checks}["instance ollama-1"]
    assert c.status == "warn"
    assert any("CUDA_VISIBLE_DEVICES=1 on a box with 2 GPU models" in n and "CUDA_DEVICE_ORDER=PCI_BUS_ID" in n
               for n in c.notes)


def test_doctor_is_quiet_with_pci_bus_order_or_one_gpu_model():
    ordered = inst("a", [1], kind="ollama", settings={"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    same = inst("b", [1], kind="ollama", settings={"CUDA_VISIBLE_DEVICES": "1"})
    c1 = {c.name: c for c in run_doctor([snap(T0, _mixed_box(), [ordered])], alerts=[]).checks}
    c2 = {c.name: c for c in run_doctor([snap(T0, [gpu(0), gpu(1)], [same])], alerts=[]).checks}
    assert c1["instance a"].status == "pass" and "CUDA_DEVICE_ORDER=PCI_BUS_ID" in c1["instance a"].notes[0]
    assert c2["instance b"].status == "pass"


