"""Pilot tests of the dashboard: keys, navigation, pause, themes, small terminals, untrusted
text, and a collector that raises."""

from __future__ import annotations

import copy
import time

import pytest

from conftest import until
from gpuwatch.analysis.history import History
from gpuwatch.frontends.tui.app import GpuWatchApp
from gpuwatch.frontends.tui.widgets import GpuCard, InstanceCard
from gpuwatch.model import GPU, Instance, ModelInfo, Pcie, Process, Snapshot


def make_snapshot(n=8, util=50.0, name="NVIDIA H100 80GB HBM3", proc_name="python3", cmdline="python3 -m vllm"):
    gpus = []
    for i in range(n):
        gpus.append(GPU(
            index=i, name=name, uuid=f"GPU-{i}", utilization_gpu_pct=util, utilization_memory_pct=30.0,
            memory_used_bytes=40 * 2**30, memory_total_bytes=80 * 2**30, temperature_c=50.0,
            temperature_slowdown_c=90.0, power_w=400.0, power_limit_w=700.0, sm_clock_mhz=1900,
            sm_clock_max_mhz=1980, pcie=Pcie(gen=5, max_gen=5, width=16, max_width=16, tx_bytes_per_s=1e6,
                                             rx_bytes_per_s=2e6),
            processes=[Process(pid=1000 + i, name=proc_name, cmdline=cmdline, used_memory_bytes=2**30, user="svc")],
        ))
    return Snapshot(time="2026-11-23T10:00:00.000Z", host="testbox", driver_version="570.1", gpus=gpus)


class FakeSource:
    live = False

    def __init__(self, snaps):
        self.snaps = snaps
        self.calls = 0
        self.history = History(100)
        self.alert_log = None
        self.bench_target = None

    def next(self):
        self.calls += 1
        item = self.snaps(self.calls) if callable(self.snaps) else self.snaps
        if isinstance(item, Exception):
            raise item
        snap = copy.deepcopy(item)
        self.history.add(snap)
        return snap


def visible_text(app) -> str:
    """Everything on screen as plain text, line by line, as a user reads it."""
    return "\n".join(s.text for s in app.screen._compositor.render_strips())


@pytest.fixture
def snap8():
    return make_snapshot()


async def test_cards_show_every_gpu_and_keys_work(snap8):
    src = FakeSource(snap8)
    app = GpuWatchApp(src, interval=0.05)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause(0.3)
        cards = list(app.query(GpuCard))
        assert [c.index for c in cards] == list(range(8))
        text = visible_text(app)
        assert "GPU 0" in text and "GPU 7" in text and "40.0GiB/80.0GiB" in text
        # the first card is selected from the start; arrows move focus between cards
        assert app.focused is cards[0]
        await pilot.press("right", "right")
        assert app.focused is cards[2]
        await pilot.press("down")
        cols = int(app.query_one("#gpus").styles.grid_size_columns)
        assert app.focused is cards[2 + cols]
        # enter opens the detail screen with the processes; escape goes back
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "GpuDetailScreen"
                    and "python3 -m vllm" in visible_text(app), "the detail screen with the processes")
        await pilot.press("escape")
        assert type(app.screen).__name__ == "Screen"
        # help
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        # theme cycles
        before = app.theme
        await pilot.press("t")
        assert app.theme != before
        # refresh interval
        await pilot.press("plus")
        assert app.interval < 0.05 or app.interval == 0.25
        await pilot.press("q")
    assert not app.is_running


def screen_backgrounds(app) -> set[tuple[int, int, int]]:
    """The background colours of every cell on screen, as drawn now."""
    out = set()
    for strip in app.screen._compositor.render_strips():
        for seg in strip:
            if seg.style is not None and seg.style.bgcolor is not None and seg.style.bgcolor.triplet is not None:
                out.add(tuple(seg.style.bgcolor.triplet))
    return out


async def test_a_theme_change_repaints_every_part_of_the_screen():
    # the cards, charts, containers and status lines keep the rows they drew last (widgets.py);
    # a new theme must still reach every cell, the parts that did not change with the data too
    src = FakeSource(lambda n: make_snapshot(util=float(10 + n % 80)))
    app = GpuWatchApp(src, interval=0.05, theme="gpuwatch")
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: "GPU 7" in visible_text(app) and src.calls > 3)
        dark = (0x11, 0x15, 0x1C)  # themes/gpuwatch.toml's background
        assert dark in screen_backgrounds(app)
        app.theme = "gpuwatch-light"
        await until(pilot, lambda: dark not in screen_backgrounds(app), "no cell left in the old theme")
        assert (0xF7, 0xF7, 0xF4) in screen_backgrounds(app)  # themes/light.toml's


async def test_pause_freezes_the_screen_and_slows_collection_without_stopping_it():
    src = FakeSource(lambda n: make_snapshot(util=float(n % 100)))
    app = GpuWatchApp(src, interval=0.05)
    app.paused_every_s = 0.6
    async with app.run_test(size=(200, 60)) as pilot:
        # the whole screen drawn (cards and footer) and the values moving
        await until(pilot, lambda: "GPU 7" in visible_text(app) and "Quit" in visible_text(app) and src.calls > 2)
        await pilot.press("p")
        await until(pilot, lambda: "PAUSED" in visible_text(app), "the PAUSED mark")
        frozen = visible_text(app)
        calls = src.calls
        await pilot.pause(0.4)
        # at most the poll already under way and the one after it (0.6 s later): not every 0.05 s
        assert src.calls <= calls + 1
        for _ in range(100):  # collection (and with it the alerts) goes on
            if src.calls > calls:
                break
            await pilot.pause(0.1)
        assert src.calls > calls
        assert "PAUSED" in frozen
        after = visible_text(app)
        assert [line for line in after.splitlines()[1:]] == [line for line in frozen.splitlines()[1:]]
        app.paused_every_s = 3600.0  # resuming must not wait out the paused period
        await pilot.pause(0.7)
        await pilot.press("p")
        resumed = src.calls
        for _ in range(100):
            if src.calls > resumed + 2:
                break
            await pilot.pause(0.1)
        assert src.calls > resumed + 2
        assert "PAUSED" not in visible_text(app)


async def test_paused_the_top_line_keeps_its_time_and_reports_what_pausing_costs():
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2026, 12, 3, 10, 0, 0, tzinfo=timezone.utc)

    def snap(n):
        s = make_snapshot()
        s.time = (t0 + timedelta(seconds=n)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return s

    src = FakeSource(snap)
    app = GpuWatchApp(src, interval=0.05)
    app.paused_every_s = 0.3
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: "GPU 7" in visible_text(app) and src.calls > 2)
        await pilot.press("p")
        await until(pilot, lambda: "PAUSED" in visible_text(app), "the PAUSED mark")
        frozen = visible_text(app).splitlines()[0]
        clock = frozen.split("Z")[0][-8:]  # hh:mm:ss of the frozen snapshot
        app._own_cpu_since_last = lambda: 0.3  # what the process costs while paused
        calls = src.calls
        await until(pilot, lambda: src.calls > calls + 1 and "self 0.3% CPU" in visible_text(app).splitlines()[0],
                    "the paused self-cost on the top line")
        top = visible_text(app).splitlines()[0]
        assert clock in top and "PAUSED" in top  # the figures' time stays the frozen one


async def test_small_terminal_shows_all_gpus_in_one_line_rows(snap8):
    app = GpuWatchApp(FakeSource(snap8), interval=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        assert app.compact in ("tight", "rows")  # one or two lines per GPU, as the rows allow
        text = visible_text(app)
        lines = text.splitlines()
        assert len(lines) == 24
        for i in range(8):  # every GPU visible without scrolling
            assert any(line.lstrip().startswith(f"{i} ") for line in lines), i
        assert all(len(line) <= 80 for line in lines)
        # and back to full cards when the terminal grows
        await pilot.resize_terminal(200, 60)
        await pilot.pause(0.3)
        assert app.compact is None


async def test_untrusted_text_is_never_markup():
    evil = "[bold]x[/] [@click=app.quit]click[/] [/]"
    snap = make_snapshot(n=2, name=evil, proc_name=evil, cmdline=evil)
    snap.instances = [Instance(name="[@click=app.quit]", kind="vllm", url="http://127.0.0.1:1", status="error",
                               error="[/] boom [red]", models=[ModelInfo(name="[b]model[/b]")])]
    app = GpuWatchApp(FakeSource(snap), interval=0.05)
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: "[/] boom [red]" in visible_text(app), "the instance's error as written")
        text = visible_text(app)
        assert "[@click=app.quit]" in text and "[b]model[/b]" in text and "[/] boom [red]" in text
        await pilot.press("right", "enter")
        await until(pilot, lambda: evil in visible_text(app), "the process's command line as written")
        await pilot.click("#procs")
        assert app.is_running


async def test_collector_that_raises_shows_a_message_and_recovers():
    broken = {"from": 2, "until": None}  # samples from the third on raise until the test mends it

    def seq(n):
        failing = n >= broken["from"] and (broken["until"] is None or n < broken["until"])
        return RuntimeError("NVML exploded") if failing else make_snapshot(n=2)

    src = FakeSource(seq)
    app = GpuWatchApp(src, interval=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(500):  # wait for the failure to show, not for a time
            if app.collector_error:
                break
            await pilot.pause(0.02)
        assert "NVML exploded" in (app.collector_error or "")
        # on screen with the next frame (a loaded machine draws it a little later)
        await until(pilot, lambda: "NVML exploded" in visible_text(app), "the collector error on screen")
        broken["until"] = src.calls + 1
        for _ in range(500):  # recovery comes with the next good sample
            if app.collector_error is None and src.calls > broken["until"]:
                break
            await pilot.pause(0.02)
        assert app.is_running and app.collector_error is None and src.calls > broken["until"]


async def test_no_gpus_says_why_and_keeps_running():
    snap = Snapshot(time="2026-11-23T10:00:00.000Z", host="laptop",
                    nvml_error="No NVIDIA driver found: libnvidia-ml.so.1 could not be loaded.")
    app = GpuWatchApp(FakeSource(snap), interval=0.05)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "No NVIDIA driver found" in visible_text(app), "why there are no GPUs")
        text = visible_text(app)
        assert "No NVIDIA driver found" in text and "No inference servers found" in text


async def test_unknown_values_show_as_na_not_zero():
    snap = make_snapshot(n=1)
    g = snap.gpus[0]
    g.power_w = g.temperature_c = g.utilization_gpu_pct = None
    app = GpuWatchApp(FakeSource(snap), interval=0.05)
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: "n/a" in visible_text(app), "the unknown values")
        card = visible_text(app)
        assert "n/a" in card
        assert "util" in card and " 0%" not in card


async def test_broken_theme_file_is_reported_not_fatal(tmp_path, monkeypatch, snap8):
    themes = tmp_path / "gpuwatch" / "themes"
    themes.mkdir(parents=True)
    (themes / "broken.toml").write_text("primary = [not toml")
    (themes / "badcolour.toml").write_text('name = "x"\nprimary = "not-a-colour"\n')
    (themes / "mine.toml").write_text('name = "mine"\nprimary = "#ff8800"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    app = GpuWatchApp(FakeSource(snap8), interval=0.05, theme="mine")
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.pause(0.3)
        assert app.theme == "mine"
        assert any("broken.toml" in e for e in app.theme_errors)
        assert any("badcolour.toml" in e and "not a colour" in e for e in app.theme_errors)
        assert app.is_running


class SimSource:
    """The real pipeline over the simulated box, one simulated second per poll."""

    live = True

    def __init__(self, spec):
        from gpuwatch.pipeline import Monitor
        from gpuwatch.runtime import make_sampler
        from gpuwatch.sim.box import ManualClock

        self.clock = ManualClock()
        self.monitor = Monitor(make_sampler(demo=spec, clock=self.clock))
        self.history = self.monitor.history
        self.alert_log = self.monitor.alerts
        self.bench_target = None

    def next(self):
        self.clock.advance(1.0)
        snap = self.monitor.sampler.sample(wait_instances=True)
        self.monitor.observe(snap)
        return snap

    def close(self):
        self.monitor.close()


async def test_a_gpu_lost_turns_critical_once_with_a_notification_and_a_chart_opens():
    src = SimSource("h100x8:lost=7")
    app = GpuWatchApp(src, interval=0.01)
    posted = []  # every notification the app posts (shown ones expire after a few wall seconds)
    notify = app.notify

    def spy(message, *args, **kw):
        posted.append((message, kw.get("severity")))
        return notify(message, *args, **kw)
    app.notify = spy
    try:
        async with app.run_test(size=(200, 60), notifications=True) as pilot:
            deadline = time.monotonic() + 30  # ticks are 10 ms apart but a loaded CI machine is slow
            while time.monotonic() < deadline:
                await pilot.pause(0.02)
                if app.snapshot is not None and any(a.kind == "gpu_lost" for a in app.snapshot.alerts):
                    break
            assert any(a.kind == "gpu_lost" for a in app.snapshot.alerts)
            # the card says so and a notification is posted
            await until(pilot, lambda: "fell off the bus" in visible_text(app)
                        and any("GPU 7" in n.message for n in app._notifications), "the card and a notification")
            assert [sev for msg, sev in posted if "GPU 7" in msg] == ["error"]
            seen = src.clock.now()  # one simulated second a tick
            await until(pilot, lambda: src.clock.now() >= seen + 20, "20 more ticks")
            assert [sev for msg, sev in posted if "GPU 7" in msg] == ["error"]  # notified once
            await pilot.press("c")
            await until(pilot, lambda: type(app.screen).__name__ == "ChartScreen"
                        and "utilization %" in visible_text(app), "the chart screen")
            await pilot.press("escape", "a")
            await until(pilot, lambda: "gpu_lost" in visible_text(app), "gpu_lost in the alert history")
    finally:
        src.close()


@pytest.mark.parametrize("action", ["action_alert_history", "action_chart"])
async def test_a_tick_landing_while_a_screen_opens_does_not_crash(action):
    """A collection finishing between pushing a screen and its widgets existing (a fast refresh,
    a busy loop) used to raise NoMatches in the screen's refresh and take the app down."""
    src = SimSource("h100x8:lost=7")
    app = GpuWatchApp(src, interval=60)
    try:
        async with app.run_test(size=(200, 60)) as pilot:
            for _ in range(100):
                await pilot.pause(0.02)
                if app.snapshot is not None:
                    break
            snap = app.snapshot
            getattr(app, action)()  # the new screen is on the stack, its widgets not yet mounted
            app._paint(snap)
            await pilot.pause(0.2)
            assert app.is_running and len(app.screen_stack) == 2
            app._paint(snap)
            await pilot.pause(0.05)
            assert app.is_running
    finally:
        src.close()


async def test_a_covered_dashboard_builds_nothing_and_shows_the_newest_poll_when_uncovered():
    src = FakeSource(lambda n: make_snapshot(util=float(n % 90)))
    app = GpuWatchApp(src, interval=0.05)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause(0.3)
        card = app.query(GpuCard).first()
        await pilot.press("a")  # the alert history covers the dashboard
        await pilot.pause(0.1)
        covered_sig, calls = card._sig, src.calls
        for _ in range(100):
            if src.calls > calls + 3:
                break
            await pilot.pause(0.05)
        assert src.calls > calls + 3  # collection goes on under the other screen
        assert card._sig == covered_sig  # but the hidden cards were not built again
        app.interval = 3600.0  # no poll after the one under way: what shows next is what was kept
        polled = -1
        for _ in range(100):
            if src.calls == polled:
                break
            polled = src.calls
            await pilot.pause(0.2)
        await pilot.press("escape")
        await pilot.pause(0.1)
        util = app.snapshot.gpus[0].utilization_gpu_pct
        assert app.snapshot is not None and src.calls == polled  # no new poll: this is the repaint on return
        util_lines = [line for line in visible_text(app).splitlines() if "util " in line]
        assert util_lines and f" {util:.0f}% " in util_lines[0]  # the newest poll, not the one before the cover


async def test_every_poll_runs_on_one_thread_that_ends_with_the_app():
    """The polls run on one thread, woken for each (not a new thread a second: the UI thread
    waited for each to start), and that thread leaves when the app ends."""
    import threading

    seen = []

    def snap(n):
        seen.append(threading.current_thread())
        return make_snapshot(util=float(n))

    src = FakeSource(snap)
    app = GpuWatchApp(src, interval=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: src.calls > 5, "six polls")
        assert threading.current_thread() not in seen  # never on the UI thread
    assert len(set(seen)) == 1, f"{len(set(seen))} threads for {len(seen)} polls"
    seen[0].join(timeout=5)
    assert not seen[0].is_alive()


async def test_polls_keep_their_own_time_and_never_queue_up_behind_a_busy_screen():
    """The poll thread times the polls: none needs a timer on the UI thread (each was a wake-up
    of it, and one of the poll thread, every poll). And a UI thread that is slow to show results
    (here 0.3 s per result, at a 0.05 s interval) never has them queue up: at most one poll is
    ahead of what was shown."""
    src = FakeSource(lambda n: make_snapshot(util=float(n % 100)))
    app = GpuWatchApp(src, interval=0.05)
    timers = []
    shown = []
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: src.calls > 2 and "GPU 7" in visible_text(app))
        real_set_timer = app.set_timer
        app.set_timer = lambda *a, **kw: timers.append(a) or real_set_timer(*a, **kw)
        calls = src.calls
        await until(pilot, lambda: src.calls > calls + 10, "ten more polls")
        assert timers == []

        def slow(snap, error):
            # which poll this result came from (util is the poll's number modulo 100 here), and
            # how many polls were made by the time it is shown
            shown.append((int(snap.gpus[0].utilization_gpu_pct), src.calls))
            time.sleep(0.3)
        app.after_poll = slow
        await until(pilot, lambda: len(shown) >= 5, "five results shown slowly")
        assert all((made - n) % 100 <= 1 for n, made in shown), shown  # never more than one poll ahead
        ns = [n for n, _ in shown]
        assert [(b - a) % 100 for a, b in zip(ns, ns[1:])] == [1] * (len(ns) - 1), ns  # none dropped


async def test_pausing_does_not_put_off_the_poll_already_due():
    """Pausing slows polling from the poll after the one already due: that one still comes (the
    first after start is the one that starts the servers' collector). It was put off by a whole
    paused period when the poll thread worked out its due time again on waking."""
    src = FakeSource(lambda n: make_snapshot(util=float(n % 100)))
    app = GpuWatchApp(src, interval=0.5)
    app.paused_every_s = 3600.0
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: src.calls >= 1 and "GPU 7" in visible_text(app))
        calls = src.calls
        await pilot.press("p")
        await until(pilot, lambda: src.calls > calls, "the poll that was due when pausing", timeout=20)


async def test_a_changed_figure_reaches_the_terminal_in_the_next_frame_and_only_its_rows_are_sent():
    """What the terminal is sent after a poll in which one GPU's utilization changed: the new
    figure, in a partial frame of the rows that changed (no card's border row, which did not
    change, is sent again). Holds whichever way a card hands its changed rows to Textual."""
    src = FakeSource(lambda n: make_snapshot(util=50.0) if n < 6 else _with_util(make_snapshot(util=50.0), 3, 77.0))
    app = GpuWatchApp(src, interval=0.05)
    frames = []  # (poll count when the frame was made, its update)
    async with app.run_test(size=(200, 60)) as pilot:
        real_display = app._display
        app._display = lambda screen, update: frames.append((src.calls, update)) or real_display(screen, update)
        await until(pilot, lambda: any(calls >= 7 for calls, _ in frames), "frames after the change")
        cards = list(app.query(GpuCard))
        borders = {(c.region.y, x) for c in cards for x in range(c.region.x, c.region.right)}
        sent = [u for calls, u in frames if calls >= 6 and hasattr(u, "spans")]
        text = "".join(u.render_segments(app.console) for u in sent)
        assert "77%" in text
        assert "GPU 3" not in text  # the card's title (its border row) was not sent again
        for update in sent:
            for y, x1, x2 in update.spans:
                assert not any((y, x) in borders for x in range(x1, x2 + 1)), (y, x1, x2)


def _with_util(snap, index, util):
    snap.gpus[index].utilization_gpu_pct = util
    return snap


async def test_card_borders_follow_the_instance_a_gpu_serves_and_the_instance_s_status():
    """A card's title and subtitle are built again only when what they show changes: a GPU
    handed to another server shows the new one, an instance that goes down says so, and the
    other cards keep theirs."""
    def snap(n):
        s = make_snapshot(n=4)
        later = n >= 5
        for g in s.gpus:
            g.instances = ["sglang-b" if later and g.index == 2 else "vllm-a"]
        s.instances = [Instance(name="vllm-a", kind="vllm", url="http://127.0.0.1:8000",
                                status="down" if later else "up", gpus=[0, 1, 3])]
        return s
    src = FakeSource(snap)
    app = GpuWatchApp(src, interval=0.05)
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: src.calls >= 2 and "vllm-a" in visible_text(app))
        cards = {c.index: c for c in app.query(GpuCard)}
        assert "vllm-a" in str(cards[2].border_subtitle) and "up" in visible_text(app)
        await until(pilot, lambda: src.calls >= 7 and "sglang-b" in visible_text(app), "the new server on GPU 2")
        assert "sglang-b" in str(cards[2].border_subtitle)
        assert all("vllm-a" in str(cards[i].border_subtitle) for i in (0, 1, 3))
        inst = app.query_one(InstanceCard)
        assert "down" in str(inst.border_subtitle) and "up" not in str(inst.border_subtitle)
