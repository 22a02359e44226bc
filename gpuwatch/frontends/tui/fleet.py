"""The fleet screen: every host a Prometheus server knows, one row each; enter drills into a
host's usual dashboard (fed from Prometheus), escape comes back.

The app is the normal dashboard (:class:`GpuWatchApp`) whose source returns the *selected*
host's snapshot; the fleet table is a screen pushed on top of it. One refresh (two PromQL
queries for all hosts, a third once a minute) feeds both, on the dashboard's one polling loop:
polls never overlap, a slow Prometheus stretches the period, and the targets' scrape interval
paces it (``FleetSource.pace``). A Prometheus that is down, slow or answering errors is the
status line's reason; the rows then keep their last values, marked stale.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer

from ...config import Settings
from ...fleet.source import FleetReading, FleetSource
from ...fleet.summary import summarize
from ...model import Snapshot
from ..text import fleet_alert_text, fleet_hot_text, fleet_state_text, fleet_tok_text, fleet_util_text
from ..units import fmt_bytes
from .app import GpuWatchApp
from .hosttable import HostTable
from .widgets import InstanceCard, StatusLine

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


class FleetError(Exception):
    """Prometheus gave nothing this refresh (the reason is the message)."""


class FleetHostSource:
    """The dashboard's source: refreshes the whole fleet, returns the selected host."""

    live = False

    def __init__(self, fleet: FleetSource) -> None:
        self.fleet = fleet
        self.selected: str | None = None
        self.reading: FleetReading | None = None
        self.good: FleetReading | None = None  # the last reading that had hosts

    def next(self) -> Snapshot:
        r = self.fleet.refresh()
        self.reading = r
        if r.hosts:
            self.good = r
        if r.error and not r.hosts:
            raise FleetError(r.error)
        return self.current()

    def current(self) -> Snapshot:
        r = self.good
        snap = r.host(self.selected) if (r is not None and self.selected) else None
        if snap is None:
            return Snapshot(time=r.time if r else "1970-01-01T00:00:00.000Z", host=self.selected or "fleet",
                            source="prometheus", nvml_error="no data for this host in Prometheus")
        return snap

    @property
    def history(self):
        return self.fleet.history(self.selected) if self.selected else None

    @property
    def alert_log(self):
        return self.fleet.engines.get(self.selected) if self.selected else None

    bench_target = None

    def close(self) -> None:
        self.fleet.close()


class FleetScreen(Screen):
    COLUMNS = (("host", "Host"), ("gpus", "GPUs"), ("util", "Util avg/max"), ("hot", "Hottest / slowdown"),
               ("mem", "Memory"), ("tok", "tok/s"), ("alerts", "Alerts"), ("state", "State"))

    WIDTHS = {"alerts": 22, "state": 22, "hot": 18}

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._shown_for: tuple | None = None  # the last (reading, good) shown: drawn again on a resize

    def compose(self) -> ComposeResult:
        yield StatusLine(id="fleet-top")
        yield HostTable(id="hosts")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#hosts", HostTable)
        # cells change width as hosts change state: the columns that grow have a fixed width
        table.set_columns([(key, label, self.WIDTHS.get(key)) for key, label in self.COLUMNS])
        self.query_one("#fleet-top", StatusLine).show(
            Content.assemble((" gpuwatch fleet ", "$primary reverse bold"), " ", ("via ", "$text-muted"), self.url,
                             ("  waiting for the first answer…", "$text-muted")))
        table.focus()
        app = self.app
        if isinstance(getattr(app, "source", None), FleetHostSource) and app.source.reading is not None:
            self.show_reading(app.source.reading, app.source.good)

    def show_reading(self, reading: FleetReading | None, good: FleetReading | None) -> None:
        self._shown_for = (reading, good)
        shown = reading if reading is not None and reading.hosts else good
        width = self.size.width
        # the longest form that fits on one line: the key hint goes first, then the refresh's
        # figures shrink, then the "via", then the answer's time (a Prometheus error is never
        # cut: it wraps if it must)
        for narrow in range(5):
            line = self._status(reading, shown, narrow)
            if line.cell_length <= width:
                break
        self.query_one("#fleet-top", StatusLine).show(line)
        if shown is not None:
            self._fill(shown, stale=shown is not reading)

    def on_resize(self) -> None:
        if self._shown_for is not None:
            self.show_reading(*self._shown_for)

    def _status(self, reading: FleetReading | None, shown: FleetReading | None, narrow: int) -> Content:
        parts: list = [(" gpuwatch fleet ", "$primary reverse bold"), " "]
        if narrow < 3:
            parts.append(("via ", "$text-muted"))
        parts.append(self.url)
        if shown is not None:
            gpus = sum(len(s.gpus) for s in shown.hosts)
            parts += ["  ", (f"{len(shown.hosts)} hosts · {gpus} GPUs", "bold")]
        if reading is not None:
            if narrow < 4:
                parts.append(("  " + reading.time[11:19] + "Z", "$text-muted"))
            every = self.app.poll_period()
            parts.append((f"  {reading.queries} queries · {reading.refresh_ms:.0f} ms · every {every:g} s"
                           if narrow < 2 else f"  {reading.refresh_ms:.0f} ms/{every:g}s", "$text-muted"))
            if not narrow:
                parts.append(("  enter: open host", "$text-muted"))
            if reading.error:
                stale = "  (showing the last answer)" if shown is not None and shown is not reading else ""
                parts += ["  ", (" PROMETHEUS ", "$error reverse bold"), " ", reading.error, (stale, "$text-muted")]
        return Content.assemble(*parts)

    def _fill(self, reading: FleetReading, stale: bool) -> None:
        self.query_one("#hosts", HostTable).set_rows([(snap.host, self._cells(snap, stale)) for snap in reading.hosts])

    @staticmethod
    def _cells(snap: Snapshot, stale: bool) -> list[Text]:
        r = summarize(snap)
        dim = "dim" if stale else ""
        used = sum(g.memory_used_bytes or 0 for g in snap.gpus)
        total = sum(g.memory_total_bytes or 0 for g in snap.gpus)
        margin = r.hot_margin_c
        hot_style = "bold red" if margin is not None and margin <= 0 else "yellow" if margin is not None and margin <= 5 \
            else dim
        hot = fleet_hot_text(r) if r.hot_index is None else f"GPU {r.hot_index} {fleet_hot_text(r)}"
        gpus = f"{r.gpus}" + (f" ({r.lost} lost)" if r.lost else "")
        state = "stale (Prometheus)" if stale and r.state == "up" else fleet_state_text(r)
        if r.state != "up":
            dim = "dim"  # its numbers are not current
        state_style = "bold red" if r.state == "down" else "yellow" if r.state == "stale" or r.problem else dim
        return [Text(r.host, style="bold"), Text(gpus, style="bold red" if r.lost else dim),
                Text(fleet_util_text(r), style=dim), Text(hot, style=hot_style),
                Text(f"{fmt_bytes(used)} / {fmt_bytes(total)}" if total else "—", style=dim),
                Text(fleet_tok_text(r), style=dim), Text(fleet_alert_text(r), style=SEVERITY_STYLE.get(r.worst or "", dim)),
                Text(state, style=state_style)]

    def on_host_table_selected(self, event: HostTable.Selected) -> None:
        self.app.open_host(event.key)


class FleetApp(GpuWatchApp):
    BINDINGS = [Binding("escape", "fleet", "All hosts")]

    def __init__(self, source: FleetHostSource, url: str, **kw) -> None:
        super().__init__(source, **kw)
        self.url = url

    def on_mount(self) -> None:
        super().on_mount()
        self.push_screen(FleetScreen(self.url))

    # after a refresh slower than the interval, a short pause before the next one
    min_poll_delay = 0.05

    def poll_period(self) -> float:
        return self.source.fleet.pace(self.interval)

    def after_poll(self, snap, error) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, FleetScreen):
                screen.show_reading(self.source.reading, self.source.good)

    def open_host(self, host: str) -> None:
        changed = host != self.source.selected
        self.source.selected = host
        self.snapshot = self.source.current()
        while isinstance(self.screen, FleetScreen):
            self.pop_screen()
        self.call_later(self._show_host, changed)

    async def _show_host(self, changed: bool) -> None:
        base = self.screen_stack[0]
        if changed:  # another host's cards: drop the old ones before the same ids are mounted again
            grid = getattr(self, "_grid", None) or base.query_one("#gpus")
            await grid.remove_children()
            await base.query(InstanceCard).remove()
        if self.snapshot is not None:
            self._paint(self.snapshot)

    def action_fleet(self) -> None:
        if not isinstance(self.screen, FleetScreen):
            self.push_screen(FleetScreen(self.url))

    def top_extra(self, snap: Snapshot, narrow: int = 0) -> list:
        # the hint goes first when the line is short of room (the footer says "esc All hosts" too):
        # how often and at what cost must stay whole (at 80 columns "every 2.5s" was cut)
        return [" ", (" FLEET ", "$accent reverse")] + ([] if narrow else [(" esc: all hosts ", "$text-muted")])


def run_fleet_dashboard(settings: Settings, url: str) -> int:
    from ...runtime import settle_heap_later

    fleet = FleetSource(url, timeout_s=settings.prometheus_timeout_s, alert_config=settings.alerts)
    source = FleetHostSource(fleet)
    app = FleetApp(source, url, interval=settings.interval, theme=settings.theme)
    settle_heap_later()
    try:
        app.run()
    finally:
        source.close()
    return app.return_code or 0
