"""Every GPU through NVML (nvidia-ml-py), into plain :mod:`gpuwatch.model` objects.

Design:
- What never changes (names, UUIDs, thresholds, max clocks and links, topology, NUMA) is read
  once at open; what changes only when someone acts (persistence, NVLink states, the enforced
  power limit, the ECC count, display processes) every ``slow_every_s``.
- Per tick, per GPU: a fixed list of cheap calls plus ONE ``nvmlDeviceGetFieldValues`` call
  that batches the cumulative PCIe and NVLink byte counters; rates are differences between
  ticks (:class:`CounterRates`).
- ``nvmlDeviceGetPcieThroughput`` blocks ~20 ms per call; where a GPU has no PCIe byte
  counters it is sampled by a background thread (:class:`PcieSampler`), never on the tick.
- Faults are data: a field the GPU does not support is None and is not asked again; a
  function the driver lacks is probed once; a GPU that fell off the bus is ``lost`` while the
  others go on; no library or no driver is a sentence in ``NvmlReading.error``.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from dataclasses import dataclass, field

import pynvml as N

from ..model import GPU, NvLink, Pcie, Process
from ..vocab import decode_throttle_reasons
from .procs import ProcessTable
from .rates import CounterRates

TOPOLOGY_LEVELS = {
    N.NVML_TOPOLOGY_INTERNAL: "X",
    N.NVML_TOPOLOGY_SINGLE: "PIX",
    N.NVML_TOPOLOGY_MULTIPLE: "PXB",
    N.NVML_TOPOLOGY_HOSTBRIDGE: "PHB",
    N.NVML_TOPOLOGY_NODE: "NODE",
    N.NVML_TOPOLOGY_SYSTEM: "SYS",
}

NVLINK_SCOPE_ALL = 0xFFFFFFFF
_VALUE_BITS = {
    N.NVML_VALUE_TYPE_UNSIGNED_INT: 32,
    N.NVML_VALUE_TYPE_UNSIGNED_LONG: 64,
    N.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: 64,
    N.NVML_VALUE_TYPE_SIGNED_LONG_LONG: 63,
    N.NVML_VALUE_TYPE_SIGNED_INT: 31,
    N.NVML_VALUE_TYPE_UNSIGNED_SHORT: 16,
}


# the member of nvmlValue_t that holds each value type
_VALUE_MEMBER = {
    N.NVML_VALUE_TYPE_DOUBLE: "dVal",
    N.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    N.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
    N.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    N.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
    N.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
    N.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
}


class _FieldValue(ctypes.Structure):
    """nvmlFieldValue_t, laid out as pynvml lays it out, with plain ctypes attribute access:
    pynvml's own class routes every read and write through a formatting hook, which cost more
    than the driver call for the ~40 counters of an NVLink GPU."""

    _fields_ = N.c_nvmlFieldValue_t._fields_


def _field_request(ids: tuple):
    """An array of field values asking for ``ids`` (field id, or (field id, scope id))."""
    arr = (_FieldValue * len(ids))()
    for fv, fid in zip(arr, ids):
        if isinstance(fid, tuple):
            fv.fieldId, fv.scopeId = fid
        else:
            fv.fieldId = fid
    return arr


def _get_field_values(handle, arr):
    """``nvmlDeviceGetFieldValues`` on a prepared array: the C call pynvml makes, without
    building and formatting a new array of its own each time. Raises pynvml's NVMLError."""
    fn = N._nvmlGetFunctionPointer("nvmlDeviceGetFieldValues")
    N._nvmlCheckReturn(fn(handle, ctypes.c_int32(len(arr)), ctypes.byref(arr)))
    return arr


def _field_value(fv) -> tuple[float | None, int | None]:
    """(value, counter bits) of an nvmlFieldValue_t, or (None, None) when it failed."""
    if fv.nvmlReturn != N.NVML_SUCCESS:
        return None, None
    t = fv.valueType
    member = _VALUE_MEMBER.get(t)
    if member is None:
        return None, None
    return getattr(fv.value, member), _VALUE_BITS.get(t)


def human_nvml_error(err: Exception) -> str:
    """One sentence an operator can act on, for a failure to open NVML."""
    if isinstance(err, N.NVMLError):
        code = err.value
        if code == N.NVML_ERROR_LIBRARY_NOT_FOUND:
            return ("No NVIDIA driver found: libnvidia-ml.so.1 could not be loaded. Install the NVIDIA "
                    "driver to see GPUs (inference servers are still shown; try `gpuwatch --demo`).")
        if code == N.NVML_ERROR_DRIVER_NOT_LOADED:
            return ("The NVIDIA driver is installed but not loaded (no nvidia kernel module): "
                    "check `dmesg | grep -i nvidia` and `lsmod | grep nvidia`.")
        if code == N.NVML_ERROR_NO_PERMISSION:
            return "No permission to open the NVIDIA driver: check access to /dev/nvidia* for this user."
        if code == N.NVML_ERROR_LIB_RM_VERSION_MISMATCH:
            return ("The NVIDIA library and kernel driver versions differ (driver updated without "
                    "a reboot?): reboot or reload the nvidia modules.")
        return f"NVML could not be initialised: {err}."
    return f"NVML could not be initialised: {err}."


class _Lost(Exception):
    pass


@dataclass
class _Static:
    """What is read once per GPU."""

    index: int
    handle: object
    uuid: str | None = None
    name: str | None = None
    pci_bus_id: str | None = None
    temperature_slowdown_c: float | None = None
    temperature_shutdown_c: float | None = None
    temperature_max_operating_c: float | None = None
    power_default_limit_w: float | None = None
    sm_clock_max_mhz: int | None = None
    mem_clock_max_mhz: int | None = None
    pcie_max_gen: int | None = None
    pcie_max_width: int | None = None
    nvlinks_total: int = 0
    nvlinks_active: list[int] = field(default_factory=list)
    numa_node: int | None = None
    cpu_affinity: list[int] | None = None
    persistence_mode: bool | None = None
    # read every slow_every_s: they change when an operator acts, not from tick to tick
    power_limit_w: float | None = None
    ecc_uncorrected: int | None = None
    graphics_procs: list = field(default_factory=list)
    topology: dict[str, str] = field(default_factory=dict)
    pcie_counters: bool = True  # does the GPU answer the PCIe byte-count fields?
    fields_request: tuple = ()  # the field ids of fields_array, which is reused tick after tick
    fields_array: object = None
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False


@dataclass
class NvmlReading:
    gpus: list[GPU]
    driver_version: str | None = None
    cuda_version: str | None = None
    nvml_version: str | None = None
    error: str | None = None


class PcieSampler:
    """Samples ``nvmlDeviceGetPcieThroughput`` (which blocks ~20 ms per call) for the GPUs that
    have no PCIe byte counters, on background threads, and caches the latest KB/s.
    The collection tick only reads the cache."""

    def __init__(self, period_s: float = 1.0, workers: int = 4) -> None:
        self.period_s = period_s
        self._handles: dict[int, object] = {}
        self._values: dict[int, tuple[float, float, float]] = {}  # index -> (tx B/s, rx B/s, t)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # a GPU was added: sample it now, not a period later
        self._threads: list[threading.Thread] = []
        self._workers = workers

    def watch(self, index: int, handle) -> None:
        with self._lock:
            new = index not in self._handles
            self._handles[index] = handle
        if new:
            self._wake.set()
        if not self._threads:
            for w in range(self._workers):
                th = threading.Thread(target=self._run, args=(w,), name=f"gpuwatch-pcie-{w}", daemon=True)
                th.start()
                self._threads.append(th)

    def unwatch(self, index: int) -> None:
        with self._lock:
            self._handles.pop(index, None)
            self._values.pop(index, None)

    def get(self, index: int) -> tuple[float | None, float | None]:
        with self._lock:
            v = self._values.get(index)
        if v is None:
            return None, None
        return v[0], v[1]

    def _run(self, worker: int) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            with self._lock:
                mine = [(i, h) for i, h in sorted(self._handles.items()) if i % self._workers == worker]
            for index, handle in mine:
                if self._stop.is_set():
                    return
                try:
                    tx = N.nvmlDeviceGetPcieThroughput(handle, N.NVML_PCIE_UTIL_TX_BYTES) * 1000.0
                    rx = N.nvmlDeviceGetPcieThroughput(handle, N.NVML_PCIE_UTIL_RX_BYTES) * 1000.0
                except N.NVMLError:
                    self.unwatch(index)
                    continue
                with self._lock:
                    if index in self._handles:
                        self._values[index] = (tx, rx, time.monotonic())
            self._wake.wait(max(0.05, self.period_s - (time.monotonic() - start)))
            self._wake.clear()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()


class NvmlCollector:
    def __init__(self, process_table=None, clock=time.monotonic, slow_every_s: float = 10.0,
                 pcie_sampler: PcieSampler | None = None, retry_open_s: float = 30.0) -> None:
        self.procs = process_table if process_table is not None else ProcessTable()
        self.clock = clock
        self.slow_every_s = slow_every_s
        self.retry_open_s = retry_open_s
        self.pcie = pcie_sampler or PcieSampler()
        self.rates = CounterRates()
        self._static: list[_Static] = []
        self._missing: set[str] = set()  # functions the driver lacks (probed once)
        self._open = False
        self._error: str | None = None
        self._last_open_try: float | None = None
        self._last_slow = 0.0
        self.driver_version: str | None = None
        self.cuda_version: str | None = None
        self.nvml_version: str | None = None
        self._lock = threading.Lock()

    # ---- probing helpers --------------------------------------------------------------
    def _call(self, st: _Static | None, key: str, fn, *args):
        """Call ``fn``; None if unsupported (remembered per GPU) or missing (remembered
        globally). Raises _Lost when the GPU fell off the bus."""
        if key in self._missing or (st is not None and key in st.unsupported):
            return None
        try:
            return fn(*args)
        except N.NVMLError_FunctionNotFound:
            self._missing.add(key)
        except N.NVMLError_NotSupported:
            if st is not None:
                st.unsupported.add(key)
        except N.NVMLError_GpuIsLost:
            raise _Lost() from None
        except N.NVMLError_ArgumentVersionMismatch:
            self._missing.add(key)
        except N.NVMLError:
            pass
        return None

    # ---- open ---------------------------------------------------------------------------
    def open(self) -> bool:
        self._last_open_try = self.clock()
        try:
            N.nvmlInit()
        except N.NVMLError as e:
            self._error = human_nvml_error(e)
            return False
        except OSError as e:  # a broken library file
            self._error = human_nvml_error(e)
            return False
        self._open = True
        self._error = None
        self.driver_version = self._call(None, "driver", N.nvmlSystemGetDriverVersion)
        self.nvml_version = self._call(None, "nvmlver", N.nvmlSystemGetNVMLVersion)
        cuda = self._call(None, "cuda", N.nvmlSystemGetCudaDriverVersion_v2)
        if cuda is None:
            cuda = self._call(None, "cuda_v1", N.nvmlSystemGetCudaDriverVersion)
        self.cuda_version = f"{cuda // 1000}.{(cuda % 1000) // 10}" if cuda else None
        count = self._call(None, "count", N.nvmlDeviceGetCount) or 0
        self._static = []
        for i in range(count):
            handle = self._call(None, "handle", N.nvmlDeviceGetHandleByIndex, i)
            st = _Static(index=i, handle=handle)
            self._static.append(st)
            if handle is None:
                st.lost = True
                continue
            try:
                self._read_static(st)
            except _Lost:
                st.lost = True
        self._read_topology()
        self._last_slow = self.clock()
        return True

    def _read_static(self, st: _Static) -> None:
        h = st.handle
        st.name = self._call(st, "name", N.nvmlDeviceGetName, h)
        st.uuid = self._call(st, "uuid", N.nvmlDeviceGetUUID, h)
        pci = self._call(st, "pci", N.nvmlDeviceGetPciInfo_v3, h)
        if pci is not None:
            bus = pci.busId
            st.pci_bus_id = bus.decode() if isinstance(bus, bytes) else bus
        for key, which in (("temperature_slowdown_c", N.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN),
                           ("temperature_shutdown_c", N.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN),
                           ("temperature_max_operating_c", N.NVML_TEMPERATURE_THRESHOLD_GPU_MAX)):
            setattr(st, key, self._call(st, key, N.nvmlDeviceGetTemperatureThreshold, h, which))
        limit = self._call(st, "power_default", N.nvmlDeviceGetPowerManagementDefaultLimit, h)
        st.power_default_limit_w = limit / 1000.0 if limit is not None else None
        st.sm_clock_max_mhz = self._call(st, "sm_max", N.nvmlDeviceGetMaxClockInfo, h, N.NVML_CLOCK_SM)
        st.mem_clock_max_mhz = self._call(st, "mem_max", N.nvmlDeviceGetMaxClockInfo, h, N.NVML_CLOCK_MEM)
        st.pcie_max_gen = self._call(st, "pcie_max_gen", N.nvmlDeviceGetMaxPcieLinkGeneration, h)
        st.pcie_max_width = self._call(st, "pcie_max_width", N.nvmlDeviceGetMaxPcieLinkWidth, h)
        st.numa_node = self._call(st, "numa", N.nvmlDeviceGetNumaNodeId, h)
        words = max(1, ((os.cpu_count() or 64) + 63) // 64, 4)
        mask = self._call(st, "affinity", N.nvmlDeviceGetCpuAffinity, h, words)
        if mask is not None:
            st.cpu_affinity = [w * 64 + b for w in range(words) for b in range(64) if mask[w] >> b & 1]
        # NVLink: how many links, which are up
        fv = self._call(st, "nvlink_count", N.nvmlDeviceGetFieldValues, h, [N.NVML_FI_DEV_NVLINK_LINK_COUNT])
        count = _field_value(fv[0])[0] if fv is not None else None
        st.nvlinks_total = int(count or 0)
        self._read_slow(st)

    def _read_slow(self, st: _Static) -> None:
        h = st.handle
        mode = self._call(st, "persistence", N.nvmlDeviceGetPersistenceMode, h)
        st.persistence_mode = None if mode is None else bool(mode)
        limit = self._call(st, "power_limit", N.nvmlDeviceGetEnforcedPowerLimit, h)
        st.power_limit_w = limit / 1000.0 if limit is not None else None
        st.ecc_uncorrected = self._call(st, "ecc", N.nvmlDeviceGetTotalEccErrors, h,
                                        N.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, N.NVML_VOLATILE_ECC)
        # display servers (Xorg on a desktop board) come and go rarely
        st.graphics_procs = self._call(st, "procs_graphics", N.nvmlDeviceGetGraphicsRunningProcesses, h) or []
        active = []
        for link in range(st.nvlinks_total):
            state = self._call(st, f"nvlink_state_{link}", N.nvmlDeviceGetNvLinkState, h, link)
            if state:
                active.append(link)
        st.nvlinks_active = active

    def _read_topology(self) -> None:
        live = [s for s in self._static if not s.lost and s.handle is not None]
        by_bus = {s.pci_bus_id: s.index for s in live if s.pci_bus_id}
        switch_links: dict[int, int] = {}
        direct: dict[int, dict[int, int]] = {}
        for s in live:
            for link in s.nvlinks_active:
                try:
                    remote = self._call(s, "nvlink_remote", N.nvmlDeviceGetNvLinkRemotePciInfo, s.handle, link)
                except _Lost:
                    break
                if remote is None:
                    continue
                bus = remote.busId.decode() if isinstance(remote.busId, bytes) else remote.busId
                peer = by_bus.get(bus)
                if peer is None:  # the far end is an NVSwitch
                    switch_links[s.index] = switch_links.get(s.index, 0) + 1
                elif peer != s.index:
                    direct.setdefault(s.index, {})
                    direct[s.index][peer] = direct[s.index].get(peer, 0) + 1
        for a in live:
            a.topology = {}
            for b in live:
                if a.index == b.index:
                    continue
                if a.index in direct and b.index in direct[a.index]:
                    level = f"NV{direct[a.index][b.index]}"
                elif a.index in switch_links and b.index in switch_links:
                    level = f"NV{min(switch_links[a.index], switch_links[b.index])}"
                else:
                    try:
                        code = self._call(a, "topology", N.nvmlDeviceGetTopologyCommonAncestor, a.handle, b.handle)
                    except _Lost:
                        code = None
                    level = TOPOLOGY_LEVELS.get(code) if code is not None else None
                if level:
                    a.topology[str(b.index)] = level

    # ---- per tick -------------------------------------------------------------------------
    def collect(self) -> NvmlReading:
        with self._lock:
            return self._collect()

    def _collect(self) -> NvmlReading:
        now = self.clock()
        if not self._open:
            if self._last_open_try is None or now - self._last_open_try >= self.retry_open_s:
                self.open()
            if not self._open:
                return NvmlReading(gpus=[], error=self._error)
        slow = now - self._last_slow >= self.slow_every_s
        if slow:
            self._last_slow = now
        gpus = []
        for st in self._static:
            gpu = self._base_gpu(st)
            if st.handle is None:
                gpu.lost = True
                gpus.append(gpu)
                continue
            try:
                if slow and not st.lost:
                    self._read_slow(st)
                self._read_dynamic(st, gpu, now)
                if st.lost:  # it answered again (reset, re-seated): take it back
                    st.lost = False
            except _Lost:
                st.lost = True
                gpu = self._base_gpu(st)
                gpu.lost = True
                self.rates.forget(lambda k, i=st.index: k[0] == i)
                self.pcie.unwatch(st.index)
            gpus.append(gpu)
        return NvmlReading(gpus=gpus, driver_version=self.driver_version, cuda_version=self.cuda_version,
                           nvml_version=self.nvml_version)

    def _base_gpu(self, st: _Static) -> GPU:
        return GPU(
            index=st.index, uuid=st.uuid, name=st.name, pci_bus_id=st.pci_bus_id, lost=st.lost,
            temperature_slowdown_c=st.temperature_slowdown_c, temperature_shutdown_c=st.temperature_shutdown_c,
            temperature_max_operating_c=st.temperature_max_operating_c,
            power_default_limit_w=st.power_default_limit_w, sm_clock_max_mhz=st.sm_clock_max_mhz,
            mem_clock_max_mhz=st.mem_clock_max_mhz, persistence_mode=st.persistence_mode,
            numa_node=st.numa_node, cpu_affinity=st.cpu_affinity, topology=dict(st.topology),
            pcie=Pcie(max_gen=st.pcie_max_gen, max_width=st.pcie_max_width),
        )

    def _read_dynamic(self, st: _Static, gpu: GPU, now: float) -> None:
        h, c = st.handle, self._call
        util = c(st, "util", N.nvmlDeviceGetUtilizationRates, h)
        if util is not None:
            gpu.utilization_gpu_pct = float(util.gpu)
            gpu.utilization_memory_pct = float(util.memory)
        mem = c(st, "mem_v2", N.nvmlDeviceGetMemoryInfo, h, N.nvmlMemory_v2)
        if mem is not None:
            gpu.memory_used_bytes, gpu.memory_total_bytes = int(mem.used), int(mem.total)
            gpu.memory_reserved_bytes = int(mem.reserved)
        else:  # older drivers: v1 counts the reserved memory as used
            mem = c(st, "mem_v1", N.nvmlDeviceGetMemoryInfo, h)
            if mem is not None:
                gpu.memory_used_bytes, gpu.memory_total_bytes = int(mem.used), int(mem.total)
        temp = c(st, "temp_v", N.nvmlDeviceGetTemperatureV, h, N.NVML_TEMPERATURE_GPU)
        if temp is None:
            temp = c(st, "temp", N.nvmlDeviceGetTemperature, h, N.NVML_TEMPERATURE_GPU)
        gpu.temperature_c = float(temp) if temp is not None else None
        power = c(st, "power", N.nvmlDeviceGetPowerUsage, h)
        gpu.power_w = power / 1000.0 if power is not None else None
        gpu.power_limit_w = st.power_limit_w
        gpu.sm_clock_mhz = c(st, "sm_clock", N.nvmlDeviceGetClockInfo, h, N.NVML_CLOCK_SM)
        gpu.mem_clock_mhz = c(st, "mem_clock", N.nvmlDeviceGetClockInfo, h, N.NVML_CLOCK_MEM)
        fan = c(st, "fan", N.nvmlDeviceGetFanSpeed, h)
        gpu.fan_pct = float(fan) if fan is not None else None
        gpu.pstate = c(st, "pstate", N.nvmlDeviceGetPerformanceState, h)
        reasons = c(st, "clock_events", N.nvmlDeviceGetCurrentClocksEventReasons, h)
        if reasons is None:
            reasons = c(st, "throttle", N.nvmlDeviceGetCurrentClocksThrottleReasons, h)
        gpu.throttle_reasons = decode_throttle_reasons(reasons)
        gpu.pcie.gen = c(st, "pcie_gen", N.nvmlDeviceGetCurrPcieLinkGeneration, h)
        gpu.pcie.width = c(st, "pcie_width", N.nvmlDeviceGetCurrPcieLinkWidth, h)
        gpu.ecc_uncorrected_volatile = st.ecc_uncorrected
        self._read_counters(st, gpu, now)
        gpu.processes = self._processes(st)

    def _read_counters(self, st: _Static, gpu: GPU, now: float) -> None:
        """One field-values call for all cumulative byte counters of this GPU."""
        ids: list = []
        if st.pcie_counters:
            ids += [N.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, N.NVML_FI_DEV_PCIE_COUNT_RX_BYTES]
        for link in st.nvlinks_active:
            ids += [(N.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, link), (N.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, link)]
        values = None
        if ids:
            request = tuple(ids)
            if request != st.fields_request:
                st.fields_request, st.fields_array = request, _field_request(request)
            values = self._call(st, "fields", _get_field_values, st.handle, st.fields_array)
        k = 0
        if st.pcie_counters:
            tx, tx_bits = _field_value(values[0]) if values is not None else (None, None)
            rx, rx_bits = _field_value(values[1]) if values is not None else (None, None)
            k = 2
            if values is not None and values[0].nvmlReturn == N.NVML_ERROR_NOT_SUPPORTED:
                st.pcie_counters = False  # this GPU has no byte counters: sample in the background
            else:
                gpu.pcie.tx_bytes_per_s = self.rates.update((st.index, "pcie_tx"), tx, now, tx_bits)
                gpu.pcie.rx_bytes_per_s = self.rates.update((st.index, "pcie_rx"), rx, now, rx_bits)
        if not st.pcie_counters:
            self.pcie.watch(st.index, st.handle)
            gpu.pcie.tx_bytes_per_s, gpu.pcie.rx_bytes_per_s = self.pcie.get(st.index)
        if st.nvlinks_total:
            nv = NvLink(links_active=len(st.nvlinks_active), links_total=st.nvlinks_total)
            if st.nvlinks_active and values is not None:
                tx_sum = rx_sum = 0.0
                complete = True
                for link in st.nvlinks_active:
                    tx, tx_bits = _field_value(values[k])
                    rx, rx_bits = _field_value(values[k + 1])
                    k += 2
                    # KiB counters
                    rt = self.rates.update((st.index, "nvtx", link), tx, now, tx_bits)
                    rr = self.rates.update((st.index, "nvrx", link), rx, now, rx_bits)
                    if rt is None or rr is None:
                        complete = False
                        continue
                    tx_sum += rt * 1024
                    rx_sum += rr * 1024
                if complete:
                    nv.tx_bytes_per_s, nv.rx_bytes_per_s = tx_sum, rx_sum
            elif not st.nvlinks_active:
                nv.tx_bytes_per_s = nv.rx_bytes_per_s = 0.0
            gpu.nvlink = nv

    def _processes(self, st: _Static) -> list[Process]:
        out: list[Process] = []
        seen: set[int] = set()
        compute = self._call(st, "procs_compute", N.nvmlDeviceGetComputeRunningProcesses, st.handle) or []
        for kind, plist in (("compute", compute), ("graphics", st.graphics_procs)):
            for p in plist:
                if p.pid in seen:
                    continue
                seen.add(p.pid)
                proc = Process(pid=int(p.pid), used_memory_bytes=p.usedGpuMemory, type=kind)
                info = self.procs.info(proc.pid)
                if info is not None:
                    proc.name = info.name
                    proc.user = info.user
                    proc.cmdline = " ".join(info.cmdline) if info.cmdline else None
                    proc.cpu_pct = info.cpu_pct
                    proc.rss_bytes = info.rss_bytes
                    proc.cpu_affinity = info.cpu_affinity
                out.append(proc)
        return out

    def close(self) -> None:
        self.pcie.close()
        if self._open:
            try:
                N.nvmlShutdown()
            except N.NVMLError:
                pass
            self._open = False
