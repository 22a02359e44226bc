"""The live dashboard (Textual).

One polling loop (dolphie's pattern): a thread worker takes one snapshot, hands it to the UI
thread, and only then is the next poll armed — polls never overlap, a slow source stretches
the period instead of queueing work, and an exception in a collector becomes a message on
screen. Widgets repaint only when what they show changed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path
import time
from typing import Callable, Iterable

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer

from ...config import Settings
from ...model import Snapshot
from ..sources import LiveSource, SnapshotSource
from .themes import DEFAULT_THEME, load_all_themes
from .render import gpu_card_lines, no_instances_text, short_gpu_name
from .layout import CARD_HEIGHT, CHART_MIN_ROWS, plan
from .pools import paint_pools
from .widgets import AlertStrip, Card, GpuCard, InstanceCard, HistoryChart, KeptGrid, KeptHorizontal, KeptVertical, \
    KeptVerticalScroll, StatusLine, TopLine

INTERVALS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# the history charts span minutes (a braille dot is about a second): redrawn every 5 s they move a
# few dots at a time; drawing them was ~17 % of the dashboard's CPU at a 2 s period (py-spy, fair bench)
CHART_EVERY_S = 5.0
EXTRA_THEMES = ("textual-dark", "nord", "gruvbox", "tokyo-night", "textual-light")


class Collected(Message):
    """A poll finished (posted from the worker thread)."""

    def __init__(self, snapshot: Snapshot | None, error: str | None, elapsed: float) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.error = error
        self.elapsed = elapsed


class BenchDone(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class GpuWatchApp(App):
    CSS_PATH = Path(__file__).with_name("gpuwatch.tcss")  # absolute: subclasses live elsewhere
    show_self_cost = True  # the monitor's own CPU and ms per collection, top right
    TITLE = "gpuwatch"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("p", "toggle_pause", "Pause"),
        Binding("t", "next_theme", "Theme"),
        Binding("plus,equals_sign", "faster", "Faster", key_display="+", show=False),
        Binding("minus", "slower", "Slower", key_display="-", show=False),
        Binding("c", "chart", "Chart"),
        Binding("a", "alert_history", "Alerts"),
        Binding("b", "bench", "Bench", show=False),
        Binding("right", "move(1, 0)", "Next", show=False),
        Binding("left", "move(-1, 0)", "Prev", show=False),
        Binding("down", "move(0, 1)", "Down", show=False),
        Binding("up", "move(0, -1)", "Up", show=False),
    ]

    # the shortest wait between the end of one poll and the next (a poll slower than the
    # interval stretches the period, and the UI thread gets a moment between results)
    min_poll_delay = 0.01
    # paused, the screen is frozen and collection slows to this period: alerts and their
    # notifications go on (a GPU lost while the operator reads is still said), and a paused
    # dashboard costs next to nothing; resuming polls at once
    paused_every_s = 10.0
    # how long the UI waits at start for the first snapshot before it shows an empty screen
    first_wait_s = 0.25

    def get_driver_class(self):
        """Textual's Linux driver with an input thread that sleeps until there is input
        (``driver.py``); Textual's choice elsewhere and where ``TEXTUAL_DRIVER`` names one."""
        from textual import constants

        if constants.DRIVER is None and sys.platform != "win32":
            from .driver import QuietLinuxDriver
            return QuietLinuxDriver
        return super().get_driver_class()

    def __init__(self, source: SnapshotSource, interval: float = 1.0, theme: str | None = None, title: str | None = None,
                 paused: bool = False, on_first_frame: Callable[[], None] | None = None) -> None:
        # NO_COLOR (no-color.org): Textual alone would draw in shades of grey; asking for ANSI
        # colours makes it apply its NoColor filter instead, so no colour codes are sent at all
        # (bold and reverse still mark what matters).
        super().__init__(ansi_color="NO_COLOR" in os.environ)
        self.source = source
        self.interval = interval
        self._on_first_frame = on_first_frame  # called once, when the first poll is on screen
        self._first_polled = False
        self.paused = paused
        self.snapshot: Snapshot | None = None
        self.compact: str | None = None  # None: full cards, "rows": two lines, "tight": one line
        self.collector_error: str | None = None
        # polling: the poll thread keeps its own time (see _poll_loop); these are shared with it
        self._polling = False  # a poll's result is on its way to the UI thread, not applied yet
        self._poll_now = False  # poll at once (first poll, resume), not at the next due time
        self._poll_waits_for_ui = False  # the poll thread waits for the last result to be applied
        self._poller: threading.Thread | None = None
        self._poll_wanted = threading.Event()  # wakes the poll thread: poll now, re-time, or stop
        self._stopping = False
        # the process's own CPU, from times(2) (one system call; psutil reads and parses
        # /proc/self/stat): busy seconds and the moment they were read
        t = os.times()
        self._own_at, self._own_busy = time.monotonic(), t.user + t.system
        self._own_cpu = 0.0
        self._shown: Snapshot | None = None  # the snapshot on the main screen (frozen while paused)
        self._inst_ids: dict[str, str] = {}
        self._pool_ids: dict[str, str] = {}
        self._inst_chart_rows = 0
        self._charts_at = -1e9
        self.layout_plan = None
        self._theme_names: list[str] = []
        loaded = load_all_themes()
        for t in loaded.themes:
            self.register_theme(t)
            self._theme_names.append(t.name)
        self.theme_errors = loaded.errors
        self._theme_names += [n for n in EXTRA_THEMES if n in self.available_themes]
        self.requested_theme = theme
        wanted = theme or DEFAULT_THEME
        if wanted in self.available_themes:
            self.theme = wanted
        if title:
            self.sub_title = title

    # ---- layout ---------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield TopLine(id="top")
        yield AlertStrip(id="alerts")
        yield StatusLine(id="notice")
        # (containers that hand back their unchanged background: widgets.KeptRender)
        with KeptHorizontal(id="main"):
            # tab moves between cards, not into the scroll containers
            with KeptVerticalScroll(id="gpu-scroll", can_focus=False):
                yield KeptGrid(id="gpus")
                with KeptHorizontal(id="gpu-charts"):  # history in the rows the GPUs leave
                    yield HistoryChart("utilization %", id="gc-util")
                    yield HistoryChart("power W", id="gc-power")
            with KeptVerticalScroll(id="instances", can_focus=False):
                yield StatusLine(id="no-instances")
                with KeptVertical(id="inst-charts"):
                    yield HistoryChart("generation tok/s", id="ic-tok")
                    yield HistoryChart("requests waiting", id="ic-wait")
        yield Footer()

    def on_mount(self) -> None:
        if self.requested_theme and self.requested_theme not in self.available_themes:
            self.notify(f"theme {self.requested_theme!r} not found; available: {', '.join(self._theme_names)}",
                        severity="warning", markup=False)
        if self.theme_errors:
            self.notify("Broken theme files skipped:\n" + "\n".join(self.theme_errors), severity="warning",
                        timeout=10, markup=False)
        # the main screen's widgets, kept: other screens may be on top when a poll lands
        self._top = self.query_one("#top", TopLine)
        self._alerts = self.query_one(AlertStrip)
        self._notice = self.query_one("#notice", StatusLine)
        self._grid = self.query_one("#gpus", Grid)
        self._inst_box = self.query_one("#instances", VerticalScroll)
        self._no_inst = self.query_one("#no-instances", StatusLine)
        self._gpu_scroll = self.query_one("#gpu-scroll", VerticalScroll)
        self._gpu_charts = self.query_one("#gpu-charts", Horizontal)
        self._inst_charts = self.query_one("#inst-charts", Vertical)
        # kept, not queried when drawn: App.query_one looks at the screen on top, and a detail or
        # chart screen may be there when a poll lands
        self._chart = {name: self.query_one(f"#{name}", HistoryChart)
                       for name in ("gc-util", "gc-power", "ic-tok", "ic-wait")}
        self._gpu_charts.display = self._inst_charts.display = False
        self._main_screen = self._grid.screen  # (self.screen may already be another one here)
        self._main_stale = False
        self.screen_change_signal.subscribe(self, self._on_screen_change)
        self._notice.display = False
        try:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, self._hangup)
            loop.add_signal_handler(signal.SIGTERM, self._hangup)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        self.set_interval(5.0, self._check_terminal)
        self._update_layout()
        # nothing is focused until the user moves (as when the first cards came later than the
        # screen's auto-focus): the poll thread can answer before the screen settles its focus
        self._main_screen.AUTO_FOCUS = ""
        # the first snapshot (started before the UI) is drawn now when it comes within a moment:
        # the first frame then shows the GPUs, not an empty screen and the GPUs a poll later
        # (~0.1 s more). A slow driver (nvmlInit can take seconds) only delays it by that moment.
        first = getattr(self.source, "first_if_ready", None)
        snap = first(self.first_wait_s) if first is not None else None
        if snap is not None:
            self.on_collected(Collected(snap, None, 0.0))
        else:
            self.poll()

    def _hangup(self) -> None:
        """The SSH connection dropped (SIGHUP) or we were asked to stop (SIGTERM): leave at once.
        Restoring a terminal that is gone can block, so a watchdog ends the process if the
        orderly exit has not finished within two seconds: never a spinning orphan."""
        self._stopping = True
        watchdog = threading.Timer(2.0, os._exit, args=(0,))
        watchdog.daemon = True
        watchdog.start()
        self.exit(return_code=0)

    def _check_terminal(self) -> None:
        if self.is_headless:
            return
        try:
            if not os.isatty(sys.__stdout__.fileno()):
                self._hangup()
        except (OSError, ValueError, AttributeError):
            self._hangup()

    def on_resize(self) -> None:
        self._update_layout()

    def _gpu_count(self) -> int:
        return len(self.snapshot.gpus) if self.snapshot else 0

    def _instance_rows(self) -> int:
        """Rows the instance (and pool) cards take (border included)."""
        # the box's own children: a CSS query walks and matches every descendant, each tick
        return sum(len(c._lines) + 2 for c in self._inst_box.children if isinstance(c, Card))

    def _update_layout(self) -> None:
        if not hasattr(self, "_main_screen"):  # a resize before the first mount
            return
        if self._stopping or not self.screen_stack or not self._grid.is_attached:
            return  # a deferred call landing while the app shuts down
        w, h = self.size
        n = self._gpu_count()
        n_inst = len(self.snapshot.instances) if self.snapshot else 0
        alert_w = max(20, w - 2)
        inst_rows = self._instance_rows()
        card_h = max((len(gpu_card_lines(g, None, 40)) for g in self.snapshot.gpus), default=7) + 2 \
            if self.snapshot else CARD_HEIGHT
        lay = plan(w, h, n, self._alerts.lines_needed(alert_w), n_inst, inst_rows, card_h)
        self._layout_for = (w, h, n, n_inst, inst_rows, len(self._alerts.alerts))
        self.layout_plan = lay
        # the widgets' own screen: the one at the bottom of the stack (during on_mount, self.screen may
        # be another object than the screen the stack ends up with)
        screen = self._grid.screen
        screen.set_class(lay.narrow, "-narrow")
        if lay.compact != self.compact:
            self.compact = lay.compact
            for card in self._grid.query(GpuCard):
                card.invalidate()
        screen.set_class(bool(lay.compact), "-compact")
        screen.set_class(lay.compact == "tight", "-tight")
        self._grid.styles.grid_size_columns = 1 if lay.compact else min(lay.cols, max(1, n))
        if lay.narrow:
            self._gpu_scroll.styles.width = "1fr"
            self._inst_box.styles.width = "1fr"
        else:
            self._gpu_scroll.styles.width = lay.gpu_width if lay.mode == "cards" else "1fr"
            self._inst_box.styles.width = "1fr" if lay.mode == "cards" else lay.instance_width
        self._alerts.fit(alert_w, lay.alert_lines)
        self._charts_at = -1e9  # new sizes: draw the charts now
        charts = self._gpu_charts
        charts.display = lay.gpu_chart_rows > 0
        if lay.gpu_chart_rows:
            charts.styles.height = lay.gpu_chart_rows
            charts.styles.layout = "horizontal" if lay.gpu_charts_side_by_side else "vertical"
            # stacked, the second chart only where both have room to be read
            self._chart["gc-power"].display = (lay.gpu_charts_side_by_side
                                                   or lay.gpu_chart_rows >= 2 * CHART_MIN_ROWS)
        main_rows = h - 2 - (lay.alert_lines if self._alerts.alerts else 0)
        spare = main_rows - inst_rows if not lay.narrow else 0
        self._inst_chart_rows = spare if (spare >= CHART_MIN_ROWS and n_inst) else 0
        self._inst_charts.display = self._inst_chart_rows > 0
        if self._inst_chart_rows:
            self._inst_charts.styles.height = self._inst_chart_rows
            self._chart["ic-wait"].display = self._inst_chart_rows >= 2 * CHART_MIN_ROWS
        if self.snapshot is not None:
            self._paint(self.snapshot)

    # ---- polling --------------------------------------------------------------------
    def poll(self) -> None:
        """Poll now (the first poll, or resuming), rather than at the next due time."""
        if self._stopping:
            return
        self._poll_now = True
        self._start_poller(time.monotonic())
        self._poll_wanted.set()

    def _start_poller(self, due: float) -> None:
        # a daemon thread, not a Textual thread worker: those run on the event loop's executor,
        # which the exit waits for -- q would wait out a slow NVML call or a hung collector.
        # The result still comes back as a message (post_message is thread-safe).
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll_loop, args=(due,), name="gpuwatch-poll", daemon=True)
            self._poller.start()

    def on_unmount(self) -> None:
        # the app is ending (quit, hangup, a test's run_test): the poll thread leaves its wait
        self._stopping = True
        self._poll_wanted.set()

    def _period(self) -> float:
        return max(self.interval, self.paused_every_s) if self.paused else self.poll_period()

    def _next_due(self, started: float, posted: float) -> float:
        """When the poll after one that started and posted at these times is due (a poll that
        took longer than the period stretches it)."""
        return max(started + self._period(), posted + self.min_poll_delay)

    def _poll_loop(self, due: float) -> None:
        """The poll thread keeps its own time: it sleeps until the next poll is due, polls, posts
        the result to the UI thread and works out when the next one is due. Nothing wakes it
        for a poll (a timer on the UI thread did, before: two wake-ups of the UI thread a poll
        and one of this thread, with the two handing the interpreter lock back and forth; now
        the result's message is the UI thread's only one). The UI thread wakes it only when the
        timing changes (pause, resume, a new interval), to poll at once, or to stop. A poll is
        not made while the last one's result waits to be applied: a busy UI thread never has
        results queue up."""
        posted = started = time.monotonic()
        while self._wait_until_due(due, started, posted):
            self._poll_now = False
            self._polling = True
            started = time.monotonic()
            self._collect()
            posted = time.monotonic()
            due = self._next_due(started, posted)

    def _wait_until_due(self, due: float, started: float, posted: float) -> bool:
        """(On the poll thread.) Wait until the poll is due (or asked for now) and the last
        result has been applied; False when the app is stopping."""
        while not self._stopping:
            now = time.monotonic()
            if not (self._poll_now or now >= due):
                if self._poll_wanted.wait(due - now):
                    # woken before its time: the interval may have changed (pausing wakes
                    # nothing: the poll already due comes, then the paused period)
                    self._poll_wanted.clear()
                    due = self._next_due(started, posted)
                continue
            self._poll_waits_for_ui = True
            if self._polling:  # the UI thread has not applied the last result: it wakes us
                self._poll_wanted.wait()
                self._poll_wanted.clear()
                continue
            self._poll_waits_for_ui = False
            return True
        return False

    def _collect(self) -> None:
        start = time.monotonic()
        try:
            snap = self.source.next()
            error = None
        except StopIteration:
            snap, error = None, "end"
        except Exception as e:  # a collector must never take the UI down
            snap, error = None, f"{type(e).__name__}: {e}"
        # post_message is thread-safe and never blocks: a worker must not wait on an app that
        # is shutting down (call_from_thread would, and exit waits for the worker: deadlock)
        if not self._stopping:
            self.post_message(Collected(snap, error, time.monotonic() - start))

    def on_collected(self, message: "Collected") -> None:
        self._apply_collected(message.snapshot, message.error, message.elapsed)
        if not self._stopping:
            self.after_poll(message.snapshot, message.error)
        self._first_polled = True

    def post_display_hook(self) -> None:
        """After each frame is sent to the terminal (Textual's hook): the first one that shows the
        first poll's GPUs (or its error) runs ``on_first_frame``, which starts what that frame
        did not need (the inference servers' collector)."""
        if self._on_first_frame is None or not self._first_polled:
            return
        snap = self.snapshot
        if snap is not None and snap.gpus and not any(c.region for c in self._grid.query(GpuCard)):
            return  # the cards are mounted but not laid out yet
        hook, self._on_first_frame = self._on_first_frame, None
        hook()

    def after_poll(self, snap: Snapshot | None, error: str | None) -> None:
        """Called on the UI thread after each poll was shown (``snap`` None when it failed or
        the source ended): the extension point for apps built on this one."""

    def _apply_collected(self, snap: Snapshot | None, error: str | None, elapsed: float) -> None:
        self._polling = False
        if self._poll_waits_for_ui:  # (set before it read _polling: see _poll_loop)
            self._poll_wanted.set()
        if self._stopping:
            return
        self._own_cpu = self._own_cpu_since_last()
        if error == "end":
            self.collector_error = None
            self.on_source_end()
        elif error is not None:
            self.collector_error = error
            self._show_notice(Content.assemble((" collector error ", "$error reverse"), " ", error,
                                               ("  (retrying)", "$text-muted")))
        else:
            self.collector_error = None
            self.snapshot = snap
            self._notify_new_critical()
            if not self.paused:
                self._paint(snap)
            elif self._shown is not None and not self._main_covered():
                self._paint_top(self._shown)  # frozen figures, but the self-cost of being paused
        self._schedule_next(elapsed)

    def poll_period(self) -> float:
        """Seconds from one poll to the next while live (the fleet's is paced by Prometheus)."""
        return self.interval

    def _own_cpu_since_last(self) -> float:
        """This process's CPU since the last call, in % of one core."""
        t, now = os.times(), time.monotonic()
        busy = t.user + t.system
        pct = 100 * (busy - self._own_busy) / (now - self._own_at) if now > self._own_at else self._own_cpu
        self._own_at, self._own_busy = now, busy
        return pct

    def on_source_end(self) -> None:
        self.paused = True

    def _schedule_next(self, elapsed: float) -> None:
        # the poll thread times the polls after its first (see _poll_loop); the first snapshot,
        # taken before the UI started, starts it
        self._start_poller(time.monotonic() + max(self.min_poll_delay, self._period() - elapsed))

    def _show_notice(self, content: Content | None) -> None:
        notice = self._notice
        notice.display = content is not None
        if content is not None:
            notice.show(content)

    # ---- painting -----------------------------------------------------------------------
    def _main_covered(self) -> bool:
        """Is a full screen (detail, charts, alert history) on top of the dashboard? (A modal one,
        such as help, lets it show through.)"""
        top = self.screen_stack[-1] if self.screen_stack else None
        return top is not None and top is not self._main_screen and not isinstance(top, ModalScreen)

    def _on_screen_change(self, screen: Screen) -> None:
        if screen is self._main_screen and self._main_stale and self.snapshot is not None:
            self._main_stale = False
            self._paint(self.snapshot)  # what was collected while it was covered, at once

    def _paint(self, snap: Snapshot) -> None:
        if not self.screen_stack:  # the app is being torn down
            return
        if hasattr(self, "_main_screen") and self._main_covered():
            # nobody sees the dashboard: build nothing for it, only for the screen on top
            self._main_stale = True
            self._paint_screens(snap)
            return
        self._shown = snap
        self._paint_top(snap)
        self._alerts.refresh_from(snap.alerts)
        if getattr(self, "_layout_for", None) != (self.size.width, self.size.height, len(snap.gpus),
                                                  len(snap.instances), self._instance_rows(), len(snap.alerts)):
            self._update_layout()
            return  # it painted
        if snap.nvml_error and not snap.gpus:
            self._show_notice(Content.assemble((" no GPUs ", "$warning reverse"), " ", snap.nvml_error))
        elif self.collector_error is None:
            self._show_notice(None)
        self._paint_gpus(snap)
        self._paint_instances(snap)
        paint_pools(self._inst_box, snap, self._pool_ids)
        self._paint_charts()
        self._paint_screens(snap)

    def _paint_screens(self, snap: Snapshot) -> None:
        for screen in self.screen_stack[1:]:
            # a screen pushed a moment ago may not have its widgets yet (it draws itself on
            # mount), and one being torn down at exit has lost them: skip it either way
            if screen.is_mounted and hasattr(screen, "refresh_from"):
                try:
                    screen.refresh_from(snap)
                except NoMatches:
                    pass

    def _paint_top(self, snap: Snapshot) -> None:
        """The top line, in the longest form that fits: the self-cost (how often, at what cost)
        is never the part that is cut."""
        width = self.size.width - 2
        every = self.poll_period()
        long = f"  self {self._own_cpu:.1f}% CPU · {snap.collect_ms or 0:.1f} ms/tick · every {every:g}s"
        short = f"  {self._own_cpu:.0f}%cpu {snap.collect_ms or 0:.0f}ms every {every:g}s"
        # narrower heads: the GPU model and CUDA version go, then the driver version (at 80
        # columns, paused: the PAUSED badge needs its room)
        for narrow, cost in ((0, long), (0, short), (1, short), (2, short)):
            head = self._top_head(snap, narrow)
            if not self.show_self_cost:
                cost = ""
            if head.cell_length + len(cost) <= width:
                break
        self._top.show_line(Content.assemble(head, (cost, "$text-muted")))

    def _top_head(self, snap: Snapshot, narrow: int) -> Content:
        parts: list = [(" gpuwatch ", "$primary reverse bold")] + self.top_extra(snap, narrow) + [" ", (snap.host, "bold")]
        names = {g.name for g in snap.gpus if g.name}
        if len(names) == 1 and not narrow:
            parts += [("  ", ""), f"{len(snap.gpus)}× {short_gpu_name(names.pop())}"]
        if snap.driver_version and narrow < 2:
            parts += [("  drv " if narrow else "  driver ", "$text-muted"), snap.driver_version]
        if snap.cuda_version and not narrow:
            parts += [("  CUDA ", "$text-muted"), snap.cuda_version]
        if snap.source == "simulated":
            parts += ["  ", (" SIM " if narrow else f" SIMULATED {snap.scenario or ''} ", "$secondary reverse")]
        parts += [("  ", ""), (snap.time[11:19] + "Z", "$text-muted")]
        if self.paused:
            parts += ["  ", (" PAUSED ", "$warning reverse bold")]
        return Content.assemble(*parts)

    def top_extra(self, snap: Snapshot, narrow: int = 0) -> list:
        """Parts of the top line after the name, for apps built on this one; ``narrow`` as in
        :meth:`_top_head` (0: room for everything)."""
        return []

    def _paint_gpus(self, snap: Snapshot) -> None:
        grid = self._grid
        cards = {c.index: c for c in grid.children if isinstance(c, GpuCard)}
        wanted = [g.index for g in snap.gpus]
        if sorted(cards) != sorted(wanted):
            for c in cards.values():
                c.remove()
            new = [GpuCard(i) for i in wanted]
            grid.mount_all(new)
            cards = {c.index: c for c in new}
            self.call_after_refresh(self._update_layout)
            if new and (self.focused is None or not self.focused.is_attached):
                # something is always selected, so enter and arrows act on what the user sees
                self.call_after_refresh(new[0].focus, False)
        hist = self.source.history
        for g in snap.gpus:
            cards[g.index].refresh_from(g, hist.gpu.get(g.index) if hist else None, self.compact,
                                        snap.source != "prometheus")

    def _paint_instances(self, snap: Snapshot) -> None:
        box = self._inst_box
        empty = self._no_inst
        empty.display = not snap.instances
        if not snap.instances:
            empty.show(no_instances_text(snap))
        cards = {c.name_key: c for c in box.children if isinstance(c, InstanceCard)}
        names = [i.name for i in snap.instances]
        for name, card in cards.items():
            if name not in names:
                card.remove()
        hist = self.source.history
        for inst in snap.instances:
            card = cards.get(inst.name)
            if card is None:
                key = self._inst_ids.setdefault(inst.name, f"inst-{len(self._inst_ids)}")
                card = InstanceCard(inst.name, id=key)
                box.mount(card, before=self._inst_charts)
            card.refresh_from(inst, hist.instance_tok.get(inst.name) if hist else None)

    def _paint_charts(self) -> None:
        """The history charts in the rows the cards leave: per-GPU utilization and power, per
        instance generation tok/s and requests waiting."""
        hist = self.source.history
        if not hist:
            return
        # at most every CHART_EVERY_S, whatever the refresh rate (a new layout draws them at once)
        now = time.monotonic()
        if now - self._charts_at < CHART_EVERY_S:
            return
        self._charts_at = now
        epochs = list(hist.epochs)
        if self._gpu_charts.display:
            gpus = sorted(hist.gpu)
            self._chart["gc-util"].set_data(
                [(f"GPU {i}", list(hist.gpu[i]["util"])) for i in gpus], (0, 100), epochs)
            if self._chart["gc-power"].display:
                self._chart["gc-power"].set_data(
                    [(f"GPU {i}", list(hist.gpu[i]["power"])) for i in gpus], None, epochs, 50.0)
        if self._inst_charts.display:
            names = [i.name for i in self.snapshot.instances] if self.snapshot else []
            series = {n: hist.instance[n] for n in names if n in hist.instance}
            self._chart["ic-tok"].set_data(
                [(n, list(s["tok"])) for n, s in series.items()], None, epochs, 10.0)
            if self._chart["ic-wait"].display:
                self._chart["ic-wait"].set_data(
                    [(n, list(s["wait"])) for n, s in series.items()], None, epochs, 4.0)

    def _notify_new_critical(self) -> None:
        log = self.source.alert_log
        for a in (log.new_critical if log is not None else []):
            # what happened, briefly: the alert strip has the whole sentence and the remedy
            what = a.message.split(";")[0]
            what = what if len(what) <= 90 else what[:89] + "…"
            self.notify(what, title=f"critical: {a.subject}", severity="error", timeout=6, markup=False)

    # ---- actions -------------------------------------------------------------------------
    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if self.snapshot is not None:
            self._paint(self.snapshot)
        if not self.paused and not self._polling and not self._stopping:
            self.poll()  # not the rest of the slow paused wait

    def action_next_theme(self) -> None:
        names = self._theme_names or [self.theme]
        i = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(i + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=1.5, markup=False)

    def _step_interval(self, direction: int) -> None:
        steps = list(INTERVALS)
        i = min(range(len(steps)), key=lambda k: abs(steps[k] - self.interval))
        self.interval = steps[max(0, min(len(steps) - 1, i + direction))]
        # the poll thread's wait was for the old interval: it works out its due time again (a
        # pending 30 s sleep would freeze a screen that now says "every 1s")
        self._poll_wanted.set()
        if self.snapshot is not None:
            self._paint_top(self.snapshot)

    def action_faster(self) -> None:
        self._step_interval(-1)

    def action_slower(self) -> None:
        self._step_interval(1)

    def action_move(self, dx: int, dy: int) -> None:
        cards = list(self._grid.query(GpuCard))
        if not cards:
            return
        focused = self.focused
        if not isinstance(focused, GpuCard):
            cards[0].focus()
            return
        cols = 1 if self.compact else max(1, int(self._grid.styles.grid_size_columns or 1))
        i = cards.index(focused) + dx + dy * cols
        if 0 <= i < len(cards):
            cards[i].focus()
            cards[i].scroll_visible()

    @on(Card.Selected)
    def _open_detail(self, event: Card.Selected) -> None:
        from .screens import GpuDetailScreen, InstanceDetailScreen
        if isinstance(event.card, GpuCard) and self.snapshot is not None:
            self.push_screen(GpuDetailScreen(event.card.index, self.snapshot, self.source.history))
        elif isinstance(event.card, InstanceCard) and event.card.instance is not None:
            self.push_screen(InstanceDetailScreen(event.card.name_key, self.snapshot))

    def action_help(self) -> None:
        from .screens import HelpScreen
        self.push_screen(HelpScreen())

    def action_chart(self) -> None:
        from .screens import ChartScreen
        focused = self.focused
        if isinstance(focused, InstanceCard):  # an instance's own tok/s, requests and latencies
            self.push_screen(ChartScreen(self.source.history, None, self.snapshot, instance=focused.name_key))
            return
        index = focused.index if isinstance(focused, GpuCard) else None
        self.push_screen(ChartScreen(self.source.history, index, self.snapshot))

    def action_alert_history(self) -> None:
        from .screens import AlertHistoryScreen
        self.push_screen(AlertHistoryScreen(self.source.alert_log, self.snapshot))

    def action_bench(self) -> None:
        focused = self.focused
        if not isinstance(focused, InstanceCard) or focused.instance is None:
            self.notify("Select an inference instance (tab to it), then press b to benchmark it.", markup=False)
            return
        inst = focused.instance
        if not self.source.live:
            self.notify("Benchmarks run against live servers only.", markup=False)
            return
        self.notify(f"benchmarking {inst.name}…", timeout=3, markup=False)
        self.run_worker(lambda: self._bench(inst), thread=True, exit_on_error=False, group="bench")

    def _bench(self, inst) -> None:
        try:
            from ...collect.bench import run_bench
            result = run_bench(inst.url, inst.kind, model=inst.models[0].name if inst.models else None, runs=1)
            target = self.source.bench_target
            if target is not None:
                target.record_bench(inst.name, result)
            msg = (f"{inst.name}: {result.generation_tokens_per_s:.1f} tok/s"
                   if result.generation_tokens_per_s is not None else f"{inst.name}: {result.error}")
        except Exception as e:
            msg = f"{inst.name}: benchmark failed: {e}"
        self.post_message(BenchDone(msg))

    def on_bench_done(self, message: "BenchDone") -> None:
        self.notify(message.text, markup=False)

    # ---- screenshots ------------------------------------------------------------------------
    screenshot_dir: str | None = None  # None: the working directory

    def export_screenshot(self, *, title: str | None = None, simplify: bool = False) -> str:
        from .svg import portable_svg
        return portable_svg(super().export_screenshot(title=title, simplify=simplify))

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        # Textual saves to ~/Downloads, which a server does not have: the working directory (or
        # the configured folder) instead, and the notification says where
        return super().deliver_screenshot(filename, path or self.screenshot_dir or os.getcwd(), time_format)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Pause / resume", "Freeze the screen (collection and alerts go on, every 10 s)",
                            self.action_toggle_pause)
        yield SystemCommand("Charts", "History of utilization, memory, temperature, power", self.action_chart)
        yield SystemCommand("Alert history", "Alerts raised and cleared", self.action_alert_history)
        yield SystemCommand("Next theme", "Cycle gpuwatch's themes", self.action_next_theme)

    async def action_quit(self) -> None:
        self._stopping = True
        self.exit()


def run_dashboard(settings: Settings) -> int:
    from ...pipeline import close_within
    from ...runtime import build_monitor, settle_heap_later

    # the GPUs first: the inference servers are looked for once the first frame is on screen
    first_frame = threading.Event()
    monitor = build_monitor(settings, servers_after=first_frame)
    settle_heap_later(after=first_frame)
    source = LiveSource(monitor)
    source.start()  # the first NVML sample is taken while Textual starts
    app = GpuWatchApp(source, interval=settings.interval, theme=settings.theme, on_first_frame=first_frame.set)
    try:
        app.run()
    finally:
        close_within(monitor.close, 0.5)  # a poll stuck in a slow call must not hold up the exit
    return app.return_code or 0

