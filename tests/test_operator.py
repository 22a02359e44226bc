"""Pilot tests of what an operator hits first (issue 15): a selection that shows, a refresh rate
that takes effect at once, alerts that keep their remedy, honest words for unknowns."""

from __future__ import annotations

import asyncio
import threading
import time

from conftest import until
from test_dashboard import FakeSource, make_snapshot, visible_text

from gpuwatch.frontends.tui.app import GpuWatchApp
from gpuwatch.frontends.tui.widgets import GpuCard


def _row_styles(app, card):
    """The looks of the cells of a card's first line, as drawn (colours and attributes only: a
    Style also carries meta, such as mouse offsets, that differs per row and is not seen)."""
    strip = card.render_line(0)
    return {(s.color, s.bgcolor, s.bold, s.dim, s.italic, s.underline, s.reverse)
            for s in (seg.style for seg in strip if seg.text.strip()) if s is not None}


async def test_a_gpu_is_selected_from_the_start_and_the_selection_shows_at_small_sizes():
    def shows(app, k: int) -> bool:
        """GPU ``k`` has the focus, and its row (alone of the first three) looks different."""
        cards = list(app.query(GpuCard))
        if len(cards) < 3 or app.focused is not cards[k]:
            return False
        looks = [_row_styles(app, c) for c in cards[:3]]
        others = [looks[i] for i in range(3) if i != k]
        return looks[k] != others[0] and others[0] == others[1]

    for size in ((80, 24), (120, 40)):
        app = GpuWatchApp(FakeSource(make_snapshot()), interval=60)
        async with app.run_test(size=size) as pilot:
            # (the first poll draws full cards; the compact rows of these sizes follow at the
            # next layout: on a loaded machine that takes longer than any fixed pause)
            # enter acts on something from the start, and the selected row looks different
            await until(pilot, lambda: shows(app, 0), f"GPU 0 selected and its row distinct at {size}", timeout=15)
            await pilot.press("down")
            await until(pilot, lambda: shows(app, 1), f"GPU 1 selected after down at {size}", timeout=15)
            await pilot.press("enter")
            await until(pilot, lambda: type(app.screen).__name__ == "GpuDetailScreen", "the detail screen", timeout=15)
            assert app.screen.index == 1


async def test_a_faster_refresh_takes_effect_at_once():
    src = FakeSource(make_snapshot(n=2))
    app = GpuWatchApp(src, interval=30.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        assert src.calls == 1  # the first poll; the next one is 30 s away
        for _ in range(6):
            await pilot.press("plus")
        assert app.interval == 0.25
        deadline = time.monotonic() + 10
        while src.calls < 3:  # not after the 30 s sleep that was pending
            assert time.monotonic() < deadline, "the pending 30 s sleep was not cut short"
            await asyncio.sleep(0.05)
        await until(pilot, lambda: "every 0.25s" in visible_text(app), "the new interval on the top line")


async def test_a_lost_gpu_detail_is_not_a_page_of_na_and_a_hot_one_says_above():
    snap = make_snapshot(n=2)
    lost = snap.gpus[1]
    for attr in ("name", "utilization_gpu_pct", "utilization_memory_pct", "memory_used_bytes", "memory_total_bytes",
                 "temperature_c", "temperature_slowdown_c", "power_w", "power_limit_w", "sm_clock_max_mhz",
                 "sm_clock_mhz"):
        setattr(lost, attr, None)
    lost.pcie.gen = lost.pcie.width = lost.pcie.max_gen = lost.pcie.max_width = None
    lost.processes = []
    lost.lost = True
    snap.gpus[0].temperature_c = 91.0
    snap.gpus[0].temperature_shutdown_c = 92.0
    app = GpuWatchApp(FakeSource(snap), interval=60)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        assert "GPU 1 ?" not in visible_text(app)
        await pilot.press("enter")
        await until(pilot, lambda: "below shutdown" in visible_text(app), "GPU 0's detail")
        text = visible_text(app)
        assert "1 °C above slowdown, 1 °C below shutdown" in text and "-1 °C" not in text
        await pilot.press("escape", "down", "enter")
        await until(pilot, lambda: getattr(app.screen, "index", None) == 1 and "dmesg" in visible_text(app),
                    "GPU 1's detail")
        text = visible_text(app)
        assert app.screen.index == 1 and "LOST" in text and "dmesg" in text
        assert "n/a" not in text and "Pn/a" not in text and "Genn/a" not in text


async def test_fleet_gpu_cards_do_not_claim_zero_processes():
    snap = make_snapshot(n=2)
    snap.source = "prometheus"
    for g in snap.gpus:
        g.processes = []
        g.instances = ["vllm-a"]
    app = GpuWatchApp(FakeSource(snap), interval=60)
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: "vllm-a" in visible_text(app), "the cards")
        text = visible_text(app)
        assert "GPU 0" in text and "vllm-a" in text and "0 procs" not in text


async def test_before_the_first_look_it_says_looking_not_none_found():
    snap = make_snapshot(n=2)
    snap.instances_pending = True
    app = GpuWatchApp(FakeSource(snap), interval=60)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "looking for inference servers" in visible_text(app), "the servers' panel")
        text = visible_text(app)
        assert "looking for inference servers" in text and "No inference servers found" not in text


async def test_palette_screenshot_lands_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))  # no ~/Downloads, as on a server
    app = GpuWatchApp(FakeSource(make_snapshot(n=2)), interval=60)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        app.deliver_screenshot()
        deadline = time.monotonic() + 10
        while not list(tmp_path.glob("*.svg")):
            assert time.monotonic() < deadline, "no screenshot in the working directory"
            await asyncio.sleep(0.1)
        # Textual's saving thread reports back to the app when done: let it, before the app ends
        # (else it calls into an app that is gone, a warning charged to whichever test runs next)
        await until(pilot, lambda: not any("save_file_thread" in t.name for t in threading.enumerate()),
                    "the screenshot's saving thread done", timeout=10)
    svg = next(tmp_path.glob("*.svg")).read_text()
    assert 'xml:space="preserve"' in svg and "cdnjs" not in svg and "&#160;" not in svg


def _history_source(n_gpus=8, seconds=90):
    """A source whose history holds ``seconds`` samples one second apart, with an instance."""
    import copy as _copy
    from datetime import datetime, timedelta, timezone

    from gpuwatch.model import Instance, ModelInfo

    base = make_snapshot(n=n_gpus)
    base.instances = [Instance(name="vllm-a", kind="vllm", url="http://127.0.0.1:8000", status="up",
                               models=[ModelInfo(name="m")], gpus=[0, 1], parallelism="tensor", parallel_size=2,
                               generation_tokens_per_s=800.0, prompt_tokens_per_s=2000.0, requests_running=20,
                               requests_waiting=2, ttft_p50_s=0.3, itl_p50_s=0.02)]
    for g in base.gpus[:2]:
        g.instances = ["vllm-a"]
    src = FakeSource(base)
    t0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone.utc)
    for k in range(seconds):
        s = _copy.deepcopy(base)
        s.time = (t0 + timedelta(seconds=k)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for g in s.gpus:
            g.memory_used_bytes = int(66.06 * 2**30) + (k % 3) * 2**20  # flat, a MiB of jitter
        s.instances[0].generation_tokens_per_s = 800.0 + 5 * (k % 10)
        src.history.add(s)
    base.time = (t0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return src


async def test_charts_have_a_time_axis_a_calm_memory_axis_and_a_legend():
    app = GpuWatchApp(_history_source(), interval=60)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("c")
        await until(pilot, lambda: type(app.screen).__name__ == "ChartScreen", "the chart screen")
        assert app.screen.index == 0
        await pilot.press("g")  # all GPUs
        await until(pilot, lambda: "━ GPU 7" in visible_text(app), "the legend of all GPUs")
        text = visible_text(app)
        assert "now" in text and "-1m" in text and "samples" not in text  # seconds, not sample counts
        assert "━ GPU 0" in text and "━ GPU 7" in text  # the legend of "all GPUs"
        mem = app.screen.query_one("#c-1")
        assert mem.title == "memory used %"
        lines = mem.text().splitlines()
        assert any(line.startswith("100") for line in lines) and any(line.lstrip().startswith("0┤") for line in lines)


async def test_c_on_an_instance_charts_its_tokens_requests_and_latency():
    app = GpuWatchApp(_history_source(), interval=60)
    async with app.run_test(size=(160, 50)) as pilot:
        from gpuwatch.frontends.tui.widgets import InstanceCard
        deadline = time.monotonic() + 10
        while not isinstance(app.focused, GpuCard):  # the dashboard has drawn and selected GPU 0
            assert time.monotonic() < deadline
            await pilot.pause(0.05)
        app.query_one(InstanceCard).focus()
        await pilot.pause(0.1)
        await pilot.press("c")
        await until(pilot, lambda: "━ waiting" in visible_text(app), "the instance's charts")
        text = visible_text(app)
        assert "vllm-a" in text and "tokens/s" in text and "━ generation" in text and "━ waiting" in text
        assert "latency s" in text and "utilization %" not in text


def _alerts():
    from gpuwatch.model import Alert
    return [
        Alert(kind="thermal_throttle", severity="critical", subject="GPU 2",
              message="GPU 2 thermal slowdown (sw_thermal_slowdown): 91 °C (slowdown at 90 °C), shutdown at 92 °C, "
                      "SM clock 1349 MHz, 32 % below its 1980 MHz max; check airflow, fan curve and slot spacing "
                      "(a free slot is worth ~15 °C)"),
        Alert(kind="gpu_lost", severity="critical", subject="GPU 7",
              message="GPU 7 fell off the bus (NVML: GPU is lost); check `dmesg | grep -i xid` (Xid 79), then "
                      "reset the GPU (`nvidia-smi -r -i 7`) or reboot"),
        Alert(kind="pcie_degraded", severity="warning", subject="GPU 1",
              message="GPU 1 PCIe link Gen5 x4 (max Gen5 x16) while 94 % busy: reseat the card, move it to a x16 "
                      "slot or check the riser and BIOS lane bifurcation"),
    ]


async def test_alerts_keep_their_remedy_at_every_size():
    for size in ((80, 24), (120, 40), (200, 60)):
        src = _history_source()
        src.snaps.alerts = _alerts()
        app = GpuWatchApp(src, interval=60)
        async with app.run_test(size=size) as pilot:
            await pilot.pause(0.4)
            text = visible_text(app)
            flat = " ".join(text.split())
            for tail in ("(a free slot is worth ~15 °C)", "or reboot", "lane bifurcation"):
                assert tail in flat, (size, tail)  # whole sentences, remedy included
            assert "more alert" not in text, size  # nothing hidden while there is room
            # continuation lines start under the message, not under the badge
            lines = text.splitlines()
            i = next(k for k, line in enumerate(lines) if "GPU 2 thermal slowdown" in line or "GPU 2" in line and "CRIT" in line)
            head = lines[i].index("GPU 2") + len("GPU 2 ")
            assert lines[i + 1][:head].strip() == "", size


async def test_120x40_keeps_each_gpus_name_and_instance_and_fills_spare_rows_with_charts():
    app = GpuWatchApp(_history_source(), interval=60)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.4)
        lines = visible_text(app).splitlines()
        gpu_rows = [line for line in lines[1:] if "H100 80GB HBM3" in line]
        assert len(gpu_rows) == 8  # every GPU with its model name
        row0 = lines.index(gpu_rows[0])
        assert "vllm-a" in lines[row0 + 1] and "temp 50/90°C" in lines[row0 + 1]  # its instance and threshold
        assert "pwr 400/700W" in lines[row0 + 1]
        text = "\n".join(lines)
        assert "utilization %" in text and "now" in text  # spare rows: history with a time axis
        assert "generation tok/s" in text
        blank = sum(1 for line in lines if not line.strip())
        assert blank <= 2, blank


async def test_200x60_uses_its_width_for_history():
    from gpuwatch.frontends.tui.widgets import InstanceCard

    app = GpuWatchApp(_history_source(), interval=60)
    async with app.run_test(size=(200, 60)) as pilot:
        def spark() -> str:
            card = app.query_one(InstanceCard)
            gen = next((line.plain for line in card._lines if line.plain.startswith("gen ")), "")
            return max((run for run in gen.split(" ") if run and set(run) <= set("▁▂▃▄▅▆▇█")), key=len, default="")

        # the sparkline grows with its panel once the layout has settled
        await until(pilot, lambda: "power W" in visible_text(app) and len(spark()) >= 15,
                    "the history charts and a sparkline as wide as its panel allows")
        text = visible_text(app)
        assert "utilization %" in text and "power W" in text and "-1m" in text
        lines = text.splitlines()
        assert sum(1 for line in lines if not line.strip()) <= 3


def test_doctor_words_are_honest_and_counted_right():
    from conftest import run_cli

    out = run_cli("doctor", "--demo", "h100x8:idle", timeout=120).stdout
    assert "imbalance" in out and "over 30 s" not in out  # the run was a few seconds, not 30
    out = run_cli("doctor", "--demo", "h100x8:ecc", timeout=120).stdout
    assert "1 warnings" not in out and "1 pairs" not in out and "GPUs 6 single" not in out
    assert "vllm 0.11.0" not in out and "vLLM 0.11.0" in out and "SGLang" in out
    ecc = next(line for line in out.splitlines() if line.startswith("WARN  ECC"))
    assert "since the driver loaded" in ecc
    alerts = next(line for line in out.splitlines() if " alerts " in line and line.startswith("PASS"))
    assert "none raised during this" in alerts
    # a check it could not make is not a pass
    assert "PASS  NUMA placement" not in out or "no GPU process with a known CPU affinity" not in out


def test_the_hot_demo_never_reaches_shutdown_and_says_how_far_it_is():
    from conftest import run_cli
    import json as _json

    doc = _json.loads(run_cli("snapshot", "--json", "--demo", "h100x8:hot", timeout=120).stdout)
    g = next(x for x in doc["gpus"] if x["index"] == 2)
    assert g["temperature_c"] < g["temperature_shutdown_c"] - 0.5
    msgs = [a["message"] for a in doc["alerts"] if a["kind"] == "thermal_throttle"]
    assert msgs and all("below its shutdown" in m or "shutdown" not in m for m in msgs)


def test_the_demo_is_physically_consistent():
    import json as _json

    from conftest import run_cli

    GiB = 2 ** 30
    doc = _json.loads(run_cli("snapshot", "--json", "--demo", "rtx4090x2:offload", timeout=120).stdout)
    ollama = next(i for i in doc["instances"] if i["kind"] == "ollama")
    model = ollama["models"][0]
    held = sum(p["used_memory_bytes"] for g in doc["gpus"] for p in g["processes"] if p["name"] == "ollama")
    # what the GPUs hold for the model is what Ollama says is in VRAM (not the whole model)
    assert abs(held - model["size_vram_bytes"]) < 1 * GiB, (held / GiB, model["size_vram_bytes"] / GiB)
    assert model["cpu_offload_pct"] > 30
    for g in doc["gpus"]:
        assert g["memory_used_bytes"] <= g["memory_total_bytes"]


def test_demo_bench_is_slower_for_bigger_models():
    from gpuwatch.collect.bench import run_bench
    from gpuwatch.sim.demo import start_demo

    d = start_demo("h100x8")
    try:
        speed = {name: run_bench(d.servers.url(name), None, timeout=30).generation_tokens_per_s
                 for name in ("vllm-llama70b", "sglang-mistral")}
    finally:
        d.close()
    assert speed["vllm-llama70b"] < 60 < speed["sglang-mistral"], speed  # 70B vs 7B, one stream each


def test_the_hot_demo_has_no_token_spike_when_the_gpu_starts_throttling():
    from gpuwatch.config import load_settings
    from gpuwatch.runtime import simulated_history

    m = simulated_history(load_settings(None, demo="h100x8:hot"))
    toks = list(m.history.instance["vllm-llama70b"]["tok"])[1:]
    assert None not in toks  # no counter that seemed to go back (a "restart")
    assert max(toks) <= 2400  # never above the instance's peak


async def test_the_top_line_keeps_the_refresh_rate_at_every_size():
    for size in ((80, 24), (120, 40), (200, 60)):
        src = _history_source()
        # the demo's longest head: a long host name and driver version, the SIMULATED badge
        src.snaps.host, src.snaps.driver_version = "demo-h100x8", "570.172.08"
        src.snaps.source, src.snaps.scenario = "simulated", "h100x8"
        app = GpuWatchApp(src, interval=1.0)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: "every 1s" in visible_text(app).splitlines()[0], "the top line")
            top = visible_text(app).splitlines()[0]
            assert "every 1s" in top and "…" not in top, (size, top)
            await pilot.press("p")  # paused: the PAUSED badge takes room, the refresh rate stays
            await until(pilot, lambda: "PAUSED" in visible_text(app).splitlines()[0], "the PAUSED badge")
            top = visible_text(app).splitlines()[0]
            assert "PAUSED" in top and "every 1s" in top and "…" not in top, (size, top)


def test_a_long_word_in_an_alert_is_broken_without_a_space_inside_it():
    from gpuwatch.frontends.tui.render import alert_lines
    from gpuwatch.model import Alert

    path = "/tmp/gpuwatch-demo-host-vcw0nkal/etc/nginx/nginx.conf:4"
    a = Alert(kind="pool_member_down", severity="warning", subject="pool llm_backends",
              message=f"runs on 2 of 3 replicas: restart it, or mark it `down` in {path}")
    for width in (40, 60, 78, 118):
        lines = [line.plain for line in alert_lines(a, width)]
        assert all(len(line) <= width for line in lines), (width, lines)
        joined = "".join(line.strip() for line in lines)
        assert path in joined or path in " ".join(line.strip() for line in lines), (width, lines)
