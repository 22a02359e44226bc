"""The demo's simulated meter: `gpuwatch --demo rtx4090x2` shows live Ollama tok/s, found the way
a real meter is found (its process in the process table), and the rules work on them."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from gpuwatch.analysis.alerts import AlertEngine
from gpuwatch.runtime import make_sampler
from gpuwatch.sim.box import ManualClock


def run(spec: str, seconds: float, step: float = 2.0):
    clock = ManualClock()
    sampler = make_sampler(demo=spec, clock=clock, discover=True)
    engine = AlertEngine(clock=clock)
    snaps = []
    try:
        for _ in range(int(seconds / step)):
            snap = sampler.sample(wait_instances=True)
            engine.update(snap)
            snaps.append(snap)
            clock.advance(step)
        box = sampler.demo.box
    finally:
        sampler.close()
    return box, engine, snaps


def test_the_demo_ollama_shows_the_meters_tok_s_running_and_itl():
    box, _, snaps = run("rtx4090x2:none", 20)
    t_prev, t_last = snaps[-2], snaps[-1]
    ollama = next(i for i in t_last.instances if i.kind == "ollama")
    assert ollama.meter is not None and ollama.meter.startswith("http://127.0.0.1:")
    assert ollama.meter_routes == ["127.0.0.1:11534"]
    spec = box.instance("ollama")
    # the box's own token integral over the last step: what simulated clients received
    expected = (box.instance_state("ollama", box.t() - 2.0).generation_tokens_total
                - box.instance_state("ollama", box.t() - 4.0).generation_tokens_total) / 2.0
    assert ollama.generation_tokens_per_s == pytest.approx(expected, abs=1.0)
    assert 0 < ollama.generation_tokens_per_s <= spec.peak_tokens_per_s
    assert ollama.prompt_tokens_per_s > 0 and ollama.requests_running is not None
    assert ollama.itl_p50_s is not None
    # the idle llama-server has its own counters and no meter
    assert all(i.meter is None for i in t_last.instances if i.kind != "ollama")
    assert t_prev.instances and len([i for i in t_last.instances if i.kind == "ollama"]) == 1


def test_throughput_drop_fires_on_the_metered_ollama_when_its_gpu_throttles():
    _, engine, _ = run("rtx4090x2:none,hot=0", 110, step=2.0)
    drops = [e for e in engine.history if e.kind == "throughput_drop" and e.state == "raised"]
    assert [d.subject for d in drops] == ["ollama"]
    assert "GPU 0 was in thermal slowdown" in drops[0].message


def test_gpuwatch_snapshot_of_the_demo_has_ollama_tok_s():
    r = run_cli("snapshot", "--json", "--demo", "rtx4090x2", "--interval", "0.5")
    assert r.returncode == 0, r.stderr
    (ollama,) = [i for i in json.loads(r.stdout)["instances"] if i["kind"] == "ollama"]
    assert ollama["generation_tokens_per_s"] > 0 and ollama["meter"]


def test_the_healthy_demo_with_its_meter_raises_nothing():
    _, engine, _ = run("rtx4090x2:none", 240, step=4.0)
    assert engine.history == [], [(e.kind, e.subject, e.message) for e in engine.history]


def test_the_demo_dashboard_shows_ollama_tok_s_instead_of_no_counters(tmp_path):
    import html
    import re
    out = tmp_path / "shot.svg"
    r = run_cli("snapshot", "--svg", str(out), "--demo", "rtx4090x2", "--size", "200x60", timeout=120)
    assert r.returncode == 0, r.stderr
    text = html.unescape("".join(re.findall(r"<text[^>]*>(.*?)</text>", out.read_text()))).replace("\xa0", " ")
    panel = text[text.index("Ollama 0.12.6"):]
    assert "no token counters" not in text
    assert re.search(r"gen \d+\.\d\s*tok/s", panel) and "TTFT p50/95" in panel and "ITL" in panel


def test_doctor_names_the_meter_or_suggests_one_for_ollama():
    from gpuwatch.analysis.doctor import run_doctor
    from gpuwatch.model import Instance, Snapshot
    metered = Instance(name="ollama-a", kind="ollama", url="http://127.0.0.1:11434", status="up",
                       generation_tokens_per_s=42.0, meter="http://127.0.0.1:9836", meter_routes=["127.0.0.1:11534"])
    bare = Instance(name="ollama-b", kind="ollama", url="http://127.0.0.1:11435", status="up")
    r = run_doctor([Snapshot(time="2026-12-02T08:00:00Z", host="h", instances=[metered, bare])], alerts=[])
    checks = {c.name: c for c in r.checks}
    assert "42 tok/s (through gpuwatch meter 127.0.0.1:11534)" in checks["instance ollama-a"].detail
    assert checks["instance ollama-a"].notes == []
    assert any("gpuwatch meter" in n for n in checks["instance ollama-b"].notes)
