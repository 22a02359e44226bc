"""PromQL results -> one :class:`~gpuwatch.model.Snapshot` per host.

Three families of series, each described by TABLES (metric -> model field, unit conversion),
never by per-metric code:

- **gpuwatch**: what ``gpuwatch serve`` exports (:mod:`gpuwatch.fleet.names`), read back one to one.
- **DCGM**: NVIDIA's dcgm-exporter (``DCGM_FI_*``, labels ``Hostname``, ``gpu``, ``UUID``,
  ``modelName``). Units and kinds as dcgm-exporter's ``etc/default-counters.csv`` and
  ``etc/dcp-metrics-included.csv`` document them, corrected where the exporter's TYPE line is wrong
  (see the notes at :data:`DCGM_GPU`).
- **engines**: inference servers scraped directly (``vllm:``, ``sglang:``, ``llamacpp:``), with the
  metric names of :mod:`gpuwatch.collect.engines.names`; token counters through ``rate()``.

A host where gpuwatch runs is read from gpuwatch's series only (they already hold its GPUs and its
inference servers); DCGM and engine series fill in hosts where gpuwatch does not run.

All hosts come from few queries per refresh (:func:`build_queries`): one instant query for every
gauge of every family across all hosts, one for every counter rate, and -- once a minute and when
a box or GPU is new -- one for the GPUs' static properties (``Series.static``: memory, thresholds,
maximum clocks and link; kept between refreshes by :class:`~gpuwatch.fleet.source.FleetSource`).
Throttle reasons come only while active (``> 0.5``): an inactive one reads the same as none.
Parsing walks each sample once with a dict lookup by metric name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ..collect.engines import names as engine_names
from ..vocab import decode_throttle_reasons
from ..model import GPU, Alert, Instance, ModelInfo, NvLink, Pcie, Snapshot
from . import names as N
from ..sanitize import clean_snapshot
from .promql import QueryResult

MIB = 1024 * 1024
NAME_LABEL = "gw_metric"  # carries the metric name through rate() in the rates query
RATE_WINDOW = "1m"
LAST_SAMPLE = "gpuwatch_host_last_sample"  # a name of our own for the last-scrape subquery's result
LAST_SAMPLE_WINDOW = "15m"  # a box quiet for longer is no longer listed by a one-shot snapshot
LAST_SAMPLE_STEP_S = 5  # the subquery's resolution: the time it gives lags by up to this much
LAST_SAMPLE_STEP = f"{LAST_SAMPLE_STEP_S}s"


@dataclass(frozen=True)
class Field:
    metric: str
    path: str  # model attribute ("pcie.tx_bytes_per_s"); "#name" for a value kept aside for a derivation
    scale: float = 1.0  # model value = metric value * scale
    cast: type = float
    mode: str = "gauge"  # gauge | rate (query rate(metric[window])) | mask (throttle bitmask)
    prio: int = 0  # several metrics for one field: the lowest prio present wins
    agg: str = "sum"  # engines: how several series of one instance combine (sum | max)
    static: bool = False  # gpuwatch's series of what does not change while a box runs (names.Series.static)


# ---- gpuwatch's own series (the exporter's table, inverted) ---------------------------------------
def _from_series(table) -> tuple[Field, ...]:
    out = []
    for s in table:
        if s.path.startswith("#") and s.path != "#up":
            continue
        out.append(Field(s.metric, s.path, 1.0 / s.scale, s.cast, "rate" if s.kind == "counter" else "gauge",
                         static=s.static))
    return tuple(out)


GPUWATCH_GPU = _from_series(N.GPU_SERIES)
GPUWATCH_INSTANCE = _from_series(N.INSTANCE_SERIES)

# ---- DCGM exporter -------------------------------------------------------------------------------
# Notes (provenance: NVIDIA/dcgm-exporter etc/*.csv, issues #87/#88, #195, #354, #472; gpu-monitoring-tools #37):
# - FB_* are MiB. GPU_UTIL and MEM_COPY_UTIL are percent (0..100).
# - DCGM_FI_PROF_PCIE_{TX,RX}_BYTES and DCGM_FI_PROF_NVLINK_{TX,RX}_BYTES are *rates* in bytes/s
#   (gauges; PR #88 fixed their TYPE). Preferred when present.
# - DCGM_FI_DEV_PCIE_{TX,RX}_THROUGHPUT (deprecated, still in default-counters.csv with TYPE counter)
#   is NVML's nvmlDeviceGetPcieThroughput: a rate in KB/s, not monotonic (gpu-monitoring-tools #37).
#   x1000, as gpuwatch's own NVML collector converts it.
# - DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL (TYPE counter) is an instantaneous rate summed over all links and
#   both directions; measured against `nvidia-smi nvlink` deltas it is MB/s (a maintainer guessed KB/s in
#   #472). Used only without the PROF fields, split evenly into tx and rx.
# - DCGM_FI_DEV_CLOCK_THROTTLE_REASONS (renamed DCGM_FI_DEV_CLOCKS_EVENT_REASONS) is NVML's bitmask.
DCGM_GPU: tuple[Field, ...] = (
    Field("DCGM_FI_DEV_GPU_UTIL", "utilization_gpu_pct"),
    Field("DCGM_FI_DEV_MEM_COPY_UTIL", "utilization_memory_pct"),
    Field("DCGM_FI_DEV_FB_USED", "memory_used_bytes", MIB, int),
    Field("DCGM_FI_DEV_FB_FREE", "#fb_free_bytes", MIB),
    Field("DCGM_FI_DEV_FB_RESERVED", "memory_reserved_bytes", MIB, int),
    Field("DCGM_FI_DEV_GPU_TEMP", "temperature_c"),
    Field("DCGM_FI_DEV_SLOWDOWN_TEMP", "temperature_slowdown_c"),
    Field("DCGM_FI_DEV_SHUTDOWN_TEMP", "temperature_shutdown_c"),
    Field("DCGM_FI_DEV_POWER_USAGE", "power_w"),
    Field("DCGM_FI_DEV_ENFORCED_POWER_LIMIT", "power_limit_w"),
    Field("DCGM_FI_DEV_POWER_MGMT_LIMIT", "power_limit_w", prio=1),
    Field("DCGM_FI_DEV_SM_CLOCK", "sm_clock_mhz", cast=int),
    Field("DCGM_FI_DEV_MAX_SM_CLOCK", "sm_clock_max_mhz", cast=int),
    Field("DCGM_FI_DEV_MEM_CLOCK", "mem_clock_mhz", cast=int),
    Field("DCGM_FI_DEV_MAX_MEM_CLOCK", "mem_clock_max_mhz", cast=int),
    Field("DCGM_FI_DEV_FAN_SPEED", "fan_pct"),
    Field("DCGM_FI_DEV_PSTATE", "pstate", cast=int),
    Field("DCGM_FI_DEV_PCIE_LINK_GEN", "pcie.gen", cast=int),
    Field("DCGM_FI_DEV_PCIE_MAX_LINK_GEN", "pcie.max_gen", cast=int),
    Field("DCGM_FI_DEV_PCIE_LINK_WIDTH", "pcie.width", cast=int),
    Field("DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH", "pcie.max_width", cast=int),
    Field("DCGM_FI_PROF_PCIE_TX_BYTES", "pcie.tx_bytes_per_s"),
    Field("DCGM_FI_PROF_PCIE_RX_BYTES", "pcie.rx_bytes_per_s"),
    Field("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", "pcie.tx_bytes_per_s", 1000.0, prio=1),
    Field("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", "pcie.rx_bytes_per_s", 1000.0, prio=1),
    Field("DCGM_FI_PROF_NVLINK_TX_BYTES", "nvlink.tx_bytes_per_s"),
    Field("DCGM_FI_PROF_NVLINK_RX_BYTES", "nvlink.rx_bytes_per_s"),
    Field("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "#nvlink_total_bytes_per_s", 1e6),
    Field("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "throttle_reasons", mode="mask"),
    Field("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "throttle_reasons", mode="mask"),
    Field("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "ecc_uncorrected_volatile", cast=int),
)

# ---- inference servers scraped directly -------------------------------------------------------------
# logical metric (collect/engines/names.py) -> (model field, scale, mode, aggregation over label sets)
ENGINE_LOGICAL: dict[str, tuple[str, float, str, str]] = {
    "requests_running": ("requests_running", 1.0, "gauge", "sum"),
    "requests_waiting": ("requests_waiting", 1.0, "gauge", "sum"),
    "kv_cache_fraction": ("kv_cache_usage_pct", 100.0, "gauge", "max"),
    "prefix_cache_hit_fraction": ("prefix_cache_hit_pct", 100.0, "gauge", "max"),
    "generation_tokens": ("generation_tokens_per_s", 1.0, "rate", "sum"),
    "prompt_tokens": ("prompt_tokens_per_s", 1.0, "rate", "sum"),
    "preemptions": ("preemptions_per_s", 1.0, "rate", "sum"),
}


def _engine_fields() -> dict[str, tuple[str, Field]]:
    out: dict[str, tuple[str, Field]] = {}
    for kind, table in engine_names.METRICS.items():
        for logical, candidates in table.items():
            spec = ENGINE_LOGICAL.get(logical)
            if spec is None:
                continue
            path, scale, mode, agg = spec
            for prio, metric in enumerate(candidates):
                if "{" in metric:
                    continue  # a label-selected series (SGLang's realtime_tokens{mode=...}): not mapped here
                out[metric] = (kind, Field(metric, path, scale, float, mode, prio, agg))
    return out


ENGINE_FIELDS = _engine_fields()

# ---- how each family names its host, GPU and identity ------------------------------------------------
# "@instance": Prometheus's target label with its port removed
HOST_LABELS = {
    "gpuwatch": ("host",),
    "dcgm": ("Hostname", "hostname", "host", "@instance"),
    "engine": ("host", "@instance"),
}
GPU_IDENTITY_LABELS = {  # model field -> label, per family
    "gpuwatch": {"uuid": "uuid", "name": "name", "pci_bus_id": "pci_bus_id"},
    "dcgm": {"uuid": "UUID", "name": "modelName", "pci_bus_id": "pci_bus_id"},
}
HOST_INFO_LABELS = {"driver_version": "driver_version", "cuda_version": "cuda_version",
                    "nvml_version": "nvml_version", "scenario": "scenario", "nvml_error": "nvml_error"}
DCGM_HOST_LABELS = {"driver_version": "DCGM_FI_DRIVER_VERSION"}


def _by_metric(fields) -> dict[str, Field]:
    return {f.metric: f for f in fields}


GW_INST = _by_metric(GPUWATCH_INSTANCE)
DCGM = _by_metric(DCGM_GPU)


def build_queries(window: str = RATE_WINDOW) -> dict[str, str]:
    """The instant queries of a refresh, for every host at once: {"gauges": ..., "rates": ...,
    "static": ...}; "static" runs only when the static properties are due (FleetSource)."""
    gauges = [f.metric for f in (*GPUWATCH_GPU, *GPUWATCH_INSTANCE, *DCGM_GPU) if f.mode != "rate" and not f.static]
    gauges += [m for m in N.INFO_SERIES if m not in N.STATIC_INFO and m != N.GPU_THROTTLE]
    gauges += [m for m, (_, f) in ENGINE_FIELDS.items() if f.mode != "rate"]
    static = [f.metric for f in GPUWATCH_GPU if f.static] + list(N.STATIC_INFO)
    rates = [f.metric for f in (*GPUWATCH_GPU, *GPUWATCH_INSTANCE) if f.mode == "rate"]
    rates += [m for m, (_, f) in ENGINE_FIELDS.items() if f.mode == "rate"]
    names = "|".join(sorted(set(gauges)))
    # throttle reasons: one 0/1 series per reason and GPU (nine on an H100), nearly all 0 -- a
    # quarter of a fleet's samples. Only the active ones are asked for: `or` adds them to the
    # gauges (it matches series on their labels but the name, and only these carry `reason`), and
    # a comparison without `bool` keeps the metric name (checked on Prometheus 2.42)
    throttle = f"{N.GPU_THROTTLE} > 0.5"
    # when each gpuwatch box (host label, scrape target) was last scraped, over LAST_SAMPLE_WINDOW:
    # its `timestamp()` is the sample's own time, and last_over_time of the subquery keeps it after
    # the series ended (a box that stopped is then still known, with since when)
    last = (f'label_replace(last_over_time(timestamp({N.HOST_INFO})[{LAST_SAMPLE_WINDOW}:{LAST_SAMPLE_STEP}]), '
            f'"{NAME_LABEL}", "{LAST_SAMPLE}", "", "")')
    # rate() drops the metric name and `or` matches series on their other labels: label_replace puts
    # the name into a label of its own, so that one query carries every rate of every host
    rate_q = " or ".join(f'label_replace(rate({m}[{window}]), "{NAME_LABEL}", "{m}", "", "")'
                         for m in sorted(set(rates))) + " or " + last
    return {"gauges": f'{{__name__=~"{names}"}} or {throttle}', "rates": rate_q,
            "static": f'{{__name__=~"{"|".join(sorted(static))}"}}'}


def exported_alert(host: str, labels: dict) -> Alert:
    """An alert the box's own gpuwatch raised, as its ``gpuwatch_alert`` series carries it (kind,
    severity, subject: the message with its numbers is not a label, it would churn series): the
    rule's own description says what it means."""
    from ..analysis.rules import RULES

    kind = labels.get("kind") or "alert"
    rule = RULES.get(kind)
    what = rule.summary if rule is not None else "an alert"
    return Alert(kind=kind, severity=labels.get("severity", "warning"), subject=labels.get("subject", "box"),
                 message=f"{kind}: {what} (raised by gpuwatch on {host}; its dashboard has the numbers)")


# ---- building snapshots -----------------------------------------------------------------------------
_NESTED = {"pcie": Pcie, "nvlink": NvLink}  # the GPU's parts a dotted path names


def _setter(path: str) -> Callable:
    if "." not in path:
        return lambda obj, v: setattr(obj, path, v)
    head, attr = path.split(".", 1)
    factory = _NESTED[head]

    def set_nested(obj, v):
        sub = getattr(obj, head)
        if sub is None:
            sub = factory()
            setattr(obj, head, sub)
        setattr(sub, attr, v)
    return set_nested


_SETTERS: dict[str, Callable] = {}


def _applier(f: Field) -> Callable:
    """``apply(gpu, value)``: a gpuwatch GPU field's conversion (``_convert``) and assignment in
    one call. Each gpuwatch GPU series fills a field no other one does (a test checks), so no
    priority is kept for them: most of a fleet's samples take this path."""
    setter, scale = _setter(f.path), f.scale
    if f.cast is int:
        def apply(obj, v):
            v = v * scale
            setter(obj, int(round(v)) if math.isfinite(v) else v)
    elif f.cast is bool:
        def apply(obj, v):
            v = v * scale
            setter(obj, v >= 0.5 if math.isfinite(v) else v)
    else:
        def apply(obj, v):
            setter(obj, v * scale)
    return apply


GW_GPU_APPLY = {f.metric: _applier(f) for f in GPUWATCH_GPU}


def _set(obj, path: str, v) -> None:
    fn = _SETTERS.get(path)
    if fn is None:
        fn = _SETTERS[path] = _setter(path)
    fn(obj, v)


def _get(obj, path: str):
    head, _, attr = path.partition(".")
    value = getattr(obj, head)
    return getattr(value, attr) if attr and value is not None else value


# the GPU fields of gpuwatch's static series, and the two its gpu_info series carries:
# (path, attribute, attribute of it or "")
STATIC_PATHS = tuple((p, *p.partition(".")[::2])
                     for p in (*(f.path for f in GPUWATCH_GPU if f.static), "name", "pci_bus_id"))


def _host_of(labels: dict, family: str) -> str | None:
    for name in HOST_LABELS[family]:
        if name == "@instance":
            inst = labels.get("instance")
            if inst:
                return _strip_port(inst)
        else:
            v = labels.get(name)
            if v:
                return v
    return None


def _small_int(text: str) -> bool:
    """Whether a label is a small whole number in ASCII digits ("²".isdigit() is True too)."""
    return 0 < len(text) <= 6 and text.isascii() and text.isdigit()


def _strip_port(addr: str) -> str:
    if addr.startswith("["):
        return addr[1:].split("]", 1)[0]
    return addr.rsplit(":", 1)[0] if addr.count(":") == 1 else addr


def _port_of(addr: str) -> str:
    return addr.rsplit(":", 1)[1] if ":" in addr else addr


def _convert(f: Field, v: float):
    v = v * f.scale
    if not math.isfinite(v):
        return v  # +Inf stays as it is: the sanitiser makes it a bad reading, with the reason
    if f.cast is int:
        return int(round(v))
    if f.cast is bool:
        return v >= 0.5
    return v


@dataclass
class _Host:
    name: str
    gpuwatch: bool = False  # gpuwatch runs here: its series win
    info: dict = field(default_factory=dict)
    gw_gpus: dict[int, GPU] = field(default_factory=dict)
    gw_by_label: dict[str, GPU] = field(default_factory=dict)  # the same GPUs by their `gpu` label as given
    dc_gpus: dict[int, GPU] = field(default_factory=dict)
    gw_inst: dict[str, Instance] = field(default_factory=dict)
    en_inst: dict[str, Instance] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    prio: dict = field(default_factory=dict)  # (id(obj), path) -> prio of the value set
    extra: dict = field(default_factory=dict)  # (gpu index, "#name") -> value
    targets: set = field(default_factory=set)  # Prometheus's `instance` labels its series came from


class FleetBuilder:
    """Feed it query results; :meth:`snapshots` gives one Snapshot per host, sorted by host."""

    def __init__(self) -> None:
        self.hosts: dict[str, _Host] = {}
        self.eval_time: float | None = None
        self.unmatched = 0  # samples of a known metric without a host label
        self.skipped = 0  # malformed samples left out
        self.last_sample: dict[str, float] = {}  # host -> time of its newest sample (gpuwatch boxes)
        self.recent_targets: dict[str, set[str]] = {}  # host -> scrape targets seen in LAST_SAMPLE_WINDOW
        self._create = True

    class _Skip(Exception):
        pass

    def _host(self, name: str) -> _Host:
        h = self.hosts.get(name)
        if h is None:
            if not self._create:
                raise self._Skip
            h = self.hosts[name] = _Host(name)
        return h

    def add(self, result: QueryResult, create: bool = True) -> None:
        """``create=False`` (rates): samples only fill hosts, GPUs and instances the gauges
        showed; a rate over a window outlives the series of a box that stopped."""
        self._create = create
        if result.eval_time is not None:
            self.eval_time = result.eval_time
        for s in result.samples:
            labels = s.labels
            metric = labels.get(NAME_LABEL) or labels.get("__name__", "")
            if metric == LAST_SAMPLE:
                self._last_sample(labels, s.value)
                continue
            try:
                if metric.startswith(N.PREFIX):
                    self._gpuwatch(metric, labels, s.value)
                elif metric.startswith("DCGM_"):
                    f = DCGM.get(metric)
                    if f is not None:
                        self._dcgm(f, labels, s.value)
                else:
                    spec = ENGINE_FIELDS.get(metric)
                    if spec is not None:
                        self._engine(spec[0], spec[1], labels, s.value)
            except self._Skip:
                continue
            except (ValueError, TypeError, AttributeError, OverflowError):
                self.skipped += 1  # one malformed sample, not the whole refresh
                continue

    def _last_sample(self, labels: dict, v: float) -> None:
        host = labels.get("host")
        if host:
            self.last_sample[host] = max(v, self.last_sample.get(host, v))
            if labels.get("instance"):
                self.recent_targets.setdefault(host, set()).add(labels["instance"])

    # -- gpuwatch --
    def _gpuwatch(self, metric: str, labels: dict, v: float) -> None:
        hname = labels.get("host")
        if not hname:
            self.unmatched += 1
            return
        h = self.hosts.get(hname) or self._host(hname)
        h.gpuwatch = True
        if "instance" in labels:
            h.targets.add(labels["instance"])
        apply = GW_GPU_APPLY.get(metric)
        if apply is not None:
            apply(self._gw_gpu(h, labels), v)
            return
        f = GW_INST.get(metric)
        if f is not None:
            inst = self._gw_inst(h, labels)
            if f.path == "#up":
                if v < 0.5 and inst.status == "up":
                    inst.status = "down"
                return
            self._set_value(h, inst, f, v)
            return
        if metric == N.GPU_THROTTLE:
            if v >= 0.5:
                g = self._gw_gpu(h, labels)
                reason = labels.get("reason")
                if reason and reason not in g.throttle_reasons:
                    g.throttle_reasons.append(reason)
        elif metric == N.GPU_INFO:
            g = self._gw_gpu(h, labels)
            g.name = labels.get("name") or g.name
            g.pci_bus_id = labels.get("pci_bus_id") or g.pci_bus_id
        elif metric == N.HOST_INFO:
            for attr, label in HOST_INFO_LABELS.items():
                if labels.get(label):
                    h.info[attr] = labels[label]
        elif metric == N.INSTANCE_INFO:
            inst = self._gw_inst(h, labels)
            inst.status = labels.get("status") or inst.status
            inst.parallelism = labels.get("parallelism") or inst.parallelism
            if _small_int(labels.get("parallel_size", "")):
                inst.parallel_size = int(labels["parallel_size"])
            inst.version = labels.get("version") or None
            if labels.get("model") and not inst.models:
                inst.models.append(ModelInfo(name=labels["model"]))
            gpus = [int(x) for x in labels.get("gpus", "").split(",") if _small_int(x.strip())]
            if gpus:
                inst.gpus = sorted(set(inst.gpus) | set(gpus))
        elif metric == N.INSTANCE_GPU_MEMORY:
            inst = self._gw_inst(h, labels)
            gpu = labels.get("gpu", "")
            if _small_int(gpu) and math.isfinite(v):
                inst.gpu_memory_bytes[gpu] = int(v)
                if int(gpu) not in inst.gpus:
                    inst.gpus = sorted([*inst.gpus, int(gpu)])
        elif metric == N.INSTANCE_MODEL:
            inst = self._gw_inst(h, labels)
            name = labels.get("model")
            if name:
                m = next((m for m in inst.models if m.name == name), None)
                if m is None:
                    m = ModelInfo(name=name)
                    inst.models.append(m)
                m.cpu_offload_pct = v * 100.0
        elif metric == N.ALERT:
            if v >= 0.5:
                h.alerts.append(exported_alert(hname, labels))

    def _gw_gpu(self, h: _Host, labels: dict) -> GPU:
        raw = labels.get("gpu", "")
        g = h.gw_by_label.get(raw)
        if g is None:
            g = self._gpu(h.gw_gpus, labels, GPU_IDENTITY_LABELS["gpuwatch"])
            if _small_int(raw):  # (any other label makes a GPU of its own each time, as _gpu does)
                h.gw_by_label[raw] = g
        return g

    def _gpu(self, gpus: dict, labels: dict, ident: dict) -> GPU:
        raw = labels.get("gpu", "")
        index = int(raw) if _small_int(raw) else len(gpus)
        g = gpus.get(index)
        if g is None:
            if not self._create:
                raise self._Skip
            g = gpus[index] = GPU(index=index)
            for attr, label in ident.items():
                if labels.get(label):
                    setattr(g, attr, labels[label])
        return g

    def _gw_inst(self, h: _Host, labels: dict) -> Instance:
        name = labels.get("instance_name") or "?"
        inst = h.gw_inst.get(name)
        if inst is None:
            if not self._create:
                raise self._Skip
            inst = h.gw_inst[name] = Instance(name=name, kind=labels.get("kind") or "unknown", url="",
                                              status="up", source="prometheus")
        return inst

    def _set_value(self, h: _Host, obj, f: Field, v: float) -> None:
        if f.path.startswith("#"):
            h.extra[(id(obj), f.path)] = v * f.scale
            return
        key = (id(obj), f.path)
        have = h.prio.get(key)
        if have is not None and have < f.prio:
            return  # a preferred metric already filled this field
        h.prio[key] = f.prio
        if f.mode == "mask":
            if math.isfinite(v) and 0 <= v < 2**64:
                obj.throttle_reasons = decode_throttle_reasons(int(v))
        else:
            _set(obj, f.path, _convert(f, v))

    # -- DCGM --
    def _dcgm(self, f: Field, labels: dict, v: float) -> None:
        hname = _host_of(labels, "dcgm")
        if not hname:
            self.unmatched += 1
            return
        h = self._host(hname)
        if "instance" in labels:
            h.targets.add(labels["instance"])
        g = self._gpu(h.dc_gpus, labels, GPU_IDENTITY_LABELS["dcgm"])
        for attr, label in DCGM_HOST_LABELS.items():
            if labels.get(label):
                h.info.setdefault(attr, labels[label])
        self._set_value(h, g, f, v)

    # -- inference servers --
    def _engine(self, kind: str, f: Field, labels: dict, v: float) -> None:
        hname = _host_of(labels, "engine")
        if not hname:
            self.unmatched += 1
            return
        h = self._host(hname)
        target = labels.get("instance") or hname
        h.targets.add(target)
        key = f"{kind}:{_port_of(target)}"
        inst = h.en_inst.get(key)
        if inst is None:
            if not self._create:
                raise self._Skip
            inst = h.en_inst[key] = Instance(name=key, kind=kind, url=f"http://{target}", status="up",
                                             source="prometheus")
        model = labels.get(engine_names.MODEL_LABEL.get(kind, "model_name"))
        if model and all(m.name != model for m in inst.models):
            inst.models.append(ModelInfo(name=model))
        # several series per instance (models, engines, ranks) combine; candidates: lowest prio wins
        pkey = (id(inst), f.path)
        have = h.prio.get(pkey)
        if have is not None and have < f.prio:
            return
        current = getattr(inst, f.path)
        value = v * f.scale
        if have is None or have > f.prio or current is None:
            h.prio[pkey] = f.prio
            setattr(inst, f.path, value)
        else:
            setattr(inst, f.path, current + value if f.agg == "sum" else max(current, value))

    # -- static properties, read once a minute (FleetSource) --
    def gpuwatch_gpus(self) -> set[tuple[str, int]]:
        """(host, GPU index) of every GPU of a host where gpuwatch runs."""
        return {(name, i) for name, h in self.hosts.items() if h.gpuwatch for i in h.gw_gpus}

    def static_values(self) -> dict[str, dict[int, tuple]]:
        """What this builder read of the static properties: host -> GPU index -> ((attribute,
        attribute of it or "", value), ...) (``pcie.max_gen`` is ("pcie", "max_gen", 5))."""
        out: dict[str, dict[int, tuple]] = {}
        for name, h in self.hosts.items():
            if h.gpuwatch:
                out[name] = {i: tuple((head, attr, v) for path, head, attr in STATIC_PATHS
                                      if (v := _get(g, path)) is not None)
                             for i, g in h.gw_gpus.items()}
        return out

    def apply_static(self, static: dict[str, dict[int, tuple]]) -> None:
        """Fill the static properties of the GPUs read so far from ``static_values()`` of an earlier
        answer; a value read in this refresh wins."""
        for name, h in self.hosts.items():
            mine = static.get(name) if h.gpuwatch else None
            if not mine:
                continue
            for i, g in h.gw_gpus.items():
                for head, attr, v in mine.get(i, ()):
                    if not attr:
                        if getattr(g, head) is None:
                            setattr(g, head, v)
                        continue
                    sub = getattr(g, head)
                    if sub is None:
                        sub = _NESTED[head]()
                        setattr(g, head, sub)
                    if getattr(sub, attr) is None:
                        setattr(sub, attr, v)

    # -- result --
    def snapshots(self, time_iso: str, collect_ms: float | None = None) -> list[Snapshot]:
        out = []
        for name in sorted(self.hosts):
            h = self.hosts[name]
            if h.gpuwatch:
                gpus, instances = h.gw_gpus, list(h.gw_inst.values())
            else:
                gpus, instances = h.dc_gpus, list(h.en_inst.values())
            gpu_list = [gpus[i] for i in sorted(gpus)]
            for g in gpu_list:
                _derive(h, g)
            by_index = {g.index: g for g in gpu_list}
            for inst in instances:
                for i in inst.gpus:
                    g = by_index.get(i)
                    if g is not None and inst.name not in g.instances:
                        g.instances.append(inst.name)
            info = h.info
            snap = Snapshot(time=time_iso, host=name, driver_version=info.get("driver_version"),
                            cuda_version=info.get("cuda_version"), nvml_version=info.get("nvml_version"),
                            nvml_error=info.get("nvml_error"), gpus=gpu_list, instances=instances,
                            alerts=list(h.alerts), collect_ms=collect_ms, source="prometheus",
                            scenario=info.get("scenario"))
            try:
                out.append(clean_snapshot(snap))  # labels and values from Prometheus: outside data
            except ValueError:
                continue
        return out


def _derive(h: _Host, g: GPU) -> None:
    """Fields a family gives only indirectly (a table of small derivations)."""
    for fn in DERIVATIONS:
        fn(h, g)


def _total_memory(h: _Host, g: GPU) -> None:
    free = h.extra.get((id(g), "#fb_free_bytes"))
    if g.memory_total_bytes is None and free is not None and g.memory_used_bytes is not None:
        g.memory_total_bytes = int(g.memory_used_bytes + free + (g.memory_reserved_bytes or 0))


def _nvlink_total(h: _Host, g: GPU) -> None:
    total = h.extra.get((id(g), "#nvlink_total_bytes_per_s"))
    if total is None:
        return
    if g.nvlink is None:
        g.nvlink = NvLink()
    if g.nvlink.tx_bytes_per_s is None and g.nvlink.rx_bytes_per_s is None:
        g.nvlink.tx_bytes_per_s = g.nvlink.rx_bytes_per_s = total / 2


DERIVATIONS = (_total_memory, _nvlink_total)


def build_snapshots(results: list[QueryResult], time_iso: str, collect_ms: float | None = None) -> list[Snapshot]:
    b = FleetBuilder()
    for r in results:
        b.add(r, create=not r.samples or NAME_LABEL not in r.samples[0].labels)
    return b.snapshots(time_iso, collect_ms)
