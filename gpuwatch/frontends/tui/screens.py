"""Secondary screens: GPU detail, instance detail, charts, alert history, help."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Markdown, Static

from ...model import Snapshot
from ..sources import AlertLog
from ..units import NA, fmt_bytes, fmt_pct, fmt_rate
from .render import alert_line, instance_lines
from .widgets import PlotextChart


def _t(text) -> str:
    """Untrusted text for Content.assemble parts (plain strings there are never markup)."""
    return "" if text is None else str(text)


def _cell(text) -> Text:
    """Untrusted text for a DataTable cell: a Text object, so it is never parsed as markup."""
    return Text("" if text is None else str(text))


class GpuDetailScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("c", "chart", "Chart")]

    def __init__(self, index: int, snapshot: Snapshot, history) -> None:
        super().__init__()
        self.index = index
        self.history = history
        self._first = snapshot

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="detail-head", markup=False)
            yield Static(id="detail-facts", markup=False)
            yield Static(Content.styled("Processes", "bold $primary"), markup=False)
            yield DataTable(id="procs", cursor_type="row", zebra_stripes=True)
            yield Static(Content.styled("Topology to the other GPUs", "bold $primary"), markup=False)
            yield Static(id="detail-topo", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#procs", DataTable)
        for key, label in (("pid", "PID"), ("user", "User"), ("name", "Name"), ("mem", "GPU mem"),
                           ("cpu", "CPU %"), ("rss", "RSS"), ("cmd", "Command line")):
            table.add_column(label, key=key)
        self.refresh_from(self._first)

    def action_chart(self) -> None:
        self.app.push_screen(ChartScreen(self.history, self.index, self._first))

    def refresh_from(self, snap: Snapshot) -> None:
        g = snap.gpu(self.index)
        if g is None:
            return
        self._first = snap
        head = Content.assemble((f"GPU {g.index}", "bold"), "  ", _t(g.name), "   ", (_t(g.uuid), "$text-muted"),
                                ("   bus ", "$text-muted"), _t(g.pci_bus_id))
        if g.instances:
            head = Content.assemble(head, ("   used by ", "$text-muted"), (", ".join(g.instances), "$secondary"))
        if g.lost:
            head = Content.assemble(head, "  ", (" LOST ", "$error reverse bold"))
        self.query_one("#detail-head", Static).update(head)

        def row(label, value):
            return Content.assemble((f"{label:<22}", "$text-muted"), value)

        temp = NA if g.temperature_c is None else f"{g.temperature_c:.0f} °C"
        margin = (NA if g.temperature_c is None or g.temperature_slowdown_c is None
                  else f"{g.temperature_slowdown_c - g.temperature_c:.0f} °C below slowdown")
        facts = [
            row("utilization", f"GPU {fmt_pct(g.utilization_gpu_pct)}, memory bandwidth {fmt_pct(g.utilization_memory_pct)}"),
            row("memory", f"{fmt_bytes(g.memory_used_bytes)} used of {fmt_bytes(g.memory_total_bytes)}"
                          f" (driver reserved {fmt_bytes(g.memory_reserved_bytes)})"),
            row("temperature", f"{temp} ({margin})"),
            row("thresholds", f"slowdown {NA if g.temperature_slowdown_c is None else f'{g.temperature_slowdown_c:.0f}'} °C, "
                              f"shutdown {NA if g.temperature_shutdown_c is None else f'{g.temperature_shutdown_c:.0f}'} °C, "
                              f"max operating {NA if g.temperature_max_operating_c is None else f'{g.temperature_max_operating_c:.0f}'} °C"),
            row("power", f"{NA if g.power_w is None else f'{g.power_w:.0f}'} W of {NA if g.power_limit_w is None else f'{g.power_limit_w:.0f}'} W limit"
                         f" (default {NA if g.power_default_limit_w is None else f'{g.power_default_limit_w:.0f}'} W)"),
            row("clocks", f"SM {NA if g.sm_clock_mhz is None else g.sm_clock_mhz}/{NA if g.sm_clock_max_mhz is None else g.sm_clock_max_mhz} MHz,"
                          f" memory {NA if g.mem_clock_mhz is None else g.mem_clock_mhz}/{NA if g.mem_clock_max_mhz is None else g.mem_clock_max_mhz} MHz,"
                          f" P{NA if g.pstate is None else g.pstate}"),
            row("fan", NA if g.fan_pct is None else f"{g.fan_pct:.0f}%"),
            row("clock events", ", ".join(g.throttle_reasons) or "none"),
            row("PCIe", f"Gen{NA if g.pcie.gen is None else g.pcie.gen} x{NA if g.pcie.width is None else g.pcie.width}"
                        f" (max Gen{NA if g.pcie.max_gen is None else g.pcie.max_gen} x{NA if g.pcie.max_width is None else g.pcie.max_width}),"
                        f" RX {fmt_rate(g.pcie.rx_bytes_per_s)}, TX {fmt_rate(g.pcie.tx_bytes_per_s)}"),
            row("NVLink", "none" if g.nvlink is None else
                f"{g.nvlink.links_active}/{g.nvlink.links_total or '?'} links, RX {fmt_rate(g.nvlink.rx_bytes_per_s)}, "
                f"TX {fmt_rate(g.nvlink.tx_bytes_per_s)}"),
            row("ECC uncorrected", NA if g.ecc_uncorrected_volatile is None else str(g.ecc_uncorrected_volatile)),
            row("persistence mode", NA if g.persistence_mode is None else ("on" if g.persistence_mode else "off")),
            row("NUMA node", NA if g.numa_node is None else str(g.numa_node)),
            row("CPU affinity", _cpulist(g.cpu_affinity)),
        ]
        if g.fabric_state:
            facts.append(row("NVSwitch fabric", g.fabric_state.replace("_", " ")))
        if g.mig_mode is not None:
            facts.append(row("MIG", "on" if g.mig_mode else "off"))
        for d in g.mig_devices:  # names and pids come from the driver: plain text, never markup
            facts.append(row(f"  MIG device {d.index}", Content.assemble(
                _t(d.name), f"  GI {NA if d.gpu_instance_id is None else d.gpu_instance_id}  ",
                f"{fmt_bytes(d.memory_used_bytes)} of {fmt_bytes(d.memory_total_bytes)}  ",
                f"pids {', '.join(map(str, d.pids)) or 'none'}")))
        for field_name, why in g.errors.items():
            facts.append(row(field_name.replace("_", " ")[:21], (why, "$warning")))
        self.query_one("#detail-facts", Static).update(Content("\n").join(facts))
        self._update_processes(g)
        topo = [Content.assemble((f"GPU {k:>2}  ", "$text-muted"), v) for k, v in
                sorted(g.topology.items(), key=lambda kv: int(kv[0]))]
        self.query_one("#detail-topo", Static).update(Content("\n").join(topo) if topo else Content("n/a"))

    def _update_processes(self, g) -> None:
        """Rows keyed by pid, updated in place (dolphie's pattern)."""
        table = self.query_one("#procs", DataTable)
        wanted = {str(p.pid): p for p in g.processes}
        for key in [k.value for k in list(table.rows) if k.value not in wanted]:
            table.remove_row(key)
        for key, p in wanted.items():
            cells = {"pid": str(p.pid), "user": _cell(p.user or "?"), "name": _cell(p.name or "?"),
                     "mem": fmt_bytes(p.used_memory_bytes), "cpu": NA if p.cpu_pct is None else f"{p.cpu_pct:.0f}",
                     "rss": fmt_bytes(p.rss_bytes), "cmd": _cell((p.cmdline or "")[:200])}
            if key in table.rows:
                for col, value in cells.items():
                    if str(table.get_cell(key, col)) != str(value):
                        table.update_cell(key, col, value)
            else:
                table.add_row(*cells.values(), key=key)


def _cpulist(cpus) -> str:
    if not cpus:
        return NA
    ranges, start, prev = [], cpus[0], cpus[0]
    for c in cpus[1:] + [None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        ranges.append(f"{start}-{prev}" if prev != start else str(start))
        if c is not None:
            start = prev = c
    return ",".join(ranges)


class InstanceDetailScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, name: str, snapshot: Snapshot) -> None:
        super().__init__()
        self.inst_name = name
        self._snap = snapshot

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="inst-head", markup=False)
            yield Static(id="inst-body", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_from(self._snap)

    def refresh_from(self, snap: Snapshot) -> None:
        inst = next((i for i in snap.instances if i.name == self.inst_name), None)
        if inst is None:
            return
        self.query_one("#inst-head", Static).update(Content.assemble(
            (inst.name, "bold"), "  ", inst.kind, "  ", (inst.url, "$text-muted"), "  ", _t(inst.version or "")))
        lines = instance_lines(inst, [], 80)
        extra = [Content.assemble(("pids ", "$text-muted"), ", ".join(str(p) for p in inst.pids) or NA)]
        if inst.gpu_memory_bytes:
            extra.append(Content.assemble(("GPU memory ", "$text-muted"), ", ".join(
                f"GPU {k}: {fmt_bytes(v)}" for k, v in sorted(inst.gpu_memory_bytes.items()))))
        if inst.preemptions_per_s is not None:
            extra.append(Content.assemble(("preemptions/s ", "$text-muted"), f"{inst.preemptions_per_s:.2f}"))
        if inst.prefix_cache_hit_pct is not None:
            extra.append(Content.assemble(("prefix cache hits ", "$text-muted"), f"{inst.prefix_cache_hit_pct:.0f}%"))
        for key, value in inst.settings.items():  # serving settings from its environment
            extra.append(Content.assemble((f"{key}=", "$text-muted"), value))
        self.query_one("#inst-body", Static).update(Content("\n").join(lines + extra))


class ChartScreen(Screen):
    """Utilization, memory, temperature and power over the last minutes, for one GPU or all."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("g", "toggle_all", "One/all GPUs")]

    def __init__(self, history, index: int | None, snapshot: Snapshot | None) -> None:
        super().__init__()
        self.history = history
        self.index = index
        self._snap = snapshot

    def compose(self) -> ComposeResult:
        yield Static(id="chart-title", markup=False)
        with Grid(id="charts"):
            yield PlotextChart("utilization %", id="c-util")
            yield PlotextChart("memory used %", id="c-mem")
            yield PlotextChart("temperature °C", id="c-temp")
            yield PlotextChart("power W", id="c-power")
        yield Footer()

    def on_mount(self) -> None:
        self._redraw()

    def action_toggle_all(self) -> None:
        if self.index is None:
            self.index = min(self.history.gpu) if self.history and self.history.gpu else None
        else:
            self.index = None
        self._redraw()

    def refresh_from(self, snap: Snapshot) -> None:
        self._snap = snap
        self._redraw()

    def _redraw(self) -> None:
        hist = self.history
        which = "all GPUs" if self.index is None else f"GPU {self.index}"
        n = len(hist.times) if hist else 0
        self.query_one("#chart-title", Static).update(Content.assemble(
            ("Charts  ", "bold $primary"), which, (f"   last {n} samples   g: one/all GPUs   esc: back", "$text-muted")))
        if not hist:
            return
        indices = sorted(hist.gpu) if self.index is None else [self.index]
        ranges = {"util": (0, 100), "mem": (0, 100), "temp": None, "power": None}
        for key in ("util", "mem", "temp", "power"):
            series = [(f"GPU {i}", list(hist.gpu[i][key])) for i in indices if i in hist.gpu]
            self.query_one(f"#c-{key}", PlotextChart).set_data(series, ranges[key])


class AlertHistoryScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, log: AlertLog | None, snapshot: Snapshot | None) -> None:
        super().__init__()
        self.alert_log = log
        self._snap = snapshot

    def compose(self) -> ComposeResult:
        yield Static(Content.styled("Active alerts", "bold $primary"), markup=False)
        yield Static(id="active", markup=False)
        yield Static(Content.styled("History (newest first)", "bold $primary"), markup=False)
        yield DataTable(id="alert-history", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#alert-history", DataTable)
        for key, label in (("time", "Time"), ("state", "State"), ("severity", "Severity"), ("subject", "Subject"),
                           ("kind", "Kind"), ("message", "Message")):
            table.add_column(label, key=key)
        self.refresh_from(self._snap)

    def refresh_from(self, snap: Snapshot | None) -> None:
        active = snap.alerts if snap is not None else []
        self.query_one("#active", Static).update(
            Content("\n").join(alert_line(a) for a in active) if active else Content.styled("none", "$text-muted"))
        events = list(self.alert_log.history) if self.alert_log is not None else []
        table = self.query_one("#alert-history", DataTable)
        # the history is bounded: compare its newest event, not its length
        newest = (len(events), repr(events[-1]) if events else None)
        if getattr(self, "_shown", None) == newest:
            return
        self._shown = newest
        table.clear()
        for ev in reversed(events):
            get = (lambda k, ev=ev: ev.get(k) if isinstance(ev, dict) else getattr(ev, k, None))
            table.add_row(_cell(str(get("time") or "")[11:19]), _cell(get("state")), _cell(get("severity")),
                          _cell(get("subject")), _cell(get("kind")), _cell(get("message")))


HELP = """\
# gpuwatch

| key | |
|---|---|
| `q` | quit |
| `?` | this help |
| `p` | pause the screen (collection and alerts go on) |
| `t` | next theme |
| `+` / `-` | refresh faster / slower |
| arrows, `tab` | move between cards |
| `enter` | details of the selected GPU or instance |
| `c` | charts (selected GPU, `g` for all) |
| `a` | alert history |
| `b` | benchmark the selected inference instance |
| `escape` | back |
| `ctrl+p` | command palette |

Temperatures are coloured against each GPU's own slowdown threshold. A PCIe link is marked
when it trained below its maximum width; idle GPUs lower the link generation on purpose.
Unknown values show as `n/a`, never 0.
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)
