"""The flagship alert: a sharp fall in tok/s while requests run, with its cause named."""

import math

from alerts_support import T0, Feed, gpu, inst, snap

HOT = {"temperature_c": 91.0, "throttle_reasons": ["sw_thermal_slowdown", "hw_thermal_slowdown"], "sm_clock_mhz": 1406}


def load(t, period=120.0):
    return 0.55 + 0.35 * math.sin(2 * math.pi * t / period) + 0.04 * math.sin(5.3 * 2 * math.pi * t / period)


def tp4(hot_from=None, factor_from=None, factor=1.0, tps=lambda t, run: 50.0 * run, kv=lambda t: 50.0,
        running=lambda t: round(48 * load(t))):
    """vLLM TP=4 on GPUs 0-3 whose tok/s follows the number of running requests."""
    def make(t):
        hot = hot_from is not None and t >= hot_from
        gpus = [gpu(i, utilization_gpu_pct=90 * load(t), **(HOT if hot and i == 2 else {})) for i in range(4)]
        f = factor if factor_from is not None and t >= factor_from else 1.0
        f = 0.69 if hot else f
        run = running(t)
        i = inst("vllm-llama70b", [0, 1, 2, 3], requests_running=float(run),
                 generation_tokens_per_s=tps(t, run) * f, kv_cache_usage_pct=kv(t))
        return snap(T0 + t, gpus, [i])
    return make


def drops(f):
    return [a for a in f.last if a.kind == "throughput_drop"]


def test_drop_coinciding_with_thermal_slowdown_names_the_gpu():
    f = Feed(tp4(hot_from=100))
    f.run(100)
    assert f.ever("throughput_drop") == []
    f.run(25)
    [a] = drops(f)
    assert a.subject == "vllm-llama70b"
    assert a.message.startswith("decode tok/s on vllm-llama70b fell 31 %")
    assert "while GPU 2 was in thermal slowdown (91 °C, SM clock 29 % below max)" in a.message
    assert "fix the cooling of GPU 2" in a.message
    # the condition started a few seconds after the step (the recent median must cross over)
    assert T0 + 100 < _t(a.since) <= T0 + 110


def test_drop_while_kv_cache_full_names_it():
    f = Feed(tp4(factor_from=100, factor=0.6, kv=lambda t: 99.0 if t >= 100 else 60.0))
    f.run(125)
    [a] = drops(f)
    assert "KV cache was 99 % full" in a.message


def test_natural_load_variation_is_not_a_drop():
    # ten minutes of load rising and falling: tok/s follows the number of running requests
    f = Feed(tp4())
    f.run(600)
    assert f.ever("throughput_drop") == []


def test_batching_slowdown_as_load_rises_is_not_a_drop():
    # per-request speed falls as the batch grows (tok/s ~ running^0.7): normal for vLLM
    f = Feed(tp4(tps=lambda t, run: 120.0 * run ** 0.7))
    f.run(600)
    assert f.ever("throughput_drop") == []


def test_batching_slowdown_next_to_a_harmless_cause_is_not_a_drop():
    # GPU 0 sits at its default power limit (info only) while the batch doubles and each
    # request gets slower: the power cap did not cause that
    def make(t):
        base = tp4(tps=lambda t, run: 150.0 * run ** 0.5, running=lambda t: 12 if t < 100 else 40)(t)
        g0 = base.gpus[0]
        g0.throttle_reasons, g0.power_w = ["sw_power_cap"], 695.0
        return base
    f = Feed(make)
    f.run(200)
    assert f.ever("throughput_drop") == []


def test_fewer_requests_means_fewer_tokens_not_a_drop():
    f = Feed(tp4(running=lambda t: 40 if t < 100 else 12))
    f.run(200)
    assert f.ever("throughput_drop") == []


def test_moderate_drop_without_a_cause_stays_quiet():
    f = Feed(tp4(factor_from=100, factor=0.7))
    f.run(200)
    assert f.ever("throughput_drop") == []


def test_large_drop_without_a_cause_is_reported_as_such():
    f = Feed(tp4(factor_from=100, factor=0.35))
    f.run(125)
    [a] = drops(f)
    assert "fell 65 %" in a.message and "no GPU cause seen" in a.message


def test_drop_clears_once_the_new_level_is_the_baseline():
    f = Feed(tp4(hot_from=100))
    f.run(250)
    events = [(e.state, e.kind) for e in f.engine.history if e.kind == "throughput_drop"]
    assert events == [("raised", "throughput_drop"), ("cleared", "throughput_drop")]
    assert {a.kind for a in f.last} == {"thermal_throttle"}  # the cause itself stays


def test_no_drop_alert_when_nothing_is_running():
    f = Feed(tp4(hot_from=100, running=lambda t: 20 if t < 100 else 0))
    f.run(200)
    assert f.ever("throughput_drop") == []


def _t(iso):
    from gpuwatch.analysis.alerts import parse_time
    return parse_time(iso)
