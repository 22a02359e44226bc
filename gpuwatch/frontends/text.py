"""Plain text, worded for a terminal, a ticket or a cron mail: a snapshot (``gpuwatch snapshot``,
like nvidia-smi's table: no colours, fixed columns), the doctor's report and the fleet's hosts.
The data layer returns data; this module is where it becomes words."""

from __future__ import annotations

from ..analysis.doctor import FAIL, PASS, SKIP, WARN, DoctorReport, plural
from ..fleet.summary import HostSummary, summarize
from ..model import Snapshot
from ..vocab import engine_label, severity_rank
from .units import fmt_bytes, fmt_rate, fmt_pct, na


def render_text(snap: Snapshot) -> str:
    lines = []
    head = f"gpuwatch  {snap.host}  {snap.time}"
    if snap.driver_version:
        head += f"  driver {snap.driver_version}"
    if snap.cuda_version:
        head += f"  CUDA {snap.cuda_version}"
    if snap.scenario:
        head += f"  (simulated: {snap.scenario})"
    lines.append(head)
    if snap.nvml_error:
        lines.append(f"GPUs: {snap.nvml_error}")
    if snap.gpus:
        lines.append("")
        lines.append(f"{'GPU':>3}  {'Name':<24} {'Util':>5} {'Memory':>17} {'Temp':>9} {'Power':>13} "
                     f"{'SM MHz':>11} {'PCIe':>17} {'PCIe RX/TX':>19}  Throttle")
        for g in snap.gpus:
            name = (g.name or "?")[:24]
            if g.lost:
                bus = f" at PCI {g.pci_bus_id}" if g.pci_bus_id else ""
                lines.append(f"{g.index:>3}  {name:<24} LOST: the GPU fell off the bus{bus} (check dmesg for Xid 79)")
                continue
            mem = f"{fmt_bytes(g.memory_used_bytes)}/{fmt_bytes(g.memory_total_bytes)}"
            temp = f"{na(g.temperature_c, '{:.0f}')}/{na(g.temperature_slowdown_c, '{:.0f}')}C"
            power = f"{na(g.power_w, '{:.0f}')}/{na(g.power_limit_w, '{:.0f}')}W"
            clock = f"{na(g.sm_clock_mhz)}/{na(g.sm_clock_max_mhz)}"
            link = f"Gen{na(g.pcie.gen)} x{na(g.pcie.width)}"
            if g.pcie.width and g.pcie.max_width and g.pcie.width < g.pcie.max_width:
                link += f" of x{g.pcie.max_width}"  # trained below its width: worth saying in words
            elif g.pcie.gen and g.pcie.max_gen and g.pcie.gen < g.pcie.max_gen:
                link += " idle" if (g.utilization_gpu_pct or 0) <= 10 else f" of Gen{g.pcie.max_gen}"
            io = f"{fmt_rate(g.pcie.rx_bytes_per_s)}/{fmt_rate(g.pcie.tx_bytes_per_s)}"
            reasons = ",".join(r for r in g.throttle_reasons if r != "gpu_idle") or "-"
            lines.append(f"{g.index:>3}  {name:<24} {fmt_pct(g.utilization_gpu_pct):>5} {mem:>17} {temp:>9} "
                         f"{power:>13} {clock:>11} {link:>17} {io:>19}  {reasons}")
        notes = [f"GPU {g.index}: {why}" for g in snap.gpus for why in g.errors.values()]
        for g in snap.gpus:
            for d in g.mig_devices:
                notes.append(f"GPU {g.index} MIG {d.index} {(d.name or '').rsplit(' ', 1)[-1]}: "
                             f"{fmt_bytes(d.memory_used_bytes)}/{fmt_bytes(d.memory_total_bytes)}, "
                             f"pids {', '.join(map(str, d.pids)) or '-'}")
        if snap.pid_namespace == "container":
            notes.append("processes: NVML's PIDs are the host's (container PID namespace): run with --pid=host")
        if notes:
            lines.append("")
            lines.extend(notes)
        procs = [(g.index, p) for g in snap.gpus for p in g.processes]
        if procs:
            lines.append("")
            lines.append(f"{'GPU':>3}  {'PID':>8}  {'User':<12} {'GPU mem':>9}  Process")
            for idx, p in procs:
                lines.append(f"{idx:>3}  {p.pid:>8}  {(p.user or '?')[:12]:<12} {fmt_bytes(p.used_memory_bytes):>9}  "
                             f"{(p.cmdline or p.name or '?')[:80]}")
    if snap.instances:
        lines.append("")
        lines.append(f"{'Instance':<18} {'Engine':<9} {'Status':<8} {'GPUs':<10} {'Mode':<9} {'gen tok/s':>9} "
                     f"{'run/wait':>9} {'KV':>5}  Model")
        for inst in snap.instances:
            gpus = ",".join(str(i) for i in inst.gpus) or "-"
            models = ", ".join(m.name for m in inst.models) or "-"
            rw = f"{na(inst.requests_running, '{:.0f}')}/{na(inst.requests_waiting, '{:.0f}')}"
            status = inst.status
            lines.append(f"{inst.name[:18]:<18} {engine_label(inst.kind)[:9]:<9} {status:<8} {gpus:<10} {inst.parallelism:<9} "
                         f"{na(inst.generation_tokens_per_s, '{:.1f}'):>9} {rw:>9} "
                         f"{fmt_pct(inst.kv_cache_usage_pct):>5}  {models[:60]}")
            if inst.error:
                lines.append(f"{'':<18} error: {inst.error}")
            if inst.status in ("loading", "sleeping"):
                lines.append(f"{'':<18} {inst.status} since {inst.status_since or '?'}"
                             + (f": {inst.status_detail}" if inst.status_detail else ""))
            if inst.joules_per_token is not None:
                lines.append(f"{'':<18} energy: {inst.joules_per_token:.2f} J/token, "
                             f"{inst.tokens_per_s_per_kw or 0:.0f} tok/s per kW of {inst.power_w or 0:.0f} W"
                             + (" (shared GPUs split by memory share)" if inst.power_shared else ""))
    for pool in snap.pools:
        lines.append("")
        lines.append(f"Pool {pool.name} ({pool.method}, {pool.source}): member, weight share, share of requests / "
                     f"running / tokens over {na(pool.window_s, '{:.0f}')} s")
        for m in pool.members:
            flags = "".join(f" {f}" for f in ("backup", "down") if getattr(m, f))
            via = " (meter route)" if m.via else ""
            lines.append(f"  {(m.instance or '-')[:18]:<18} {m.url}{via}{flags}  weight {m.weight} "
                         f"({fmt_pct(None if m.weight_share is None else 100 * m.weight_share)})  "
                         + " / ".join(fmt_pct(None if v is None else 100 * v)
                                      for v in (m.request_share, m.running_share, m.token_share)))
    if snap.alerts:
        lines.append("")
        lines.append("Alerts:")
        for a in snap.alerts:
            lines.append(f"  {a.severity.upper():<8} {a.subject:<16} {a.message}")
    return "\n".join(lines) + "\n"


def render_doctor(report: DoctorReport) -> str:
    width = max((len(c.name) for c in report.checks), default=10)
    lines = [f"gpuwatch doctor — {report.host or '?'} at {report.time or '?'}", ""]
    for c in report.checks:
        lines.append(f"{c.status.upper():<4}  {c.name:<{width}}  {c.detail}")
        for n in c.notes:
            lines.append(f"{'':<4}  {'':<{width}}    {n}")
    n = report.counts()
    tail = f"{n[PASS]} passed, {plural(n[WARN], 'warning')}, {n[FAIL]} failed"
    if n[SKIP]:
        tail += f", {n[SKIP]} not checked (not reported on this box)"
    lines += ["", tail]
    return "\n".join(lines) + "\n"



# ---- fleets -----------------------------------------------------------------------------------
def fleet_util_text(r: HostSummary) -> str:
    return "—" if r.util_mean is None else f"{r.util_mean:.0f}/{r.util_max:.0f}%"


def fleet_hot_text(r: HostSummary) -> str:
    if r.hot_c is None:
        return "—"
    limit = f"/{r.hot_slowdown_c:.0f}" if r.hot_slowdown_c is not None else ""
    return f"{r.hot_c:.0f}{limit}°C"


def fleet_tok_text(r: HostSummary) -> str:
    return "—" if r.tok_s is None else f"{r.tok_s:,.0f}"


SEVERITY_SHORT = {"critical": "crit", "warning": "warn", "info": "info"}


def fleet_alert_text(r: HostSummary) -> str:
    """``1 crit 1 warn``: each severity counted on its own, worst first."""
    if not r.alerts:
        return "0"
    counts = r.counts or {r.worst or "warning": r.alerts}
    order = sorted(counts, key=lambda k: -severity_rank(k))
    return " ".join(f"{counts[k]} {SEVERITY_SHORT.get(k, k)}" for k in order)


def fleet_state_text(r: HostSummary) -> str:
    """``ok``, ``down since 07:53:10Z``, ``stale since …``."""
    if r.state == "up":
        return "no GPUs" if r.problem else "ok"
    return r.state + (f" since {r.since[11:19]}Z" if r.since else "")


def render_fleet_text(reading, url: str) -> str:
    """``gpuwatch snapshot --prometheus URL``: one line per host."""
    lines = [f"fleet via {url}: {len(reading.hosts)} hosts, {reading.refresh_ms:.0f} ms"]
    if reading.error:
        lines.append(f"error: {reading.error}")
    lines.append(f"{'host':<24} {'GPUs':>4} {'util':>9} {'hottest':>12} {'tok/s':>8}  {'state':<22} alerts")
    for s in reading.hosts:
        r = summarize(s)
        lines.append(f"{r.host[:24]:<24} {r.gpus:>4} {fleet_util_text(r):>9} {fleet_hot_text(r):>12} "
                     f"{fleet_tok_text(r):>8}  {fleet_state_text(r):<22} {fleet_alert_text(r)}")
    return "\n".join(lines) + "\n"
