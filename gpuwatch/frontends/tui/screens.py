"""Secondary screens: GPU detail, instance detail, charts, alert history, help."""

from __future__ import annotations

import textwrap

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Markdown, Static

from ...model import Snapshot
from ..sources import AlertLog
from ..units import NA, fmt_bytes, fmt_rate
from .render import alert_lines, instance_lines
from .widgets import HistoryChart


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

        facts = gpu_facts(g)
        self.query_one("#detail-facts", Static).update(Content("\n").join(facts))
        self._update_processes(g)
        topo = [Content.assemble((f"GPU {k:>2}  ", "$text-muted"), v) for k, v in
                sorted(g.topology.items(), key=lambda kv: int(kv[0]))]
        self.query_one("#detail-topo", Static).update(Content("\n").join(topo) if topo else Content.styled("not known", "$text-muted"))

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


def _n(v, fmt: str = "{}") -> str | None:
    return None if v is None else fmt.format(v)


# how the PCIe rates were measured (Pcie.rate_source), said under them: the two differ in kind.
# Lines of at most 56 cells: beside the 22-cell labels they fit an 80-column terminal unwrapped
PCIE_RATE_NOTES = {
    # nvmlDeviceGetPcieThroughput, nvml.h: "This function is querying a byte counter over a 20ms
    # interval and thus is the PCIe throughput over that interval"; gpuwatch samples it every
    # PcieSampler.PERIOD_S seconds
    "samples": ("rates: 20 ms driver samples, one every 2 s", "(no PCIe byte counters before driver R555)"),
    "counters": ("rates: byte counters, averaged over the refresh",),
}


def gpu_facts(g) -> list[Content]:
    """The detail screen's table of facts: a row only where something is known (a lost GPU is
    not a page of n/a), each value worded whole ("Gen5 x16", never "Genn/a xn/a")."""
    def row(label, value):
        return Content.assemble((f"{label:<22}", "$text-muted"), value)

    out: list[Content] = []
    if g.lost:
        out.append(row("state", Content.styled("LOST: fell off the bus (NVML: GPU is lost); no readings", "$error bold")))
        out.append(row("what to do", "check `dmesg | grep -i xid`; a GPU reset or a reboot brings it back"))
    util = [x for x in (_n(g.utilization_gpu_pct, "GPU {:.0f}%"),
                        _n(g.utilization_memory_pct, "memory bandwidth {:.0f}%")) if x]
    if util:
        out.append(row("utilization", ", ".join(util)))
    if g.memory_total_bytes is not None or g.memory_used_bytes is not None:
        reserved = f" (driver reserved {fmt_bytes(g.memory_reserved_bytes)})" if g.memory_reserved_bytes else ""
        out.append(row("memory", f"{fmt_bytes(g.memory_used_bytes)} used of {fmt_bytes(g.memory_total_bytes)}{reserved}"))
    if g.temperature_c is not None:
        out.append(row("temperature", f"{g.temperature_c:.0f} °C" + _temp_margin(g)))
    limits = [x for x in (_n(g.temperature_slowdown_c, "slowdown {:.0f} °C"), _n(g.temperature_shutdown_c, "shutdown {:.0f} °C"),
                          _n(g.temperature_max_operating_c, "max operating {:.0f} °C")) if x]
    if limits:
        out.append(row("thresholds", ", ".join(limits)))
    if g.power_w is not None or g.power_limit_w is not None:
        text = f"{NA if g.power_w is None else f'{g.power_w:.0f}'} W"
        if g.power_limit_w is not None:
            text += f" of {g.power_limit_w:.0f} W limit"
        if g.power_default_limit_w is not None and g.power_default_limit_w != g.power_limit_w:
            text += f" (default {g.power_default_limit_w:.0f} W)"
        out.append(row("power", text))
    clocks = []
    if g.sm_clock_mhz is not None:
        clocks.append(f"SM {g.sm_clock_mhz}" + (f"/{g.sm_clock_max_mhz}" if g.sm_clock_max_mhz else "") + " MHz")
    if g.mem_clock_mhz is not None:
        clocks.append(f"memory {g.mem_clock_mhz}" + (f"/{g.mem_clock_max_mhz}" if g.mem_clock_max_mhz else "") + " MHz")
    if g.pstate is not None:
        clocks.append(f"P{g.pstate}")
    if clocks:
        out.append(row("clocks", ", ".join(clocks)))
    if g.fan_pct is not None:
        out.append(row("fan", f"{g.fan_pct:.0f}%"))
    if not g.lost:
        out.append(row("clock events", ", ".join(g.throttle_reasons) or "none"))
    p = g.pcie
    if p.gen is not None or p.width is not None:
        link = " ".join(x for x in (_n(p.gen, "Gen{}"), _n(p.width, "x{}")) if x)
        top = " ".join(x for x in (_n(p.max_gen, "Gen{}"), _n(p.max_width, "x{}")) if x)
        out.append(row("PCIe", link + (f" (max {top})" if top else "")
                       + f", RX {fmt_rate(p.rx_bytes_per_s)}, TX {fmt_rate(p.tx_bytes_per_s)}"))
        for note in PCIE_RATE_NOTES.get(p.rate_source or "", ()):
            out.append(row("", (note, "$text-muted")))
    if g.nvlink is not None:
        nv = g.nvlink
        out.append(row("NVLink", f"{nv.links_active}/{nv.links_total or '?'} links active, RX {fmt_rate(nv.rx_bytes_per_s)}, "
                                 f"TX {fmt_rate(nv.tx_bytes_per_s)}"))
    if g.ecc_uncorrected_volatile is not None:
        out.append(row("ECC uncorrected", str(g.ecc_uncorrected_volatile)))
    if g.persistence_mode is not None:
        out.append(row("persistence mode", "on" if g.persistence_mode else "off"))
    if g.numa_node is not None:
        out.append(row("NUMA node", str(g.numa_node)))
    if g.cpu_affinity:
        out.append(row("CPU affinity", _cpulist(g.cpu_affinity)))
    if g.fabric_state:
        out.append(row("NVSwitch fabric", g.fabric_state.replace("_", " ")))
    if g.mig_mode is not None:
        out.append(row("MIG", "on" if g.mig_mode else "off"))
    for d in g.mig_devices:  # names and pids come from the driver: plain text, never markup
        out.append(row(f"  MIG device {d.index}", Content.assemble(
            _t(d.name), f"  GI {NA if d.gpu_instance_id is None else d.gpu_instance_id}  ",
            f"{fmt_bytes(d.memory_used_bytes)} of {fmt_bytes(d.memory_total_bytes)}  ",
            f"pids {', '.join(map(str, d.pids)) or 'none'}")))
    for field_name, why in g.errors.items():
        out.append(row(field_name.replace("_", " ")[:21], (why, "$warning")))
    return out


def _temp_margin(g) -> str:
    """" (12 °C below slowdown)", " (1 °C above slowdown, 1 °C below shutdown)": never "-1 °C below"."""
    if g.temperature_slowdown_c is None:
        return ""
    m = g.temperature_slowdown_c - g.temperature_c
    if m > 0:
        return f" ({m:.0f} °C below slowdown)"
    text = f" ({-m:.0f} °C above slowdown" if m < 0 else " (at the slowdown threshold"
    if g.temperature_shutdown_c is not None:
        left = g.temperature_shutdown_c - g.temperature_c
        text += f", {left:.0f} °C below shutdown" if left > 0 else ", AT SHUTDOWN"
    return text + ")"


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


# (history key, title, fixed y range or None, least y span): the y axis of a flat line stays calm
GPU_CHARTS = (("util", "utilization %", (0, 100), 0), ("mem", "memory used %", (0, 100), 0),
              ("temp", "temperature °C", None, 10.0), ("power", "power W", None, 50.0))
INSTANCE_CHARTS = ((("tok", "generation"), ("prompt", "prompt")), "tokens/s", None, 10.0), \
    ((("run", "running"), ("wait", "waiting")), "requests", None, 4.0), \
    ((("ttft", "TTFT p50"), ("itl", "ITL p50")), "latency s", None, 0.05)


class ChartScreen(Screen):
    """History over the last minutes, with a time axis and a legend: utilization, memory,
    temperature and power of one GPU or all; or, for an inference instance, its tok/s, its
    requests running and waiting, and its latencies."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("g", "toggle_all", "One/all GPUs")]

    def __init__(self, history, index: int | None, snapshot: Snapshot | None, instance: str | None = None) -> None:
        super().__init__()
        self.history = history
        self.index = index
        self.instance = instance
        self._snap = snapshot

    def compose(self) -> ComposeResult:
        yield Static(id="chart-title", markup=False)
        with Grid(id="charts"):
            n = len(INSTANCE_CHARTS) if self.instance is not None else len(GPU_CHARTS)
            for k in range(n):
                yield HistoryChart("", id=f"c-{k}")
        yield Footer()

    def on_mount(self) -> None:
        self._redraw()

    def action_toggle_all(self) -> None:
        if self.instance is not None:
            return
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
        which = (self.instance if self.instance is not None else "all GPUs" if self.index is None
                 else f"GPU {self.index}")
        span = ""
        if hist and hist.epochs and hist.epochs[0] is not None and hist.epochs[-1] is not None:
            span = f"   last {fmt_span(hist.epochs[-1] - hist.epochs[0])}"
        keys = "" if self.instance is not None else "   g: one/all GPUs"
        self.query_one("#chart-title", Static).update(Content.assemble(
            ("Charts  ", "bold $primary"), _t(which), (f"{span}{keys}   esc: back", "$text-muted")))
        if not hist:
            return
        epochs = list(hist.epochs)
        if self.instance is not None:
            series = hist.instance.get(self.instance, {})
            for k, (pairs, title, y_range, min_span) in enumerate(INSTANCE_CHARTS):
                data = [(label, list(series[key])) for key, label in pairs if key in series]
                chart = self.query_one(f"#c-{k}", HistoryChart)
                chart.title = title
                chart.set_data(data, y_range, epochs, min_span)
            return
        indices = sorted(hist.gpu) if self.index is None else [self.index]
        for k, (key, title, y_range, min_span) in enumerate(GPU_CHARTS):
            data = [(f"GPU {i}", list(hist.gpu[i][key])) for i in indices if i in hist.gpu]
            chart = self.query_one(f"#c-{k}", HistoryChart)
            chart.title = title
            chart.set_data(data, y_range, epochs, min_span)


def fmt_span(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


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
        # the message gets the width the other columns leave, and wraps (a row grows) instead of
        # being cut at the screen's edge
        for key, label, width in (("time", "Time", 8), ("state", "State", 7), ("severity", "Severity", 8),
                                  ("subject", "Subject", 12), ("kind", "Kind", 16), ("message", "Message", None)):
            table.add_column(label, key=key, width=width or self._message_width())
        self.refresh_from(self._snap)

    def _message_width(self) -> int:
        return max(30, self.app.size.width - (8 + 7 + 8 + 12 + 16) - 6 * 2 - 2)

    def refresh_from(self, snap: Snapshot | None) -> None:
        active = snap.alerts if snap is not None else []
        width = max(30, self.app.size.width - 2)
        self.query_one("#active", Static).update(
            Content("\n").join(line for a in active for line in alert_lines(a, width)) if active
            else Content.styled("none", "$text-muted"))
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
            message = str(get("message") or "")
            lines = textwrap.wrap(message, self._message_width()) or [""]
            table.add_row(_cell(str(get("time") or "")[11:19]), _cell(get("state")), _cell(get("severity")),
                          _cell(get("subject")), _cell(get("kind")), Text("\n".join(lines)), height=len(lines))


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
