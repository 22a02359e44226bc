"""The alert rules: one small function per alert kind, registered in :data:`RULES`.

A rule looks at the current snapshot and the recent history the engine keeps
(:class:`RuleContext`) and returns the conditions that hold *now*, as :class:`Alert` objects.
Hysteresis (raise/clear delays, ``since``) is the engine's business, not the rules'.
Each message says what is wrong and what to do next.

Analysis works on model objects only: no NVML, no HTTP, no terminal.
"""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Callable, Iterable, Sequence

from ..model import GPU, Alert, Instance, Snapshot
from ..vocab import SEVERITY_RANK
from .alert_config import AlertConfig
from .pools import instance_model_key, pool_alerts

GiB = 1024**3

THERMAL_REASONS = ("sw_thermal_slowdown", "hw_thermal_slowdown")
POWER_REASONS = ("sw_power_cap", "hw_power_brake")


_time = itemgetter(0)  # a sample's time


# ---- context ------------------------------------------------------------------------------
@dataclass
class RuleContext:
    snapshot: Snapshot
    # (time in seconds, snapshot), oldest first; the last one is ``snapshot``
    samples: Sequence[tuple[float, Snapshot]]
    now: float
    config: AlertConfig
    kind: str = ""
    # indices of every GPU seen since the engine started (while NVML answered)
    seen_gpus: frozenset[int] = frozenset()
    # per instance name, (time, instance) of the samples in which it was up, oldest first: the
    # engine keeps it as samples come and go (AlertEngine._add_series)
    series: dict[str, list[tuple[float, Instance]]] = field(default_factory=dict)

    def p(self, name: str) -> float:
        """A numeric parameter of the current rule."""
        return self.config.param(self.kind, name)

    @property
    def severity(self) -> str:
        return self.config.rule(self.kind).severity or RULES[self.kind].severity

    def alert(self, subject: str, message: str, severity: str | None = None, key: str | None = None) -> Alert:
        # a configured severity wins over the rule's own escalation only when it is higher
        sev = severity or self.severity
        configured = self.config.rule(self.kind).severity
        if configured and SEVERITY_RANK[configured] > SEVERITY_RANK[sev]:
            sev = configured
        return Alert(kind=self.kind, severity=sev, subject=subject, message=message, key=key)

    def window(self, seconds: float, end_ago: float = 0.0) -> Sequence[tuple[float, Snapshot]]:
        """Samples with ``now - seconds - end_ago <= t <= now - end_ago`` (samples are in time order)."""
        lo, hi = self.now - end_ago - seconds - 1e-9, self.now - end_ago + 1e-9
        a = bisect.bisect_left(self.samples, lo, key=_time)
        b = bisect.bisect_right(self.samples, hi, key=_time)
        return self.samples[a:b]

    def gpu_values(self, index: int, get: Callable[[GPU], float | None], seconds: float) -> list[float]:
        out = []
        for _, snap in self.window(seconds):
            g = snap.gpu(index)
            if g is None or g.lost:
                continue
            v = get(g)
            if v is not None:
                out.append(float(v))
        return out

    def instance_values(self, name: str, get: Callable[[Instance], float | None], seconds: float,
                        end_ago: float = 0.0) -> list[tuple[float, float]]:
        return _values(self.instance_series(name, seconds, end_ago), get)

    def instance_series(self, name: str, seconds: float, end_ago: float = 0.0) -> list[tuple[float, Instance]]:
        """(time, instance) of every sample in the window where the instance was up, for rules
        that read several of its figures: two bisections of its series, not a search through
        every sample."""
        ser = self.series.get(name, ())
        lo, hi = self.now - end_ago - seconds - 1e-9, self.now - end_ago + 1e-9
        return list(ser[bisect.bisect_left(ser, lo, key=_time):bisect.bisect_right(ser, hi, key=_time)])


def _values(series: list[tuple[float, Instance]], get: Callable[[Instance], float | None]) -> list[tuple[float, float]]:
    out = []
    for t, inst in series:
        v = get(inst)
        if v is not None:
            out.append((t, float(v)))
    return out




@dataclass(frozen=True)
class Rule:
    kind: str
    fn: Callable[[RuleContext], list[Alert]]
    severity: str  # default severity
    summary: str


RULES: dict[str, Rule] = {}


def rule(kind: str, severity: str, summary: str):
    def register(fn: Callable[[RuleContext], list[Alert]]):
        RULES[kind] = Rule(kind, fn, severity, summary)
        return fn
    return register


# ---- small helpers -------------------------------------------------------------------------
def seconds_between(start_iso: str | None, end_iso: str | None) -> float | None:
    """Seconds from one ISO time to another; None when either is missing or unreadable."""
    if not start_iso or not end_iso:
        return None
    try:
        return (datetime.fromisoformat(end_iso) - datetime.fromisoformat(start_iso)).total_seconds()
    except (ValueError, TypeError):
        return None


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _gib(n: float | None) -> str:
    return "?" if n is None else f"{n / GiB:.1f} GiB"


def _pct_below_max(g: GPU) -> float | None:
    if not g.sm_clock_mhz or not g.sm_clock_max_mhz:
        return None
    return max(0.0, 100.0 * (1 - g.sm_clock_mhz / g.sm_clock_max_mhz))


def _clock_text(g: GPU) -> str:
    below = _pct_below_max(g)
    if below is None:
        return "SM clock unknown"
    return f"SM clock {g.sm_clock_mhz} MHz, {below:.0f} % below its {g.sm_clock_max_mhz} MHz max"


def cpu_ranges(cpus: Iterable[int]) -> str:
    """[0,1,2,3,8,9] -> '0-3,8-9' (the notation of taskset and numactl)."""
    cpus = sorted(set(cpus))
    parts, start, prev = [], None, None
    for c in cpus:
        if start is None:
            start = prev = c
        elif c == prev + 1:
            prev = c
        else:
            parts.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = prev = c
    if start is not None:
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ",".join(parts)


def thermal_condition(g: GPU, margin_c: float) -> str | None:
    """A short description when the GPU is thermally throttled or close to it, else None."""
    bits = [r for r in THERMAL_REASONS if r in g.throttle_reasons]
    near = (g.temperature_c is not None and g.temperature_slowdown_c is not None
            and g.temperature_c >= g.temperature_slowdown_c - margin_c)
    if not bits and not near:
        return None
    temp = "?" if g.temperature_c is None else f"{g.temperature_c:.0f} °C"
    below = _pct_below_max(g)
    clock = "" if below is None else f", SM clock {below:.0f} % below max"
    state = "thermal slowdown" if bits else "near its slowdown temperature"
    return f"{state} ({temp}{clock})"


def power_condition(g: GPU, at_limit_pct: float) -> str | None:
    bits = [r for r in POWER_REASONS if r in g.throttle_reasons]
    if not bits or g.power_w is None or not g.power_limit_w:
        return None
    if g.power_w < g.power_limit_w * at_limit_pct / 100:
        return None
    below = _pct_below_max(g)
    clock = "" if below is None else f", SM clock {below:.0f} % below max"
    lowered = ""
    if g.power_default_limit_w and g.power_limit_w < g.power_default_limit_w * 0.99:
        lowered = f", limit lowered from {g.power_default_limit_w:.0f} W"
    return f"power-capped ({g.power_w:.0f} W of {g.power_limit_w:.0f} W{lowered}{clock})"


def link_degraded(g: GPU) -> bool:
    p = g.pcie
    return bool((p.gen and p.max_gen and p.gen < p.max_gen) or (p.width and p.max_width and p.width < p.max_width))


def link_text(g: GPU) -> str:
    p = g.pcie
    return f"Gen{p.gen or '?'} x{p.width or '?'} (max Gen{p.max_gen or '?'} x{p.max_width or '?'})"


# ---- GPU health --------------------------------------------------------------------------
@rule("gpu_lost", "critical", "a GPU fell off the bus or disappeared")
def gpu_lost(ctx: RuleContext) -> list[Alert]:
    snap = ctx.snapshot
    out = []
    lost = {g.index for g in snap.gpus if g.lost}
    # a GPU that was there before and is missing now (NVML itself still answers)
    if snap.nvml_error is None and snap.gpus:
        lost |= set(ctx.seen_gpus) - {g.index for g in snap.gpus}
    for idx in sorted(lost):
        g = snap.gpu(idx)
        users = ", ".join(g.instances) if g is not None and g.instances else ""
        on = f"; instances on it: {users}" if users else ""
        bus = f" at PCI {g.pci_bus_id}" if g is not None and g.pci_bus_id else ""
        out.append(ctx.alert(f"GPU {idx}",
                             f"GPU {idx}{bus} fell off the bus (NVML: GPU is lost){on}; check `dmesg | grep -i xid` "
                             f"(Xid 79), then reset the GPU (`nvidia-smi -r -i {idx}`) or reboot"))
    return out


@rule("thermal_throttle", "warning", "thermal clock events or temperature near the GPU's slowdown point")
def thermal_throttle(ctx: RuleContext) -> list[Alert]:
    out = []
    for g in ctx.snapshot.gpus:
        if g.lost:
            continue
        bits = [r for r in THERMAL_REASONS if r in g.throttle_reasons]
        temp = g.temperature_c
        near = (temp is not None and g.temperature_slowdown_c is not None
                and temp >= g.temperature_slowdown_c - ctx.p("margin_c"))
        if not bits and not near:
            continue
        temp_s = "temperature unknown" if temp is None else f"{temp:.0f} °C"
        if g.temperature_slowdown_c is not None:
            temp_s += f" (slowdown at {g.temperature_slowdown_c:.0f} °C)"
        what = ("thermal slowdown (" + ", ".join(bits) + ")") if bits else "close to thermal slowdown"
        severity = None
        if (temp is not None and g.temperature_shutdown_c is not None
                and temp >= g.temperature_shutdown_c - ctx.p("critical_margin_c")):
            severity = "critical"
            left = g.temperature_shutdown_c - temp
            temp_s += (f", {left:.0f} °C below its shutdown at {g.temperature_shutdown_c:.0f} °C" if left >= 0.5 else
                       f", AT its shutdown temperature ({g.temperature_shutdown_c:.0f} °C): the GPU will power off")
        fan = "" if g.fan_pct is None else f", fan {g.fan_pct:.0f} %"
        out.append(ctx.alert(g.label, f"GPU {g.index} {what}: {temp_s}, {_clock_text(g)}{fan}; "
                                      f"check airflow, fan curve and slot spacing (a free slot is worth ~15 °C)",
                             severity=severity))
    return out


@rule("power_cap", "warning", "drawing at the enforced power limit with the power-cap bit set")
def power_cap(ctx: RuleContext) -> list[Alert]:
    out = []
    for g in ctx.snapshot.gpus:
        if g.lost:
            continue
        cond = power_condition(g, ctx.p("at_limit_pct"))
        if cond is None:
            continue
        bits = ", ".join(r for r in POWER_REASONS if r in g.throttle_reasons)
        lowered = bool(g.power_default_limit_w and g.power_limit_w < g.power_default_limit_w * 0.99)
        if lowered:
            step = (f"limit is {100 * (1 - g.power_limit_w / g.power_default_limit_w):.0f} % below the "
                    f"{g.power_default_limit_w:.0f} W default: raise it with `sudo nvidia-smi -i {g.index} "
                    f"-pl {g.power_default_limit_w:.0f}` if PSU and cooling allow")
        else:
            step = "the card runs at its default limit: expected under heavy load, check PSU headroom"
        if "hw_power_brake" in g.throttle_reasons:
            step = "HW power brake is an external signal: check the PSU and the power cables; " + step
        out.append(ctx.alert(g.label, f"GPU {g.index} power-capped ({bits}): {g.power_w:.0f} W of "
                                      f"{g.power_limit_w:.0f} W limit, {_clock_text(g)}; {step}",
                             severity=None if lowered or "hw_power_brake" in g.throttle_reasons else "info"))
    return out


@rule("hw_slowdown", "warning", "HW slowdown with no thermal or power explanation")
def hw_slowdown(ctx: RuleContext) -> list[Alert]:
    out = []
    for g in ctx.snapshot.gpus:
        if g.lost or "hw_slowdown" not in g.throttle_reasons:
            continue
        if any(r in g.throttle_reasons for r in (*THERMAL_REASONS, *POWER_REASONS)):
            continue
        if thermal_condition(g, ctx.config.param("thermal_throttle", "margin_c")) is not None:
            continue
        temp = "?" if g.temperature_c is None else f"{g.temperature_c:.0f} °C"
        power = "?" if g.power_w is None else f"{g.power_w:.0f} W"
        out.append(ctx.alert(g.label, f"GPU {g.index} HW slowdown with no thermal or power cause ({temp}, {power}, "
                                      f"{_clock_text(g)}); check the PCIe power connectors and PSU, and "
                                      f"`nvidia-smi -q -d PERFORMANCE -i {g.index}`"))
    return out


@rule("ecc_errors", "critical", "uncorrected ECC error count rising")
def ecc_errors(ctx: RuleContext) -> list[Alert]:
    out = []
    for g in ctx.snapshot.gpus:
        if g.lost or not g.ecc_uncorrected_volatile:
            continue  # unknown or zero: nothing has risen
        values = ctx.gpu_values(g.index, lambda x: x.ecc_uncorrected_volatile, ctx.p("window_s"))
        now = g.ecc_uncorrected_volatile
        if values and now > min(values):
            out.append(ctx.alert(g.label, f"GPU {g.index} uncorrected ECC errors rose {int(min(values))} → {now} in "
                                          f"the last {ctx.p('window_s'):.0f} s: its memory is failing; drain its "
                                          f"work, check `nvidia-smi -q -d ECC,PAGE_RETIREMENT -i {g.index}` and "
                                          f"Xid 48/63/94 in dmesg"))
    return out


@rule("driver_mismatch", "warning", "GPUs report different driver versions")
def driver_mismatch(ctx: RuleContext) -> list[Alert]:
    snap = ctx.snapshot
    if snap.nvml_error and "mismatch" in snap.nvml_error.lower():
        return [ctx.alert("driver", f"NVML reports a driver/library version mismatch ({snap.nvml_error}); the "
                                    f"kernel module and user-space driver differ after an upgrade: reboot or "
                                    f"reload the nvidia modules", severity="critical")]
    versions: dict[str, list[str]] = {}
    for g in snap.gpus:
        v = getattr(g, "driver_version", None)
        if v:
            versions.setdefault(v, []).append(str(g.index))
    if snap.driver_version and versions and set(versions) != {snap.driver_version}:
        versions.setdefault(snap.driver_version, []).append("system")
    if len(versions) <= 1:
        return []
    parts = "; ".join(f"{v} on GPU {', '.join(idx)}" if idx != ["system"] else f"{v} (system)"
                      for v, idx in sorted(versions.items()))
    return [ctx.alert("driver", f"different driver versions: {parts}; all GPUs of a box must run one driver: "
                                f"reinstall one version and reboot")]


def fabric_problems(snap: Snapshot) -> list[tuple[GPU, str]]:
    """(gpu, what is wrong) for every GPU whose NVSwitch fabric is not up or whose NVLinks are
    not all active."""
    out = []
    for g in snap.gpus:
        if g.lost:
            continue
        bits = []
        if g.fabric_state in ("not_started", "failed"):
            bits.append(f"fabric {g.fabric_state.replace('_', ' ')}")
        nv = g.nvlink
        if nv is not None and nv.links_total and nv.links_active < nv.links_total:
            bits.append(f"{nv.links_active} of {nv.links_total} NVLinks active")
        if bits:
            out.append((g, ", ".join(bits)))
    return out


FABRIC_FIX = ("CUDA peer-to-peer falls back to PCIe and tensor-parallel throughput collapses; on an NVSwitch "
              "box check `systemctl status nvidia-fabricmanager` (its version must match the driver), then "
              "`nvidia-smi nvlink --status`")


@rule("nvlink_fabric", "critical", "NVSwitch fabric not started or NVLinks inactive")
def nvlink_fabric(ctx: RuleContext) -> list[Alert]:
    bad = fabric_problems(ctx.snapshot)
    if not bad:
        return []
    return [ctx.alert("NVLink", f"NVLink fabric down ({fabric_summary(bad)}): {FABRIC_FIX}")]


def fabric_summary(bad: list[tuple[GPU, str]]) -> str:
    """'GPU 0-7: fabric not started, 0 of 18 NVLinks active' (GPUs with the same trouble grouped)."""
    by_why: dict[str, list[int]] = {}
    for g, why in bad:
        by_why.setdefault(why, []).append(g.index)
    return "; ".join(f"GPU {cpu_ranges(idx)}: {why}" for why, idx in by_why.items())


PID_NAMESPACE_NOTE = ("gpuwatch runs in a container with its own PID namespace: NVML reports host PIDs, so GPU "
                      "processes cannot be named or tied to servers here; run the container with --pid=host")


@rule("pid_namespace", "info", "in a container PID namespace, NVML's host PIDs cannot be resolved")
def pid_namespace(ctx: RuleContext) -> list[Alert]:
    if ctx.snapshot.pid_namespace != "container":
        return []
    return [ctx.alert("processes", PID_NAMESPACE_NOTE)]


# ---- topology and placement ---------------------------------------------------------------
@rule("pcie_degraded", "warning", "PCIe link below its max generation or width while the GPU is busy")
def pcie_degraded(ctx: RuleContext) -> list[Alert]:
    out = []
    for g in ctx.snapshot.gpus:
        if g.lost or g.utilization_gpu_pct is None or not link_degraded(g):
            continue
        if g.utilization_gpu_pct < ctx.p("busy_util_pct"):
            continue  # idle GPUs lower the link generation on purpose
        p = g.pcie
        if p.width and p.max_width and p.width < p.max_width:
            step = (f"runs at x{p.width} of x{p.max_width}: reseat the card, move it to an x16 slot or check the "
                    f"riser and BIOS lane bifurcation (an x4 GPU loses 35-40 % in tensor parallel)")
        else:
            step = "generation below max under load: check the BIOS PCIe speed setting, the riser, or reseat the card"
        out.append(ctx.alert(g.label, f"GPU {g.index} PCIe link {link_text(g)} while {g.utilization_gpu_pct:.0f} % "
                                      f"busy; {step}"))
    return out


def _node_of_cpus(snap: Snapshot) -> dict[int, int]:
    """CPU -> NUMA node, learned from the GPUs' own affinity and NUMA node."""
    mapping = {}
    for g in snap.gpus:
        if g.numa_node is not None and g.cpu_affinity:
            for c in g.cpu_affinity:
                mapping.setdefault(c, g.numa_node)
    return mapping


def numa_mismatches(snap: Snapshot) -> list[tuple[GPU, object, set[int]]]:
    """(gpu, process, process cpus) for every process whose CPU affinity lies entirely off its GPU's CPUs."""
    out = []
    for g in snap.gpus:
        if g.lost or not g.cpu_affinity:
            continue
        local = set(g.cpu_affinity)
        for proc in g.processes:
            cpus = set(proc.cpu_affinity or ())
            if cpus and not cpus & local:
                out.append((g, proc, cpus))
    return out


@rule("numa_mismatch", "warning", "a serving process runs on another NUMA node than its GPU")
def numa_mismatch(ctx: RuleContext) -> list[Alert]:
    snap = ctx.snapshot
    out = []
    found = numa_mismatches(snap)
    node_of = _node_of_cpus(snap) if found else {}  # (every GPU's CPUs: only when it is needed)
    for g, proc, cpus in found:
        nodes = sorted({node_of[c] for c in cpus if c in node_of})
        where = f" (NUMA node {', '.join(map(str, nodes))})" if nodes else ""
        gnode = f"node {g.numa_node}" if g.numa_node is not None else "another node"
        local = cpu_ranges(g.cpu_affinity)
        name = f" ({proc.name})" if proc.name else ""
        bind = f"numactl --cpunodebind={g.numa_node}" if g.numa_node is not None else f"taskset -c {local}"
        out.append(ctx.alert(g.label, f"pid {proc.pid}{name} on GPU {g.index} runs on CPUs {cpu_ranges(cpus)}{where} "
                                      f"but GPU {g.index} hangs off {gnode} (CPUs {local}): cross-socket access "
                                      f"costs 20-40 %; start it under `{bind}` or `taskset -c {local}`",
                             key=f"numa_mismatch:GPU {g.index}:{proc.pid}"))
    return out


# ---- groups of GPUs ------------------------------------------------------------------------
def _seen_s(ctx: RuleContext, window: float) -> float:
    """The time the window's samples actually cover: a 3 s doctor run is no 30 s average."""
    times = [t for t, _ in ctx.samples if t >= ctx.now - window]
    return min(window, ctx.now - min(times)) if times else 0.0


def _over(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 1.5 else "one sample" if seconds < 0.5 else "1 s"


def _group_values(ctx: RuleContext, gpus: list[int], seconds: float) -> tuple[dict[int, list[float]],
                                                                              dict[int, list[float]]]:
    """Utilization and memory-used % of each of ``gpus`` over the window (lost GPUs and missing
    readings left out), in one pass over its samples: a fleet runs this rule for every host on
    every refresh (256 hosts: a quarter of a refresh when each GPU and figure had a pass of its own)."""
    util: dict[int, list[float]] = {i: [] for i in gpus}
    mem: dict[int, list[float]] = {i: [] for i in gpus}
    for _, snap in ctx.window(seconds):
        for i in gpus:
            g = snap.gpu(i)
            if g is None or g.lost:
                continue
            if g.utilization_gpu_pct is not None:
                util[i].append(float(g.utilization_gpu_pct))
            m = g.memory_used_pct
            if m is not None:
                mem[i].append(m)
    return util, mem


@rule("imbalance", "warning", "tensor-parallel GPUs that should look alike differ (or a pipeline GPU never works)")
def imbalance(ctx: RuleContext) -> list[Alert]:
    out = []
    window = ctx.p("window_s")
    for inst in ctx.snapshot.instances:
        gpus = [i for i in inst.gpus if ctx.snapshot.gpu(i) is not None and not ctx.snapshot.gpu(i).lost]
        if inst.status != "up" or len(gpus) < 2 or inst.parallelism not in ("tensor", "pipeline"):
            continue
        util, mem = _group_values(ctx, gpus, window)
        if any(not v for v in util.values()):
            continue
        mean_util = {i: _mean(v) for i, v in util.items()}
        busiest = max(mean_util, key=lambda i: mean_util[i])
        if mean_util[busiest] < ctx.p("min_busy_pct"):
            continue  # the whole group is quiet: nothing to compare
        if inst.parallelism == "tensor":
            low = min(mean_util, key=lambda i: mean_util[i])
            spread = mean_util[busiest] - mean_util[low]
            if spread >= ctx.p("util_spread_pct"):
                out.append(ctx.alert(inst.name,
                    f"tensor-parallel {inst.name}: GPU {low} averages {mean_util[low]:.0f} % utilization over "
                    f"{_over(_seen_s(ctx, window))} while GPU {busiest} averages {mean_util[busiest]:.0f} % ({spread:.0f} pts "
                    f"apart); the slowest GPU sets the pace: check GPU {low} for throttling, errors or a stuck worker"))
                continue
            if all(mem.values()):
                mean_mem = {i: _mean(v) for i, v in mem.items()}
                hi = max(mean_mem, key=lambda i: mean_mem[i])
                lo = min(mean_mem, key=lambda i: mean_mem[i])
                if mean_mem[hi] - mean_mem[lo] >= ctx.p("mem_spread_pct"):
                    out.append(ctx.alert(inst.name,
                        f"tensor-parallel {inst.name}: GPU {hi} uses {mean_mem[hi]:.0f} % of its memory, GPU {lo} "
                        f"{mean_mem[lo]:.0f} %; TP shards should be equal: look for another process on GPU {hi} "
                        f"or mismatched cards"))
        else:
            # pipeline / layer split: uneven use is normal; only a GPU that holds the model and never works
            for i in gpus:
                if i == busiest or max(util[i]) > ctx.p("idle_util_pct"):
                    continue
                held = inst.gpu_memory_bytes.get(str(i))
                if held is None:
                    g = ctx.snapshot.gpu(i)
                    held = g.memory_used_bytes if g is not None else None
                if held is None or held < ctx.p("min_model_memory_gib") * GiB:
                    continue
                out.append(ctx.alert(inst.name,
                    f"pipeline {inst.name}: GPU {i} holds {_gib(held)} of the model but did no work in "
                    f"{_over(_seen_s(ctx, window))} "
                    f"while GPU {busiest} averaged {mean_util[busiest]:.0f} %; its layers may be stuck: "
                    f"check the server log and restart the instance", key=f"imbalance:{inst.name}:GPU {i}"))
    return out


@rule("replica_imbalance", "warning", "replicas of one model carry very different load")
def replica_imbalance(ctx: RuleContext) -> list[Alert]:
    out = pool_alerts(ctx)
    # instances outside any nginx pool: replicas of one model, whatever its spelling
    pooled = {m.instance for p in ctx.snapshot.pools for m in p.members if m.instance}
    groups: dict[str, list[Instance]] = {}
    for inst in ctx.snapshot.instances:
        key = instance_model_key(inst)
        if inst.status == "up" and key and inst.name not in pooled:
            groups.setdefault(key, []).append(inst)
    window = ctx.p("window_s")
    for key, insts in groups.items():
        if len(insts) < 2:
            continue
        load = {}
        for inst in insts:
            vals = ctx.instance_values(inst.name, lambda i: None if i.requests_running is None and
                                       i.requests_waiting is None else (i.requests_running or 0) + (i.requests_waiting or 0),
                                       window)
            if vals:
                load[inst.name] = _mean([v for _, v in vals])
        if len(load) < 2:
            continue
        hi = max(load, key=lambda n: load[n])
        lo = min(load, key=lambda n: load[n])
        if load[hi] - load[lo] >= ctx.p("min_requests_diff") and load[hi] >= ctx.p("ratio") * (load[lo] + 1):
            by_name = {i.name: i for i in insts}
            tps = {n: by_name[n].generation_tokens_per_s for n in (hi, lo)}
            tps_s = ""
            if all(v is not None for v in tps.values()):
                tps_s = f" ({tps[hi]:.0f} vs {tps[lo]:.0f} tok/s)"
            out.append(ctx.alert(insts[0].models[0].name,
                f"replicas of {insts[0].models[0].name}: {hi} carries {load[hi]:.1f} requests (running+waiting, "
                f"{_over(_seen_s(ctx, window))} mean) while {lo} carries {load[lo]:.1f}{tps_s}; check the load balancer "
                f"(least_conn) and that {lo} is in its upstream list"))
    return out


# ---- inference servers ----------------------------------------------------------------------
@rule("backend_down", "critical", "an inference server is down or answering with errors")
def backend_down(ctx: RuleContext) -> list[Alert]:
    out = []
    for inst in ctx.snapshot.instances:
        if inst.status in ("down", "error"):
            reason = inst.error or ("not answering" if inst.status == "down" else "error")
            out.append(ctx.alert(inst.name, f"{inst.name} ({inst.kind}, {inst.url}) is {inst.status}: {reason}; "
                                            f"check its service (`systemctl status`, `journalctl -u`) and log"))
        elif inst.status == "loading":
            loading_s = seconds_between(inst.status_since, ctx.snapshot.time)
            if loading_s is not None and loading_s > ctx.p("loading_limit_s"):
                out.append(ctx.alert(inst.name, f"{inst.name} ({inst.kind}, {inst.url}) has been loading its model "
                                                f"for {loading_s / 60:.0f} min; check its log for a stuck download "
                                                f"or slow storage"))
    return out


@rule("cpu_offload", "warning", "an Ollama model does not fit in VRAM and runs partly on the CPU")
def cpu_offload(ctx: RuleContext) -> list[Alert]:
    out = []
    for inst in ctx.snapshot.instances:
        if inst.status != "up":
            continue
        for m in inst.models:
            pct = m.cpu_offload_pct
            if pct is None and m.size_bytes and m.size_vram_bytes is not None:
                pct = 100.0 * (1 - m.size_vram_bytes / m.size_bytes)
            if pct is None or pct < ctx.p("min_offload_pct"):
                continue
            now = ""
            if inst.generation_tokens_per_s is not None:
                now = f" (now {inst.generation_tokens_per_s:.1f} tok/s)"
            size = f" of its {_gib(m.size_bytes)}" if m.size_bytes else ""
            out.append(ctx.alert(f"{inst.name}: {m.name}",
                f"{inst.name}: {m.name} has {pct:.0f} %{size} on the CPU: expect about 1 tok/s instead of tens{now}; "
                f"use a smaller quant, a shorter context (num_ctx) or more VRAM"))
    return out


@rule("kv_cache_full", "warning", "KV cache full with requests waiting")
def kv_cache_full(ctx: RuleContext) -> list[Alert]:
    out = []
    for inst in ctx.snapshot.instances:
        if inst.status != "up" or inst.kv_cache_usage_pct is None:
            continue
        waiting = inst.requests_waiting or 0
        if inst.kv_cache_usage_pct >= ctx.p("usage_pct") and waiting >= ctx.p("min_waiting"):
            pre = ""
            if inst.preemptions_per_s:
                pre = f", {inst.preemptions_per_s:.1f} preemptions/s"
            out.append(ctx.alert(inst.name,
                f"{inst.name} KV cache {inst.kv_cache_usage_pct:.0f} % full with {waiting:.0f} requests waiting{pre}; "
                f"lower --max-num-seqs or --max-model-len, raise --gpu-memory-utilization, or add GPUs"))
    return out


@rule("queue_backlog", "warning", "waiting requests keep growing")
def queue_backlog(ctx: RuleContext) -> list[Alert]:
    out = []
    window = ctx.p("window_s")
    for inst in ctx.snapshot.instances:
        if inst.status != "up" or inst.requests_waiting is None or inst.requests_waiting < ctx.p("min_waiting"):
            continue  # (the queue now is the window's last sample: below min_waiting, no backlog to call)
        vals = ctx.instance_values(inst.name, lambda i: i.requests_waiting, window)
        if len(vals) < 4 or vals[-1][0] - vals[0][0] < 0.8 * window:
            continue  # not enough history to call it a trend
        waiting = [v for _, v in vals]
        # growing through the whole window: the mean of each quarter at least the one before
        q = max(1, len(waiting) // 4)
        quarters = [_mean(waiting[i * q:(i + 1) * q] or waiting[-q:]) for i in range(3)] + [_mean(waiting[3 * q:])]
        now = waiting[-1]
        if (now >= ctx.p("min_waiting") and now - waiting[0] >= ctx.p("min_growth")
                and all(a <= b for a, b in zip(quarters, quarters[1:]))):
            running = "" if inst.requests_running is None else f" with {inst.requests_running:.0f} running"
            out.append(ctx.alert(inst.name,
                f"{inst.name}: waiting requests grew {waiting[0]:.0f} → {now:.0f} in {window:.0f} s{running}; "
                f"demand exceeds capacity: add a replica, cap client concurrency, or check for slowed GPUs"))
    return out


# ---- the flagship ---------------------------------------------------------------------------
def instance_causes(ctx: RuleContext, inst: Instance, snap: Snapshot | None = None) -> list[tuple[str, str]]:
    """(cause, next step) for each condition of the instance's own GPUs and server that explains
    a slowdown, most telling first."""
    snap = snap or ctx.snapshot
    causes = []
    margin = ctx.config.param("thermal_throttle", "margin_c")
    at_limit = ctx.config.param("power_cap", "at_limit_pct")
    busy = ctx.config.param("pcie_degraded", "busy_util_pct")
    for i in inst.gpus:
        g = snap.gpu(i)
        if g is None or g.lost:
            causes.append((f"GPU {i} was lost", f"check `dmesg | grep -i xid` and restart {inst.name}"))
            continue
        therm = thermal_condition(g, margin)
        if therm and any(r in g.throttle_reasons for r in THERMAL_REASONS):
            causes.append((f"GPU {i} was in {therm}", f"fix the cooling of GPU {i} (airflow, fan curve, slot spacing)"))
        power = power_condition(g, at_limit)
        if power:
            causes.append((f"GPU {i} was {power}", f"check GPU {i}'s power limit (`nvidia-smi -q -d POWER -i {i}`)"))
        if "hw_slowdown" in g.throttle_reasons and not therm and not power:
            causes.append((f"GPU {i} was in HW slowdown", f"check GPU {i}'s power connectors and PSU"))
        if link_degraded(g) and (g.utilization_gpu_pct or 0) >= busy:
            causes.append((f"GPU {i}'s PCIe link was degraded to {link_text(g)}",
                           f"reseat GPU {i} or move it to a full-width slot"))
    kv_full = ctx.config.param("kv_cache_full", "usage_pct")
    step = "lower concurrency or context length, or give the model more KV-cache memory"
    if inst.kv_cache_usage_pct is not None and inst.kv_cache_usage_pct >= kv_full:
        causes.append((f"the KV cache was {inst.kv_cache_usage_pct:.0f} % full", step))
    if inst.preemptions_per_s:
        causes.append((f"requests were being preempted ({inst.preemptions_per_s:.1f}/s)", step))
    return causes


def _rates(series: list[tuple[float, Instance]]) -> tuple[list[float], list[float], list[float], list[float]]:
    """From one window of an instance's samples, in one pass: the times and values of its
    generation tok/s, its tok/s per running request (compared sample by sample, so that load
    going down is not a "drop") and its running requests, each where known."""
    times, tps, per, run = [], [], [], []
    for t, i in series:
        g, r = i.generation_tokens_per_s, i.requests_running
        if g is not None:
            times.append(t)
            tps.append(float(g))
            if r:
                per.append(g / r)
        if r is not None:
            run.append(float(r))
    return times, tps, per, run


@rule("throughput_drop", "warning", "an instance's generation tok/s fell sharply while requests were running")
def throughput_drop(ctx: RuleContext) -> list[Alert]:
    out = []
    recent_s, baseline_s = ctx.p("recent_s"), ctx.p("baseline_s")
    for inst in ctx.snapshot.instances:
        if inst.status != "up" or inst.generation_tokens_per_s is None or not inst.requests_running:
            continue
        base_t, base, base_per, base_run = _rates(ctx.instance_series(inst.name, baseline_s, end_ago=recent_s))
        _, recent, recent_per, recent_run = _rates(ctx.instance_series(inst.name, recent_s))
        if len(base) < 2 or not recent or base_t[-1] - base_t[0] < ctx.p("min_baseline_s"):
            continue
        base_tps = statistics.median(base)
        if base_tps < ctx.p("min_tokens_per_s"):
            continue
        recent_tps = statistics.median(recent)
        raw_drop = 100 * (1 - recent_tps / base_tps)
        per_req = None
        if len(base_per) >= 2 and recent_per:
            b, r = statistics.median(base_per), statistics.median(recent_per)
            if b > 0:
                per_req = (b, r, 100 * (1 - r / b))
        drop = raw_drop if per_req is None else per_req[2]
        causes = instance_causes(ctx, inst)
        if causes:
            # a real fall in speed per request; when many more requests share the batch, each one
            # is slower anyway, so the comparison says nothing
            if drop < ctx.p("drop_pct"):
                continue
            if per_req is not None and base_run and recent_run and statistics.median(recent_run) > ctx.p("max_load_growth") * statistics.median(base_run):
                continue
        elif drop < ctx.p("large_drop_pct") or raw_drop < ctx.p("large_drop_pct"):
            continue  # with nothing to explain it, only a large fall in both counts: load varies
        what = "decode tok/s" if inst.kind in ("vllm", "sglang", "llamacpp") else "generation tok/s"
        if per_req is not None:
            detail = (f"{per_req[0]:.1f} → {per_req[1]:.1f} tok/s per running request; {recent_tps:.0f} tok/s "
                      f"total with {inst.requests_running:.0f} running, was {base_tps:.0f}")
        else:
            detail = f"{base_tps:.0f} → {recent_tps:.0f} tok/s"
        head = f"{what} on {inst.name} fell {drop:.0f} % ({detail})"
        if causes:
            msg = f"{head} while {' and '.join(c for c, _ in causes[:2])}; {causes[0][1]}"
        else:
            msg = (f"{head} with no GPU cause seen; check the server log for errors and whether prompts got "
                   f"longer or the model changed")
        out.append(ctx.alert(inst.name, msg))
    return out
