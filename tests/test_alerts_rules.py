"""Each rule both ways: raised when it should be, silent when it should be.

Each test drives the engine with a hand-driven clock over synthetic snapshots, so the
default hysteresis (10 s to raise, 20 s to clear) is part of what is tested."""

import math

from alerts_support import T0, Feed, GiB, ModelInfo, Pcie, Process, box, gpu, inst, snap

from gpuwatch.analysis.alert_config import AlertConfig


def steady(gpus_fn=None, insts_fn=None, **snap_kw):
    return lambda t: snap(T0 + t, gpus_fn(t) if gpus_fn else box(), insts_fn(t) if insts_fn else [], **snap_kw)


def only(alerts, kind):
    return [a for a in alerts if a.kind == kind]


# ---- thermal ---------------------------------------------------------------------------------
def test_thermal_throttle_names_temperature_and_clock_loss():
    hot = {"temperature_c": 89.0, "throttle_reasons": ["sw_thermal_slowdown", "hw_thermal_slowdown"],
           "sm_clock_mhz": 1406}
    f = Feed(steady(lambda t: box({2: hot})))
    [a] = only(f.run(12), "thermal_throttle")
    assert a.subject == "GPU 2" and a.severity == "warning"
    assert "89 °C" in a.message and "slowdown at 90 °C" in a.message
    assert "29 % below its 1980 MHz max" in a.message
    assert "airflow" in a.message


def test_thermal_uses_the_gpus_own_threshold_not_a_fixed_number():
    # 80 °C is fine on a card that slows down at 90, not on one that slows down at 83
    f = Feed(steady(lambda t: box({0: {"temperature_c": 80.0}, 1: {"temperature_c": 80.0, "temperature_slowdown_c": 83.0}})))
    alerts = only(f.run(12), "thermal_throttle")
    assert [a.subject for a in alerts] == ["GPU 1"]
    assert "close to thermal slowdown" in alerts[0].message


def test_thermal_margin_is_configurable():
    cfg = AlertConfig.from_toml_dict({"thermal_throttle": {"margin_c": 1}})
    f = Feed(steady(lambda t: box({1: {"temperature_c": 86.0}})), config=cfg)
    assert only(f.run(15), "thermal_throttle") == []


def test_cool_gpus_and_harmless_reasons_raise_nothing():
    harmless = {"throttle_reasons": ["gpu_idle", "applications_clocks", "sync_boost", "display_clocks"]}
    f = Feed(steady(lambda t: box({0: harmless})))
    assert f.run(60) == []


# ---- power ------------------------------------------------------------------------------------
def test_power_cap_below_default_limit():
    capped = {"throttle_reasons": ["sw_power_cap"], "power_w": 346.0, "power_limit_w": 350.0, "sm_clock_mhz": 1500}
    f = Feed(steady(lambda t: box({3: capped})))
    [a] = only(f.run(12), "power_cap")
    assert a.subject == "GPU 3" and a.severity == "warning"
    assert "346 W of 350 W" in a.message and "50 % below the 700 W default" in a.message
    assert "nvidia-smi -i 3 -pl 700" in a.message


def test_power_cap_at_default_limit_is_info():
    capped = {"throttle_reasons": ["sw_power_cap"], "power_w": 695.0}
    f = Feed(steady(lambda t: box({1: capped})))
    [a] = only(f.run(12), "power_cap")
    assert a.severity == "info"


def test_power_cap_bit_without_draw_at_the_limit_is_silent():
    # the bit flickers at lower draw (transients): not a power-limited card
    f = Feed(steady(lambda t: box({1: {"throttle_reasons": ["sw_power_cap"], "power_w": 500.0}})))
    assert f.run(30) == []


# ---- hw slowdown ------------------------------------------------------------------------------
def test_hw_slowdown_without_explanation():
    f = Feed(steady(lambda t: box({0: {"throttle_reasons": ["hw_slowdown"], "sm_clock_mhz": 990}})))
    [a] = only(f.run(12), "hw_slowdown")
    assert "no thermal or power cause" in a.message and "power connectors" in a.message


def test_hw_slowdown_explained_by_heat_is_only_thermal():
    hot = {"throttle_reasons": ["hw_slowdown", "hw_thermal_slowdown"], "temperature_c": 91.0}
    f = Feed(steady(lambda t: box({0: hot})))
    assert f.kinds(f.run(12)) == {"thermal_throttle"}


# ---- imbalance -------------------------------------------------------------------------------
def tp_box(util_of, mem_of=lambda i: 60 * GiB):
    return lambda t: [gpu(i, utilization_gpu_pct=util_of(i, t), memory_used_bytes=mem_of(i)) for i in range(4)]


def test_tensor_group_straggler_is_named():
    gpus = tp_box(lambda i, t: 3.0 if i == 1 else 85.0 + 5 * math.sin(t / 7 + i))
    f = Feed(steady(gpus, lambda t: [inst("vllm-llama70b", [0, 1, 2, 3])]))
    [a] = only(f.run(15), "imbalance")
    assert a.subject == "vllm-llama70b"
    assert "GPU 1 averages 3 %" in a.message and "tensor-parallel" in a.message


def test_tensor_group_memory_spread():
    gpus = tp_box(lambda i, t: 80.0, mem_of=lambda i: 75 * GiB if i == 2 else 60 * GiB)
    f = Feed(steady(gpus, lambda t: [inst("vllm-llama70b", [0, 1, 2, 3])]))
    [a] = only(f.run(15), "imbalance")
    assert "GPU 2 uses 94 % of its memory" in a.message


def test_tensor_group_brief_dip_is_not_imbalance():
    # GPU 1 drops to 0 for 3 s each minute (a hiccup): the 30 s mean stays close
    gpus = tp_box(lambda i, t: 0.0 if (i == 1 and t % 60 < 3) else 80.0)
    f = Feed(steady(gpus, lambda t: [inst("vllm-llama70b", [0, 1, 2, 3])]))
    f.run(180)
    assert f.ever("imbalance") == []


def test_quiet_tensor_group_is_balanced():
    gpus = tp_box(lambda i, t: 12.0 if i == 0 else 0.0)
    f = Feed(steady(gpus, lambda t: [inst("vllm", [0, 1, 2, 3])]))
    f.run(60)
    assert f.ever("imbalance") == []


def test_pipeline_group_with_uneven_use_is_normal():
    # Ollama layer split: GPU 0 works twice as hard as GPU 1 and they take turns
    def gpus(t):
        load = 0.5 + 0.4 * math.sin(2 * math.pi * t / 50)
        return [gpu(0, utilization_gpu_pct=100 * load, memory_used_bytes=21 * GiB),
                gpu(1, utilization_gpu_pct=55 * load * (t % 4 < 2), memory_used_bytes=20 * GiB)]
    ollama = lambda t: [inst("ollama", [0, 1], kind="ollama", parallelism="pipeline")]  # noqa: E731
    f = Feed(steady(gpus, ollama))
    f.run(300)
    assert f.ever("imbalance") == []


def test_pipeline_gpu_that_holds_the_model_and_never_works():
    def gpus(t):
        return [gpu(0, utilization_gpu_pct=70.0, memory_used_bytes=21 * GiB),
                gpu(1, utilization_gpu_pct=1.0, memory_used_bytes=20 * GiB)]
    ollama = lambda t: [inst("ollama", [0, 1], kind="ollama", parallelism="pipeline")]  # noqa: E731
    f = Feed(steady(gpus, ollama))
    [a] = only(f.run(15), "imbalance")
    assert "GPU 1 holds 20.0 GiB" in a.message and "pipeline" in a.message


# ---- replicas -----------------------------------------------------------------------------------
def test_replica_imbalance():
    def insts(t):
        return [inst("ollama-0", [0], kind="ollama", model="llama3.1:8b", requests_running=4.0, requests_waiting=9.0),
                inst("ollama-1", [1], kind="ollama", model="llama3.1:8b", requests_running=0.0, requests_waiting=0.0),
                inst("vllm", [2, 3], requests_running=1.0)]
    f = Feed(steady(None, insts))
    [a] = only(f.run(12), "replica_imbalance")
    assert a.subject == "llama3.1:8b" and "ollama-0 carries 13.0" in a.message and "ollama-1" in a.message


def test_replicas_with_similar_load_are_fine():
    def insts(t):
        return [inst("ollama-0", [0], model="llama3.1:8b", requests_running=4.0 + (t % 3), requests_waiting=0.0),
                inst("ollama-1", [1], model="llama3.1:8b", requests_running=3.0, requests_waiting=1.0)]
    f = Feed(steady(None, insts))
    f.run(120)
    assert f.ever("replica_imbalance") == []


# ---- PCIe --------------------------------------------------------------------------------------
def test_pcie_width_degraded_under_load():
    x4 = {"pcie": Pcie(gen=4, max_gen=4, width=4, max_width=16), "utilization_gpu_pct": 70.0}
    f = Feed(steady(lambda t: box({1: x4})))
    [a] = only(f.run(12), "pcie_degraded")
    assert a.subject == "GPU 1" and "Gen4 x4 (max Gen4 x16)" in a.message and "x16 slot" in a.message


def test_idle_gpu_at_gen1_is_normal():
    idle = {"pcie": Pcie(gen=1, max_gen=5, width=16, max_width=16), "utilization_gpu_pct": 0.0,
            "throttle_reasons": ["gpu_idle"], "memory_used_bytes": 0}
    f = Feed(steady(lambda t: box({3: idle})))
    f.run(120)
    assert f.engine.history == []


def test_link_that_retrains_when_load_arrives_is_fine():
    # gen stays low for the first sample after load arrives, then trains up
    def gpus(t):
        busy = t % 40 >= 20
        just = 20 <= t % 40 < 21
        return box({0: {"utilization_gpu_pct": 80.0 if busy else 0.0,
                        "pcie": Pcie(gen=1 if (not busy or just) else 5, max_gen=5, width=16, max_width=16)}})
    f = Feed(steady(gpus))
    f.run(200)
    assert f.ever("pcie_degraded") == []


# ---- CPU offload --------------------------------------------------------------------------------
def test_cpu_offload():
    m = ModelInfo(name="llama3.3:70b", size_bytes=int(41.6 * GiB), size_vram_bytes=int(25.8 * GiB))
    insts = lambda t: [inst("ollama", [0, 1], kind="ollama", models=[m], parallelism="pipeline",  # noqa: E731
                            generation_tokens_per_s=1.1, requests_running=1.0)]
    f = Feed(steady(None, insts))
    [a] = only(f.run(12), "cpu_offload")
    assert "38 % of its 41.6 GiB on the CPU" in a.message and "1 tok/s" in a.message
    assert "smaller quant" in a.message and "now 1.1 tok/s" in a.message


def test_model_fully_in_vram_is_silent():
    m = ModelInfo(name="llama3.1:8b", size_bytes=6 * GiB, size_vram_bytes=6 * GiB)
    f = Feed(steady(None, lambda t: [inst("ollama", [0], kind="ollama", models=[m])]))
    f.run(30)
    assert f.engine.history == []


# ---- NUMA ----------------------------------------------------------------------------------------
def test_numa_mismatch():
    def gpus(t):
        return box({2: {"processes": [Process(pid=4242, name="VLLM::Worker_TP2", cpu_affinity=list(range(56, 112)))]},
                    1: {"processes": [Process(pid=4241, name="VLLM::Worker_TP1", cpu_affinity=list(range(0, 112)))]},
                    0: {"processes": [Process(pid=4240, name="VLLM::Worker_TP0", cpu_affinity=list(range(0, 8)))]}},
                   count=6)
    f = Feed(steady(gpus))
    [a] = only(f.run(12), "numa_mismatch")
    assert a.subject == "GPU 2"
    assert "pid 4242" in a.message and "CPUs 56-111 (NUMA node 1)" in a.message
    assert "numactl --cpunodebind=0" in a.message


# ---- instances -----------------------------------------------------------------------------------
def test_backend_down_raises_at_once_with_the_reason():
    def insts(t):
        status = "down" if t >= 5 else "up"
        return [inst("vllm-qwen", [0], status=status, error="connection refused" if status == "down" else None)]
    f = Feed(steady(None, insts))
    f.run(5)
    assert f.last == []
    [a] = f.run(1)
    assert a.kind == "backend_down" and a.severity == "critical" and "connection refused" in a.message
    assert [x.kind for x in f.engine.new_critical] == ["backend_down"]


def test_ecc_rising_then_stable():
    f = Feed(steady(lambda t: box({1: {"ecc_uncorrected_volatile": 2 + min(int(t) // 4, 3)}})))
    [a] = only(f.run(6), "ecc_errors")
    assert a.severity == "critical" and "2 → 3" in a.message
    f.run(300)  # stopped rising at t = 12: clears after the window passes
    assert only(f.last, "ecc_errors") == []


def test_ecc_stable_nonzero_count_is_not_an_alert():
    f = Feed(steady(lambda t: box({1: {"ecc_uncorrected_volatile": 4}})))
    f.run(60)
    assert f.engine.history == []


def test_kv_cache_full_needs_waiting_requests():
    full = lambda w: lambda t: [inst("vllm", [0, 1], kv_cache_usage_pct=99.0, requests_waiting=w)]  # noqa: E731
    f = Feed(steady(None, full(7.0)))
    [a] = only(f.run(12), "kv_cache_full")
    assert "99 % full with 7 requests waiting" in a.message
    f = Feed(steady(None, full(0.0)))  # full cache, nobody waiting: vLLM working as designed
    assert f.run(60) == []


def test_queue_backlog_growing():
    f = Feed(steady(None, lambda t: [inst("vllm", [0, 1], requests_waiting=float(int(t / 10)))]))
    f.run(100)
    assert f.ever("queue_backlog") == []  # not yet a trend over the 120 s window
    [a] = only(f.run(20), "queue_backlog")
    assert "grew" in a.message and "add a replica" in a.message


def test_queue_that_rises_and_drains_is_normal():
    def insts(t):
        load = 0.55 + 0.35 * math.sin(2 * math.pi * t / 120)
        return [inst("vllm", [0, 1], requests_waiting=float(max(0, round(30 * (load - 0.8)))))]
    f = Feed(steady(None, insts))
    f.run(600)
    assert f.ever("queue_backlog") == []


def test_driver_mismatch_per_gpu():
    def gpus(t):
        gs = box()
        for g in gs:
            g.driver_version = "570.172.08" if g.index != 3 else "550.54.15"
        return gs
    f = Feed(steady(gpus))
    [a] = only(f.run(1), "driver_mismatch")
    assert "550.54.15 on GPU 3" in a.message and "570.172.08 on GPU 0, 1, 2" in a.message


def test_same_driver_everywhere_is_silent():
    def gpus(t):
        gs = box()
        for g in gs:
            g.driver_version = "570.172.08"
        return gs
    f = Feed(steady(gpus))
    assert f.run(20) == []


def test_driver_library_mismatch_from_nvml_error():
    f = Feed(steady(lambda t: [], nvml_error="Failed to initialize NVML: Driver/library version mismatch"))
    [a] = f.run(1)
    assert a.kind == "driver_mismatch" and a.severity == "critical"


def test_gpu_missing_from_a_later_snapshot_is_lost():
    f = Feed(steady(lambda t: box(count=4 if t < 5 else 3)))
    f.run(5)
    assert f.last == []
    [a] = f.run(1)
    assert a.kind == "gpu_lost" and a.subject == "GPU 3"


def test_unknown_fields_raise_nothing():
    from gpuwatch.model import GPU
    f = Feed(steady(lambda t: [GPU(index=i) for i in range(2)], lambda t: [inst("x", [0, 1], generation_tokens_per_s=None,
                                                                           requests_running=None, requests_waiting=None,
                                                                           kv_cache_usage_pct=None)]))
    assert f.run(100) == []
    assert f.engine.rule_errors == {}


def test_gpu_lookup_follows_a_snapshot_changed_in_place():
    """Snapshot.gpu indexes positions once; a list changed in place must not give a stale GPU."""
    from gpuwatch.model import GPU, Snapshot

    snap = Snapshot(time="2026-11-23T00:00:00Z", host="h", gpus=[GPU(index=i) for i in range(4)])
    assert snap.gpu(2).index == 2 and snap.gpu(9) is None
    replacement = GPU(index=2, lost=True)
    snap.gpus[2] = replacement
    assert snap.gpu(2) is replacement
    snap.gpus[0], snap.gpus[3] = snap.gpus[3], snap.gpus[0]
    assert snap.gpu(0).index == 0 and snap.gpu(3).index == 3
    snap.gpus.append(GPU(index=9))
    assert snap.gpu(9).index == 9
    snap.gpus = [GPU(index=5)]
    assert snap.gpu(2) is None and snap.gpu(5).index == 5
