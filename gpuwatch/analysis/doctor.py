"""``gpuwatch doctor``: a one-screen health check of the box, as pass/warn/fail lines.

Works on snapshots (a short sampling run, oldest first) and the alerts found over them;
the CLI collects, this module judges and writes the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..vocab import engine_label
from ..model import Alert, Snapshot
from .alert_config import AlertConfig
from .rules import (FABRIC_FIX, PID_NAMESPACE_NOTE, cpu_ranges, fabric_problems, fabric_summary, link_degraded,
                    link_text, numa_mismatches)

PASS, WARN, FAIL = "pass", "warn", "fail"
SKIP = "skip"  # the check could not be made (not reported here): unknown is not pass
_ORDER = {SKIP: 0, PASS: 0, WARN: 1, FAIL: 2}


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 warning``, ``2 warnings``, ``1 pair``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


@dataclass
class Check:
    name: str
    status: str  # pass | warn | fail | skip (could not be checked here)
    detail: str
    notes: list[str] = field(default_factory=list)  # extra lines (a matrix, an explanation)

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "notes": list(self.notes)}


@dataclass
class DoctorReport:
    host: str | None
    time: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if any(c.status == FAIL for c in self.checks) else 0

    @property
    def status(self) -> str:
        return max((c.status for c in self.checks), key=_ORDER.__getitem__, default=PASS)

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, WARN: 0, FAIL: 0, SKIP: 0}
        for c in self.checks:
            out[c.status] += 1
        return out

    def to_dict(self) -> dict:
        return {"host": self.host, "time": self.time, "status": self.status, "exit_code": self.exit_code,
                "counts": self.counts(), "checks": [c.to_dict() for c in self.checks]}


def run_doctor(snapshots: list[Snapshot], alerts: list[Alert] | None = None,
               config: AlertConfig | None = None) -> DoctorReport:
    """Judge the box from ``snapshots`` (oldest first). ``alerts``: those found over the same
    run (``None``: computed here with :func:`evaluate_once`)."""
    if not snapshots:
        return DoctorReport(None, None, [Check("snapshots", FAIL, "no snapshot was taken")])
    last = snapshots[-1]
    if alerts is None:
        from .alerts import evaluate_once
        alerts = evaluate_once(snapshots, config)
    report = DoctorReport(last.host, last.time)
    checks = report.checks
    checks.append(_nvml(last))
    if last.gpus:
        checks.append(_drivers(last))
        checks.append(_persistence(last))
        checks.append(_topology(last))
        checks.extend(_links(snapshots, config or AlertConfig()))
        checks.append(_numa(snapshots))
        checks.extend(c for c in (_fabric(last), _mig(last), _pid_namespace(last), _ecc(last)) if c is not None)
    checks.extend(_instances(last))
    checks.extend(_pools(last))
    checks.extend(_alerts(alerts, _span_s(snapshots)))
    return report


# ---- checks ----------------------------------------------------------------------------------
def _nvml(s: Snapshot) -> Check:
    if s.nvml_error:
        return Check("nvml", FAIL, s.nvml_error, ["is the NVIDIA driver loaded? try `nvidia-smi`"])
    if not s.gpus:
        return Check("nvml", FAIL, "NVML answered but reports no GPU")
    names: dict[str, int] = {}
    for g in s.gpus:
        names[g.name or "unknown GPU"] = names.get(g.name or "unknown GPU", 0) + 1
    kinds = ", ".join(f"{n}× {name}" for name, n in names.items())
    lost = [g.index for g in s.gpus if g.lost]
    cuda = f", CUDA {s.cuda_version}" if s.cuda_version else ""
    detail = f"{len(s.gpus)} GPUs ({kinds}), driver {s.driver_version or '?'}{cuda}"
    if lost:
        buses = [f"GPU {g.index} at PCI {g.pci_bus_id}" for g in s.gpus if g.lost and g.pci_bus_id]
        notes = ["check `dmesg | grep -i xid`, then reset the GPU (`nvidia-smi -r -i N`) or reboot"]
        if buses:
            notes.insert(0, "lost: " + ", ".join(buses))
        return Check("nvml", FAIL, f"{detail}; GPU {_idx(lost)} lost (fell off the bus)", notes)
    return Check("nvml", PASS, detail)


def _drivers(s: Snapshot) -> Check:
    per_gpu = {g.index: getattr(g, "driver_version", None) for g in s.gpus}
    versions = {v for v in per_gpu.values() if v}
    if s.driver_version:
        versions.add(s.driver_version)
    if len(versions) > 1:
        detail = ", ".join(f"GPU {i}: {v}" for i, v in per_gpu.items() if v)
        return Check("driver", FAIL, f"different driver versions ({detail}; system {s.driver_version})",
                     ["all GPUs of a box must run one driver: reinstall one version and reboot"])
    if not versions:
        return Check("driver", WARN, "driver version unknown")
    return Check("driver", PASS, f"all GPUs on driver {versions.pop()}")


def _persistence(s: Snapshot) -> Check:
    off = [g.index for g in s.gpus if g.persistence_mode is False]
    unknown = [g.index for g in s.gpus if g.persistence_mode is None]
    if off:
        return Check("persistence mode", WARN, f"off on GPU {_idx(off)}",
                     ["without it the driver tears down between clients (slow starts, lost settings): "
                      "`sudo nvidia-smi -pm 1` or enable nvidia-persistenced"])
    if len(unknown) == len(s.gpus):
        return Check("persistence mode", SKIP, "not reported on this platform")
    if unknown:
        on = [g.index for g in s.gpus if g.persistence_mode]
        return Check("persistence mode", SKIP, f"on for GPU {_idx(on)}; not reported for GPU {_idx(unknown)}")
    return Check("persistence mode", PASS, "on for all GPUs")


_TOPO_RANK = {"NV": 0, "PIX": 1, "PXB": 2, "PHB": 3, "NODE": 4, "SYS": 5}


def _topo_kind(level: str) -> str:
    return "NV" if level.upper().startswith("NV") else level.upper()


def _topology(s: Snapshot) -> Check:
    indices = [g.index for g in s.gpus]
    pairs: dict[str, list[str]] = {}
    known = False
    for g in s.gpus:
        for other, level in g.topology.items():
            try:
                o = int(other)
            except ValueError:
                continue
            if o <= g.index or o not in indices:
                continue
            known = True
            pairs.setdefault(_topo_kind(level), []).append(f"{g.index}-{o}")
    if len(s.gpus) < 2:
        return Check("topology", PASS, "a single GPU")
    if not known:
        return Check("topology", SKIP, "not reported (run `nvidia-smi topo -m`)")
    labels = {"NV": "NVLink", "PIX": "same PCIe switch", "PXB": "PCIe bridges", "PHB": "host bridge",
              "NODE": "same NUMA node", "SYS": "cross-socket"}
    parts = [f"{labels.get(k, k)}: {plural(len(v), 'pair')}" for k, v in sorted(pairs.items(), key=lambda kv: _TOPO_RANK.get(kv[0], 9))]
    notes = _matrix(s)
    status = PASS
    # a tensor-parallel group that crosses the socket or has no NVLink over >2 GPUs is slow
    for inst in s.instances:
        if inst.parallelism != "tensor" or len(inst.gpus) < 2:
            continue
        levels = set()
        for a in inst.gpus:
            ga = s.gpu(a)
            for b in inst.gpus:
                if ga is not None and b > a and str(b) in ga.topology:
                    levels.add(_topo_kind(ga.topology[str(b)]))
        if "SYS" in levels:
            status = WARN
            notes.append(f"tensor-parallel {inst.name} crosses the CPU socket (SYS): keep TP groups on one socket")
        elif levels and "NV" not in levels and len(inst.gpus) > 2:
            notes.append(f"tensor-parallel {inst.name} runs over PCIe on {len(inst.gpus)} GPUs: diminishing returns")
    return Check("topology", status, "; ".join(parts), notes)


def _matrix(s: Snapshot) -> list[str]:
    idx = [g.index for g in s.gpus]
    head = ("      " + "".join(f"GPU{i:<4}" for i in idx)).rstrip()
    rows = [head]
    for g in s.gpus:
        cells = "".join(f"{('X' if o == g.index else g.topology.get(str(o), '?')):<7}" for o in idx)
        rows.append(f"GPU{g.index:<3}{cells}".rstrip())
    return rows


def _links(snapshots: list[Snapshot], config: AlertConfig) -> list[Check]:
    busy = config.param("pcie_degraded", "busy_util_pct")
    last = snapshots[-1]
    out = []
    for g in last.gpus:
        if g.lost:
            continue
        p = g.pcie
        name = f"PCIe GPU {g.index}"
        if not p.max_gen and not p.max_width:
            out.append(Check(name, SKIP, "link not reported"))
            continue
        history = [s.gpu(g.index) for s in snapshots]
        history = [h for h in history if h is not None and not h.lost]
        busy_degraded = [h for h in history if link_degraded(h) and (h.utilization_gpu_pct or 0) >= busy]
        if busy_degraded:
            h = busy_degraded[-1]
            out.append(Check(name, WARN, f"{link_text(h)} while {h.utilization_gpu_pct:.0f} % busy",
                             ["reseat the card or move it to a full-width slot; check riser and BIOS PCIe settings"]))
        elif link_degraded(g):
            # an idle link may drop its generation, and on some boards its width, to save power
            out.append(Check(name, PASS, f"{link_text(g)}, idle",
                             ["idle links may run below their max generation or width to save power: "
                              "normal, judged again under load"]))
        else:
            out.append(Check(name, PASS, link_text(g)))
    return out


def _numa(snapshots: list[Snapshot]) -> Check:
    s = snapshots[-1]
    nodes = {g.numa_node for g in s.gpus if g.numa_node is not None}
    bad = numa_mismatches(s)
    if bad:
        notes = [f"pid {p.pid} ({p.name or '?'}) on GPU {g.index} runs on CPUs {cpu_ranges(c)}, "
                 f"GPU is local to CPUs {cpu_ranges(g.cpu_affinity)}" for g, p, c in bad]
        notes.append("pin with `numactl --cpunodebind=N` or `taskset -c CPUS` (cross-socket costs 20-40 %)")
        return Check("NUMA placement", WARN, f"{plural(len(bad), 'serving process', 'serving processes')} on the "
                                             f"wrong NUMA node", notes)
    if len(nodes) <= 1:
        if not nodes:
            return Check("NUMA placement", SKIP, "NUMA layout not reported")
        return Check("NUMA placement", PASS, "single NUMA node")
    procs = sum(1 for g in s.gpus for p in g.processes if p.cpu_affinity)
    if not procs:
        return Check("NUMA placement", SKIP, f"{len(nodes)} NUMA nodes; no GPU process with a known CPU affinity "
                                            f"to check")
    return Check("NUMA placement", PASS, f"{len(nodes)} NUMA nodes; {plural(procs, 'GPU process', 'GPU processes')} "
                                         f"checked, all local")


def _fabric(s: Snapshot) -> Check | None:
    """NVSwitch fabric and NVLinks, on boxes whose GPUs have NVLinks."""
    linked = [g for g in s.gpus if not g.lost and ((g.nvlink and g.nvlink.links_total) or g.fabric_state)]
    if not linked:
        return None
    bad = fabric_problems(s)
    if bad:
        return Check("NVLink fabric", FAIL, fabric_summary(bad), [FABRIC_FIX])
    states = {g.fabric_state for g in linked if g.fabric_state}
    fabric = f", fabric {', '.join(sorted(states))}" if states else ""
    return Check("NVLink fabric", PASS, f"all NVLinks active on {len(linked)} GPUs{fabric}")


def _mig(s: Snapshot) -> Check | None:
    on = [g for g in s.gpus if g.mig_mode]
    if not on:
        return None
    notes = [f"GPU {g.index}: {len(g.mig_devices)} MIG device(s): "
             + ", ".join((d.name or f"MIG {d.index}").rsplit(" ", 1)[-1] for d in g.mig_devices) for g in on]
    notes.append("whole-GPU utilization is not reported in MIG mode: imbalance and busy-link checks skip these GPUs")
    return Check("MIG", PASS, f"MIG mode on GPU {_idx(g.index for g in on)}", notes)


def _pid_namespace(s: Snapshot) -> Check | None:
    """Process lists gpuwatch cannot trust: a container's PID namespace, or garbled PIDs."""
    if s.pid_namespace == "container":
        return Check("GPU processes", WARN, "NVML's process IDs are the host's and cannot be resolved here",
                     [PID_NAMESPACE_NOTE])
    garbled = [g for g in s.gpus if "processes" in g.errors]
    if garbled:
        return Check("GPU processes", WARN, f"the driver lists impossible PIDs on GPU {_idx(g.index for g in garbled)}",
                     [garbled[0].errors["processes"]])
    return None


def _ecc(s: Snapshot) -> Check | None:
    counts = {g.index: g.ecc_uncorrected_volatile for g in s.gpus if g.ecc_uncorrected_volatile is not None}
    if not counts:
        return None
    bad = {i: n for i, n in counts.items() if n}
    if bad:
        return Check("ECC", WARN, ", ".join(f"GPU {i}: {n} uncorrected since the driver loaded" for i, n in bad.items()),
                     ["not rising during this check (the ecc_errors alert fires when it rises); "
                      "check `nvidia-smi -q -d ECC,PAGE_RETIREMENT`: a rising count means failing memory"])
    return Check("ECC", PASS, f"no uncorrected errors on {len(counts)} GPUs")


def _instances(s: Snapshot) -> list[Check]:
    out = [Check("discovery", PASS, note) for note in s.discovery_notes]
    return out + _instance_checks(s)


def _instance_checks(s: Snapshot) -> list[Check]:
    if not s.instances:
        return [Check("instances", WARN, "no inference server found",
                      ["configure [[backends]] or check that Ollama/vLLM/llama.cpp/SGLang are listening"])]
    out = []
    for inst in s.instances:
        name = f"instance {inst.name}"
        model = inst.models[0].name if inst.models else "no model loaded"
        gpus = (f"GPU {_idx(inst.gpus)}" if inst.gpus else "the CPU (no GPU)" if inst.parallelism == "cpu"
                else "GPUs unknown")
        par = f", {inst.parallelism}" if inst.parallelism not in ("unknown", "single", "cpu") else ""
        if inst.status in ("loading", "sleeping"):  # not a fault (vLLM sleep mode, weights loading)
            detail = f": {inst.status_detail}" if inst.status_detail else ""
            out.append(Check(name, WARN if inst.status == "loading" else PASS,
                             f"{inst.kind} at {inst.url} is {inst.status} since {inst.status_since or '?'}{detail}"))
            continue
        if inst.status != "up":
            out.append(Check(name, FAIL, f"{engine_label(inst.kind)} at {inst.url} is {inst.status}: "
                                         f"{inst.error or 'no answer'}"))
            continue
        tps = f", {inst.generation_tokens_per_s:.0f} tok/s" if inst.generation_tokens_per_s is not None else ""
        notes = [" ".join(f"{k}={v}" for k, v in inst.settings.items())] if inst.settings else []
        if inst.meter_routes:  # issue 14: figures from a gpuwatch meter in front of it
            tps += f" (through gpuwatch meter {', '.join(inst.meter_routes)})"
        elif inst.kind == "ollama" and inst.generation_tokens_per_s is None:
            notes.append("no token counters: run `gpuwatch meter` in front of it for live tok/s (docs/METER.md)")
        status = PASS
        order = device_order_problem(s, inst)
        if order:
            status = WARN
            notes.append(order)
        out.append(Check(name, status, f"{engine_label(inst.kind)} {inst.version or ''} up, {model} on {gpus}{par}{tps}".replace("  ", " "),
                         notes))
    return out


def device_order_problem(s: Snapshot, inst) -> str | None:
    """CUDA numbers GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID; nvidia-smi (and
    NVML) number them by PCI bus. On a box with one GPU model the two orders agree; with
    different models ``CUDA_VISIBLE_DEVICES=1`` may be another card than nvidia-smi's GPU 1.
    Source: CUDA C Programming Guide, "CUDA Environment Variables" (CUDA_DEVICE_ORDER)."""
    visible = inst.settings.get("CUDA_VISIBLE_DEVICES")
    models = {g.name for g in s.gpus if g.name}
    if visible is None or len(models) < 2 or inst.settings.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        return None
    return (f"CUDA_VISIBLE_DEVICES={visible} on a box with {len(models)} GPU models but CUDA_DEVICE_ORDER is not "
            f"PCI_BUS_ID: CUDA counts the fastest GPU first, nvidia-smi by PCI bus, so this instance may not be on "
            f"the GPUs you meant; set CUDA_DEVICE_ORDER=PCI_BUS_ID in its environment")


def _pools(s: Snapshot) -> list[Check]:
    out = []
    for pool in s.pools:
        parts = []
        for m in pool.members:
            flags = "".join(f" {f}" for f in ("backup", "down") if getattr(m, f))
            parts.append(f"{m.instance or m.url} (weight {m.weight}{flags})")
        out.append(Check(f"pool {pool.name}", PASS, f"nginx {pool.method}: " + ", ".join(parts), [f"from {pool.source}"]))
    return out


def _alerts(alerts: Iterable[Alert], seconds: float | None = None) -> list[Check]:
    alerts = list(alerts)
    if not alerts:
        during = f" during this {seconds:.0f} s look" if seconds else " during this look"
        return [Check("alerts", PASS, f"none raised{during} (the checks above stand on their own)")]
    status = {"critical": FAIL, "warning": WARN, "info": PASS}
    return [Check(f"alert {a.kind}", status.get(a.severity, WARN), a.message if a.subject in a.message
                  else f"{a.subject}: {a.message}") for a in alerts]


def _span_s(snapshots: list[Snapshot]) -> float | None:
    from .history import _epoch
    first, last = _epoch(snapshots[0].time), _epoch(snapshots[-1].time)
    return None if first is None or last is None else max(1.0, last - first)


def _idx(indices: Iterable[int]) -> str:
    return ", ".join(str(i) for i in indices)
