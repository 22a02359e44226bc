"""Hysteresis, history, notification and one-shot behaviour of the alert engine."""

import sys

from alerts_support import T0, Feed, box, iso, snap

from gpuwatch.analysis.alert_config import AlertConfig
from gpuwatch.analysis.alerts import AlertEngine, evaluate_once
from gpuwatch.analysis import rules as rules_mod

HOT = {"temperature_c": 91.0, "throttle_reasons": ["sw_thermal_slowdown"], "sm_clock_mhz": 1400}


def schedule(hot_periods):
    """A 4-GPU box whose GPU 2 is hot during the given (start, end) periods of seconds."""
    def make(t):
        hot = any(a <= t < b for a, b in hot_periods)
        return snap(T0 + t, box(({2: HOT} if hot else {})))
    return make


def test_raise_waits_for_the_delay_and_since_is_first_seen():
    f = Feed(schedule([(5, 1000)]))
    assert f.run(5) == []            # t = 0..4: cool
    assert f.run(10) == []           # t = 5..14: hot, but for less than 10 s
    alerts = f.run(1)                # t = 15: hot for 10 s
    assert [(a.kind, a.subject) for a in alerts] == [("thermal_throttle", "GPU 2")]
    assert alerts[0].since == iso(T0 + 5)
    assert alerts[0].key == "thermal_throttle:GPU 2"


def test_clear_waits_for_the_delay_and_history_records_both():
    f = Feed(schedule([(0, 30)]))
    f.run(30)                         # hot t = 0..29, raised at t = 10
    assert f.kinds() == {"thermal_throttle"}
    f.run(20)                         # cool t = 30..49: not gone for 20 s yet
    assert f.kinds() == {"thermal_throttle"}
    f.run(1)                          # t = 50: gone for 20 s
    assert f.last == []
    events = [(e.state, e.kind, e.subject, e.time) for e in f.engine.history]
    assert events == [("raised", "thermal_throttle", "GPU 2", iso(T0 + 10)),
                      ("cleared", "thermal_throttle", "GPU 2", iso(T0 + 50))]


def test_on_off_on_shorter_than_the_clear_window_does_not_flap():
    f = Feed(schedule([(0, 30), (35, 60), (62, 90)]))
    seen = []
    for _ in range(90):
        seen.append(bool(f.run(1)))
    assert seen[10:] == [True] * 80   # once raised it stays through the short gaps
    assert [e.state for e in f.engine.history] == ["raised"]


def test_a_blip_shorter_than_the_raise_delay_never_raises():
    f = Feed(schedule([(0, 6), (7, 13)]))   # hot 6 s, cool 1 s, hot 6 s
    for _ in range(40):
        assert f.run(1) == []
    assert f.engine.history == []


def test_gpu_lost_raises_at_once_and_notifies_once():
    def make(t):
        return snap(T0 + t, box(({3: {"lost": True}} if t >= 3 else {})))
    f = Feed(make)
    f.run(3)
    assert f.engine.new_critical == []
    alerts = f.run(1)
    assert [(a.kind, a.severity) for a in alerts] == [("gpu_lost", "critical")]
    assert [a.subject for a in f.engine.new_critical] == ["GPU 3"]
    f.run(1)
    assert f.engine.new_critical == []     # notified once, not every tick
    assert f.kinds() == {"gpu_lost"}


def test_per_rule_raise_delay_from_config():
    cfg = AlertConfig.from_toml_dict({"raise_after_s": 30, "thermal_throttle": {"raise_after_s": 2}})
    f = Feed(schedule([(0, 100)]), config=cfg)
    assert f.run(2) == []
    assert f.kinds(f.run(1)) == {"thermal_throttle"}


def test_disabled_rule_is_silent():
    cfg = AlertConfig.from_toml_dict({"thermal_throttle": {"enabled": False}})
    f = Feed(schedule([(0, 100)]), config=cfg)
    assert f.run(30) == []


def test_alerts_are_written_into_the_snapshot():
    engine = AlertEngine(AlertConfig(), clock=lambda: T0)
    s = snap(T0, box({1: {"lost": True}}))
    out = engine.update(s)
    assert s.alerts == out and out[0].kind == "gpu_lost"


def test_snapshot_time_is_the_default_clock():
    engine = AlertEngine(AlertConfig())
    for t in range(12):
        alerts = engine.update(snap(T0 + t, box({2: HOT})))
    assert [a.since for a in alerts] == [iso(T0)]


def test_memory_stays_bounded_over_a_long_run():
    cfg = AlertConfig.from_toml_dict({"history_size": 20, "raise_after_s": 0, "clear_after_s": 0})
    f = Feed(lambda t: snap(T0 + t, box(({2: HOT} if int(t) % 2 else {}))), config=cfg)
    f.run(3000)
    assert len(f.engine._samples) <= cfg.max_window_s() + 10
    assert len(f.engine.history) == 20
    assert len(f.engine._states) <= 1


def test_a_failing_rule_does_not_blind_the_others(monkeypatch):
    def broken(ctx):
        raise RuntimeError("boom")
    spec = rules_mod.RULES["power_cap"]
    monkeypatch.setitem(rules_mod.RULES, "power_cap", spec.__class__(spec.kind, broken, spec.severity, spec.summary))
    engine = AlertEngine(AlertConfig(), clock=lambda: T0)
    out = engine.update(snap(T0, box({0: {"lost": True}})))
    assert [a.kind for a in out] == ["gpu_lost"]
    assert "boom" in engine.rule_errors["power_cap"]


def test_severity_escalates_within_an_episode_and_notifies():
    def make(t):
        temp = 91.5 if t >= 15 else 88.0
        return snap(T0 + t, box({2: {"temperature_c": temp}}))
    f = Feed(make)
    alerts = f.run(11)
    assert [a.severity for a in alerts] == ["warning"]
    f.run(5)
    assert [a.severity for a in f.last] == ["critical"]
    assert [a.kind for a in f.engine.new_critical] == ["thermal_throttle"]


def test_evaluate_once_reports_without_the_raise_delay():
    snaps = [snap(T0, box({2: HOT})), snap(T0 + 1, box()), snap(T0 + 2, box({1: {"lost": True}}))]
    alerts = evaluate_once(snaps, AlertConfig())
    assert {(a.kind, a.subject) for a in alerts} == {("thermal_throttle", "GPU 2"), ("gpu_lost", "GPU 1")}
    assert snaps[-1].alerts == alerts
    assert evaluate_once([snap(T0, box())]) == []
    assert evaluate_once([]) == []


def test_analysis_does_not_pull_in_the_terminal_or_nvml():
    import subprocess
    code = ("import sys, gpuwatch.analysis.alerts, gpuwatch.analysis.doctor; "
            "bad = [m for m in ('textual', 'pynvml', 'httpx') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_instances_look_back_is_the_same_from_the_engines_series_as_from_every_sample(monkeypatch):
    """The rules read an instance's window from the engine's per-instance series (kept as samples
    come and go); it must hold exactly what searching every sample of the window finds: instances that come
    and go, go down, a clock that jumps back, samples past the look-back and past the count the
    engine keeps."""
    import random

    from alerts_support import inst
    from gpuwatch.analysis import alerts
    from gpuwatch.analysis.rules import RuleContext

    monkeypatch.setattr(alerts, "MAX_SAMPLES", 300)  # (the count limit, reached sooner)
    rng = random.Random(7)
    t = [T0]
    engine = AlertEngine(AlertConfig(), clock=lambda: t[0])
    names = ["a", "b", "c"]
    for step in range(800):
        t[0] += 0.01 if step < 600 else 1.0  # first faster than the count limit keeps, then past the look-back
        if step == 250:
            t[0] -= 50  # the clock went back: the look-back starts afresh
        insts = [inst(n, [0], status=rng.choice(["up", "up", "up", "down"])) for n in names if rng.random() < 0.8]
        engine.update(snap(t[0], box(count=1), insts))
        if step % 23 == 0 or step > 790:
            samples = list(engine._samples)
            ctx = RuleContext(snapshot=samples[-1][1], samples=samples, now=t[0], config=engine.config,
                              series=engine._series)
            for name in names:
                for seconds, ago in ((60, 10), (10, 0), (1e9, 0), (0.5, 0.2)):
                    quick = ctx.instance_series(name, seconds, ago)
                    # every sample in the window, searched for the instance (up)
                    slow = [(x, i) for x, s in ctx.window(seconds, ago) for i in s.instances
                            if i.name == name and i.status == "up"]
                    assert [(x, i.name) for x, i in quick] == [(x, i.name) for x, i in slow]
                    assert all(a is b for (_, a), (_, b) in zip(quick, slow))
