"""Every GPU through NVML (nvidia-ml-py), into plain :mod:`gpuwatch.model` objects.

Design:
- What never changes (names, UUIDs, thresholds, max clocks and links, topology, NUMA) is read
  once at open; what changes only when someone acts (persistence, NVLink states, the enforced
  power limit, the ECC count, display processes) every ``slow_every_s``.
- Per tick, per GPU: a fixed list of cheap calls plus ONE ``nvmlDeviceGetFieldValues`` call
  that batches the cumulative PCIe and NVLink byte counters; rates are differences between
  ticks (:class:`CounterRates`).
- ``nvmlDeviceGetPcieThroughput`` blocks ~20 ms per call; where a GPU has no PCIe byte
  counters it is sampled every 2 s by a background thread (:class:`PcieSampler`), never on
  the tick.
- Faults are data: a field the GPU does not support is None and is not asked again; a
  function the driver lacks is probed once; a GPU that fell off the bus is ``lost`` while the
  others go on; no library or no driver is a sentence in ``NvmlReading.error``.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass, field

import pynvml as N

from ..model import GPU, MigDevice, NvLink, Pcie, Process
from ..vocab import decode_throttle_reasons
from .host import HostView
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


# how each value type is read from nvmlValue_t (a union: every member starts at its first byte)
_VALUE_FORMAT = {
    N.NVML_VALUE_TYPE_DOUBLE: "=d",
    N.NVML_VALUE_TYPE_UNSIGNED_INT: "=I",
    N.NVML_VALUE_TYPE_UNSIGNED_LONG: "=Q",  # unsigned long: 64 bits on the 64-bit Linux NVML ships for
    N.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "=Q",
    N.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "=q",
    N.NVML_VALUE_TYPE_SIGNED_INT: "=i",
    N.NVML_VALUE_TYPE_UNSIGNED_SHORT: "=H",
}
_VALUE_READ = {t: (struct.Struct(fmt).unpack_from, _VALUE_BITS.get(t)) for t, fmt in _VALUE_FORMAT.items()}
# nvmlFieldValue_t: fieldId, scopeId (unsigned int), timestamp, latencyUsec (long long), valueType,
# nvmlReturn (enums: 32-bit), value (8-byte union); 40 bytes without padding (asserted below)
_FIELD_ROW = struct.Struct("=IIqqII8s")
_LITTLE_ENDIAN = sys.byteorder == "little"  # (x86-64, aarch64, ppc64le: every platform NVML ships for)
_ULL_SUCCESS = N.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG | N.NVML_SUCCESS << 32  # valueType, nvmlReturn as one word


class _FieldValue(ctypes.Structure):
    """nvmlFieldValue_t, laid out as pynvml lays it out, with plain ctypes attribute access:
    pynvml's own class routes every read and write through a formatting hook, which cost more
    than the driver call for the ~40 counters of an NVLink GPU."""

    _fields_ = N.c_nvmlFieldValue_t._fields_


assert ctypes.sizeof(_FieldValue) == _FIELD_ROW.size


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


def _field_values(arr) -> list[tuple[float | None, int | None]]:
    """(value, counter bits) of each nvmlFieldValue_t in an array, (None, None) where it failed:
    the array's bytes unpacked in one pass. (Reading each entry through ctypes made three Python
    objects per value: for the 38 counters of an H100 most of a tick's counter reading.)"""
    data = bytes(arr)
    if _LITTLE_ENDIAN and data:
        # the common answer: every value an unsigned long long and every return SUCCESS. Each
        # 40-byte entry is five 8-byte words; the fourth holds valueType and nvmlReturn, the
        # fifth the value: both read for all entries at once
        words = memoryview(data).cast("Q")
        if set(words[3::5]) == {_ULL_SUCCESS}:
            return [(v, 64) for v in words[4::5]]
    out = []
    for _fid, _scope, _ts, _lat, vtype, ret, raw in _FIELD_ROW.iter_unpack(data):
        read = _VALUE_READ.get(vtype) if ret == N.NVML_SUCCESS else None
        out.append((read[0](raw)[0], read[1]) if read is not None else (None, None))
    return out


class _ProcessInfoV1(ctypes.Structure):
    """nvmlProcessInfo_v1_t, the structure of the original (unversioned) process entry points."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


# The process-list entry points, newest first, with the structure each one fills. nvidia-ml-py
# >= 12.535 calls only _v3, which drivers export from R535: on R470/R525 it is missing and no
# process would ever appear. Like nvitop (api/libnvml.py), fall back through the C functions.
_PROCESS_ENTRY_POINTS = {
    kind: ((f"nvmlDevice{fn}_v3", N.c_nvmlProcessInfo_v3_t), (f"nvmlDevice{fn}_v2", N.c_nvmlProcessInfo_v2_t),
           (f"nvmlDevice{fn}", _ProcessInfoV1))
    for kind, fn in (("compute", "GetComputeRunningProcesses"), ("graphics", "GetGraphicsRunningProcesses"))
}
# include/linux/threads.h PID_MAX_LIMIT (64-bit): a pid NVML reports above it, or 0, is garbage
# (early R535 drivers list 0 and 4294967295 between the real entries, nvitop issue #75)
PID_MAX_LIMIT = 4 * 1024 * 1024
_NO_ID = 0xFFFFFFFF


def _process_list(fn, handle, struct) -> list[tuple[int, int | None, int | None]]:
    """(pid, used bytes or None, GPU instance id or None) from one process entry point: the
    two-call protocol (count with a NULL buffer, then a buffer with room to spare)."""
    count = ctypes.c_uint(0)
    ret = fn(handle, ctypes.byref(count), None)
    if ret == N.NVML_SUCCESS:
        return []
    if ret != N.NVML_ERROR_INSUFFICIENT_SIZE:
        raise N.NVMLError(ret)
    count.value = count.value * 2 + 5
    buf = (struct * count.value)()
    N._nvmlCheckReturn(fn(handle, ctypes.byref(count), buf))
    out = []
    for p in buf[:count.value]:
        used = None if p.usedGpuMemory == N.NVML_VALUE_NOT_AVAILABLE_ulonglong.value else int(p.usedGpuMemory)
        gi = getattr(p, "gpuInstanceId", _NO_ID)
        out.append((int(p.pid), used, None if gi == _NO_ID else int(gi)))
    return out


_FABRIC_STATES = {
    N.NVML_GPU_FABRIC_STATE_NOT_STARTED: "not_started",
    N.NVML_GPU_FABRIC_STATE_IN_PROGRESS: "in_progress",
    N.NVML_GPU_FABRIC_STATE_COMPLETED: "completed",
}

_MIG_UTIL_NOTE = ("MIG mode: NVML reports no whole-GPU utilization (per-instance activity needs DCGM); "
                  "the imbalance and busy-link checks skip this GPU")


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


def _quiet(fn, *args):
    """fn(*args), or None on any NVML error (calls on MIG devices: never cached as unsupported)."""
    try:
        value = fn(*args)
    except N.NVMLError:
        return None
    return value.decode() if isinstance(value, bytes) else value


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
    fields_blank: bytes = b""  # fields_array's bytes as the request was made (every value zero)
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False
    # temperature thresholds relative to T.Limit (fields 193/194/196), where the absolute query
    # is not supported: key -> °C (negative: past T.Limit)
    tlimit: dict[str, float] = field(default_factory=dict)
    thresholds_from_tlimit: bool = False  # the absolute query failed: read the margin per tick
    mig_mode: bool | None = None
    mig: list = field(default_factory=list)  # (MigDevice template, handle) per MIG device
    fabric_state: str | None = None


@dataclass
class NvmlReading:
    gpus: list[GPU]
    driver_version: str | None = None
    cuda_version: str | None = None
    nvml_version: str | None = None
    error: str | None = None
    pid_namespace: str | None = None  # "container": NVML's pids are the host's


class PcieSampler:
    """Samples ``nvmlDeviceGetPcieThroughput`` (which blocks ~20 ms per call) for the GPUs that
    have no PCIe byte counters, on background threads, and caches the latest KB/s.
    The collection tick only reads the cache. The threads keep the reader's pace: while nobody
    has read for ``IDLE_PERIODS`` periods, or the reader reads less often than that (a paused
    dashboard polls every 10 s), they sample once per reading, woken by it, instead of calling
    the driver every period (three rounds per paused reading before: 0.06 % of a core).
    One thread per ``GPUS_PER_THREAD`` GPUs: the calls only wait (the driver samples the link),
    so one thread's round of 8 GPUs takes 8 x 2 x 20 ms = 0.32 s, a sixth of the period. Four
    threads for 8 GPUs (before) woke together every 20 ms and queued for the interpreter lock:
    27 wake-ups and 1.25 ms of CPU a second against 18.5 and 0.95 for one thread (bench box,
    R550, per-thread schedstat over 30 s, sampling every second).

    Every 2 s, not every second: each reading is what the driver counted over its own 20 ms
    window (NVML's documentation of ``nvmlDeviceGetPcieThroughput``), a spot check of the link
    whichever the cadence, never the second's average that byte counters give (R555 and later).
    A model load or a KV-cache offload lasts many seconds and shows as well at 2 s. Every
    second cost 16 calls a second at 8 GPUs, on R535/R550 a tenth of the dashboard's CPU.

    (NVIDIA's guide "Configure Prometheus for DCGM Exporter" scrapes GPUs every 30 s.)"""

    IDLE_PERIODS = 2
    GPUS_PER_THREAD = 8
    PERIOD_S = 2.0

    def __init__(self, period_s: float = PERIOD_S, workers: int = 8) -> None:
        self.period_s = period_s
        self._handles: dict[int, object] = {}
        self._values: dict[int, tuple[float, float, float]] = {}  # index -> (tx B/s, rx B/s, t)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # one per thread: set when a GPU was added (sample it now, not a period later) or when a
        # reading finds one of the thread's GPUs stale while the thread waits for readers
        self._wakes: list[threading.Event] = []
        self._parked: list[bool] = []  # per thread: waiting for the next reading
        self._threads: list[threading.Thread] = []
        self._workers = workers
        self._capacity: dict[int, float] = {}  # index -> the link's max bytes/s per direction
        # bytes per unit of the reading: 1000 (KB/s, as documented) until a reading proves the
        # driver answers in bytes/s (the unit flipped x1000 between drivers, issue 12)
        self.unit_bytes = 1000.0
        self.discarded = 0  # readings above the link's capacity, never shown
        self._read_at = time.monotonic()  # the last get(): the threads sample while it is recent
        self._read_gap = 0.0  # the time between the last two readings of one GPU: the reader's pace
        self._last_get: dict[int, float] = {}  # index -> when it was last read

    def watch(self, index: int, handle, capacity_bytes_per_s: float | None = None) -> None:
        """Sample ``handle``; ``capacity_bytes_per_s``: what its link can carry per direction at
        most (readings above it are impossible: see :meth:`_judge`)."""
        with self._lock:
            new = index not in self._handles
            self._handles[index] = handle
            if capacity_bytes_per_s:
                self._capacity[index] = capacity_bytes_per_s
        if new:
            for wake in self._wakes:
                wake.set()
        # threads for the GPUs watched so far (at most ``workers``): a thread samples the GPUs
        # whose index modulo the number of threads is its own, counted anew each round
        want = min(self._workers, -(-len(self._handles) // self.GPUS_PER_THREAD))
        while len(self._threads) < want:
            w = len(self._threads)
            self._wakes.append(threading.Event())
            self._parked.append(False)
            th = threading.Thread(target=self._run, args=(w,), name=f"gpuwatch-pcie-{w}", daemon=True)
            self._threads.append(th)
            th.start()

    def unwatch(self, index: int) -> None:
        with self._lock:
            self._handles.pop(index, None)
            self._values.pop(index, None)
            self._last_get.pop(index, None)

    def get(self, index: int) -> tuple[float | None, float | None]:
        now = time.monotonic()
        prev = self._last_get.get(index)
        if prev is not None:
            self._read_gap = now - prev
        self._last_get[index] = self._read_at = now
        with self._lock:
            v = self._values.get(index)
        worker = index % max(1, len(self._threads))
        if worker < len(self._parked) and self._parked[worker] and (v is None or now - v[2] > self.period_s):
            # its thread waits for a reader: this one (the next reading is fresh); a GPU it sampled
            # since this tick began wakes nothing (one round per reading)
            self._parked[worker] = False
            self._wakes[worker].set()
        if v is None:
            return None, None
        return v[0], v[1]

    def _run(self, worker: int) -> None:
        wake = self._wakes[worker]
        while not self._stop.is_set():
            start = time.monotonic()
            with self._lock:
                n = len(self._threads)
                mine = [(i, h) for i, h in sorted(self._handles.items()) if i % n == worker]
            for index, handle in mine:
                if self._stop.is_set():
                    return
                try:
                    tx = N.nvmlDeviceGetPcieThroughput(handle, N.NVML_PCIE_UTIL_TX_BYTES)
                    rx = N.nvmlDeviceGetPcieThroughput(handle, N.NVML_PCIE_UTIL_RX_BYTES)
                except N.NVMLError:
                    self.unwatch(index)
                    continue
                with self._lock:
                    if index in self._handles and self._judge(index, tx, rx):
                        self._values[index] = (tx * self.unit_bytes, rx * self.unit_bytes, time.monotonic())
            slow = self.IDLE_PERIODS * self.period_s
            if time.monotonic() - self._read_at > slow or self._read_gap > slow:
                # nobody reads, or seldom: until the next reading (or a GPU is added, or close)
                self._parked[worker] = True
                wake.wait()
            else:
                wake.wait(max(0.05, self.period_s - (time.monotonic() - start)))
            wake.clear()

    def _judge(self, index: int, *raw: int) -> bool:
        """Keep a reading only if the link could carry it. A reading that is impossible in KB/s
        but possible in bytes/s settles the unit (for every GPU: it is the driver's) and is
        dropped with every value cached so far, which were read in the wrong unit."""
        cap = self._capacity.get(index)
        if cap is None:
            return True
        top = max(raw) * self.unit_bytes
        if top <= cap * 1.05:
            return True
        self.discarded += 1
        if self.unit_bytes == 1000.0 and max(raw) <= cap * 1.05:
            self.unit_bytes = 1.0
            self._values.clear()
        return False

    def close(self) -> None:
        self._stop.set()
        for wake in self._wakes:
            wake.set()


# bytes/s one PCIe lane carries per direction, by generation (after line encoding: 8b/10b for
# Gen1-2, 128b/130b from Gen3; PCI-SIG base specifications)
PCIE_LANE_BYTES_PER_S = {1: 250e6, 2: 500e6, 3: 984.6e6, 4: 1969e6, 5: 3938e6, 6: 7563e6}


def pcie_capacity(max_gen: int | None, max_width: int | None) -> float | None:
    """The most a link can carry per direction, bytes/s (None when the link is not reported)."""
    lane = PCIE_LANE_BYTES_PER_S.get(max_gen or 0)
    return lane * max_width if lane and max_width else None


class NvmlCollector:
    def __init__(self, process_table=None, clock=time.monotonic, slow_every_s: float = 10.0,
                 pcie_sampler: PcieSampler | None = None, retry_open_s: float = 30.0,
                 host: HostView | None = None) -> None:
        self.procs = process_table if process_table is not None else ProcessTable()
        self._tick_infos: dict[int, object] = {}  # pid -> ProcInfo, read once a tick (see _processes)
        self.host = host if host is not None else HostView()
        self.pid_namespace: str | None = None
        self._proc_entry: dict[str, tuple] = {}  # "compute"/"graphics" -> the entry point that answers
        self._last_error: int | None = None  # the code of the last call _call turned into None
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
        self._last_error = None
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
        except N.NVMLError as e:
            self._last_error = e.value
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
            st = _Static(index=i, handle=None)
            self._static.append(st)
            try:
                st.handle = self._call(None, "handle", N.nvmlDeviceGetHandleByIndex, i)
            except _Lost:  # counted by nvmlDeviceGetCount, but already off the bus
                st.handle = None
            if st.handle is None:
                st.lost = True
                continue
            try:
                self._read_static(st)
            except _Lost:
                st.lost = True
        self._identify_lost()
        self.pid_namespace = self.host.pid_namespace()
        self._read_topology()
        self._last_slow = self.clock()
        return True

    def _identify_lost(self) -> None:
        """Name the GPUs NVML could not open from what the kernel driver lists: NVML's default
        order is PCI bus order, the order of /proc/driver/nvidia/gpus/."""
        blind = [st for st in self._static if st.pci_bus_id is None]
        if not blind:
            return
        listed = self.host.nvidia_gpus()
        if len(listed) == len(self._static):
            pairs = [(st, listed[st.index]) for st in blind]
        else:
            known = {st.pci_bus_id for st in self._static}
            rest = [g for g in listed if g.bus_id not in known]
            pairs = list(zip(blind, rest)) if len(rest) == len(blind) else []
        for st, os_gpu in pairs:
            st.pci_bus_id = os_gpu.bus_id
            st.name = st.name or os_gpu.name
            st.uuid = st.uuid or os_gpu.uuid

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
        if st.temperature_slowdown_c is None and st.temperature_shutdown_c is None:
            self._read_tlimit(st)
        limit = self._call(st, "power_default", N.nvmlDeviceGetPowerManagementDefaultLimit, h)
        st.power_default_limit_w = limit / 1000.0 if limit is not None else None
        st.sm_clock_max_mhz = self._call(st, "sm_max", N.nvmlDeviceGetMaxClockInfo, h, N.NVML_CLOCK_SM)
        st.mem_clock_max_mhz = self._call(st, "mem_max", N.nvmlDeviceGetMaxClockInfo, h, N.NVML_CLOCK_MEM)
        st.pcie_max_gen = self._call(st, "pcie_max_gen", N.nvmlDeviceGetMaxPcieLinkGeneration, h)
        st.pcie_max_width = self._call(st, "pcie_max_width", N.nvmlDeviceGetMaxPcieLinkWidth, h)
        st.numa_node = self._cpu_numa_node(st)
        words = max(1, ((os.cpu_count() or 64) + 63) // 64, 4)
        mask = self._call(st, "affinity", N.nvmlDeviceGetCpuAffinity, h, words)
        if mask is not None:
            st.cpu_affinity = [w * 64 + b for w in range(words) for b in range(64) if mask[w] >> b & 1]
        # NVLink: how many links, which are up
        fv = self._call(st, "nvlink_count", N.nvmlDeviceGetFieldValues, h, [N.NVML_FI_DEV_NVLINK_LINK_COUNT])
        count = _field_values(fv)[0][0] if fv is not None else None
        st.nvlinks_total = int(count or 0)
        self._read_slow(st)

    def _read_tlimit(self, st: _Static) -> None:
        """The thresholds relative to T.Limit (fields 193/194/196, from R555), for drivers whose
        absolute threshold query answers NOT_SUPPORTED (nvml.h: not preferred from Ada on)."""
        st.tlimit = {}
        keys = (("temperature_shutdown_c", N.NVML_FI_DEV_TEMPERATURE_SHUTDOWN_TLIMIT),
                ("temperature_slowdown_c", N.NVML_FI_DEV_TEMPERATURE_SLOWDOWN_TLIMIT),
                ("temperature_max_operating_c", N.NVML_FI_DEV_TEMPERATURE_GPU_MAX_TLIMIT))
        values = self._call(st, "tlimit", _get_field_values, st.handle, _field_request(tuple(f for _k, f in keys)))
        for (key, _fid), (value, _bits) in zip(keys, _field_values(values) if values is not None else ()):
            if value is not None:
                st.tlimit[key] = float(value)
        st.thresholds_from_tlimit = True

    def _cpu_numa_node(self, st: _Static) -> int | None:
        """The NUMA node of the CPUs nearest the GPU, the node an operator pins to.
        nvmlDeviceGetNumaNodeId is the node of the GPU's *own* memory: it answers on Grace and is
        NOT_SUPPORTED on x86 boxes. The memory-affinity call (node scope) and the PCI device's
        numa_node in sysfs give the CPU side."""
        nodes = self._call(st, "memory_affinity", N.nvmlDeviceGetMemoryAffinity, st.handle, 1,
                           N.NVML_AFFINITY_SCOPE_NODE)
        if nodes is not None:
            bits = [b for b in range(64) if nodes[0] >> b & 1]
            if len(bits) == 1:
                return bits[0]
        node = self.host.pci_numa_node(st.pci_bus_id)
        if node is None:
            node = self._call(st, "numa", N.nvmlDeviceGetNumaNodeId, st.handle)
        return node

    def _read_mig(self, st: _Static) -> None:
        """MIG mode, and the MIG devices when it is on. When the mode changes, everything that
        answered NOT_SUPPORTED is asked again (whole-GPU utilization returns with MIG off)."""
        mode = self._call(st, "mig_mode", N.nvmlDeviceGetMigMode, st.handle)
        mig = None if mode is None else mode[0] == N.NVML_DEVICE_MIG_ENABLE
        if st.mig_mode is not None and mig is not None and mig != st.mig_mode:
            st.unsupported.clear()
        if mig is not None:
            st.mig_mode = mig
        st.mig = []
        if not mig:
            return
        for k in range(self._call(st, "mig_count", N.nvmlDeviceGetMaxMigDeviceCount, st.handle) or 0):
            try:
                mh = N.nvmlDeviceGetMigDeviceHandleByIndex(st.handle, k)
            except N.NVMLError_GpuIsLost:
                raise _Lost() from None
            except N.NVMLError:  # NOT_FOUND: an empty slot
                continue
            dev = MigDevice(index=k, uuid=_quiet(N.nvmlDeviceGetUUID, mh), name=_quiet(N.nvmlDeviceGetName, mh),
                            gpu_instance_id=_quiet(N.nvmlDeviceGetGpuInstanceId, mh),
                            compute_instance_id=_quiet(N.nvmlDeviceGetComputeInstanceId, mh))
            st.mig.append((dev, mh))

    def _read_fabric(self, st: _Static) -> None:
        """NVSwitch fabric state (HGX): the V call (R550+) or the first one (R525+)."""
        info = N.c_nvmlGpuFabricInfoV_t()
        ok = self._call(st, "fabric_v", N.nvmlDeviceGetGpuFabricInfoV, st.handle, ctypes.byref(info))
        if ok is None:
            info = N.c_nvmlGpuFabricInfo_t()
            ok = self._call(st, "fabric", N.nvmlDeviceGetGpuFabricInfo, st.handle, ctypes.byref(info))
        if ok is None:
            st.fabric_state = None
            return
        state = _FABRIC_STATES.get(info.state)
        if state == "completed" and info.status != N.NVML_SUCCESS:
            state = "failed"
        st.fabric_state = state

    def _read_slow(self, st: _Static) -> None:
        h = st.handle
        mode = self._call(st, "persistence", N.nvmlDeviceGetPersistenceMode, h)
        st.persistence_mode = None if mode is None else bool(mode)
        limit = self._call(st, "power_limit", N.nvmlDeviceGetEnforcedPowerLimit, h)
        st.power_limit_w = limit / 1000.0 if limit is not None else None
        st.ecc_uncorrected = self._call(st, "ecc", N.nvmlDeviceGetTotalEccErrors, h,
                                        N.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, N.NVML_VOLATILE_ECC)
        # display servers (Xorg on a desktop board) come and go rarely
        st.graphics_procs = self._call(st, "procs_graphics", self._running, h, "graphics") or []
        self._read_mig(st)
        self._read_fabric(st)
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
        self._tick_infos: dict[int, object] = {}  # pid -> ProcInfo, read once this tick
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
                self._read_dynamic(st, gpu)
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
                           nvml_version=self.nvml_version, pid_namespace=self.pid_namespace)

    def _base_gpu(self, st: _Static) -> GPU:
        return GPU(
            index=st.index, uuid=st.uuid, name=st.name, pci_bus_id=st.pci_bus_id, lost=st.lost,
            temperature_slowdown_c=st.temperature_slowdown_c, temperature_shutdown_c=st.temperature_shutdown_c,
            temperature_max_operating_c=st.temperature_max_operating_c,
            power_default_limit_w=st.power_default_limit_w, sm_clock_max_mhz=st.sm_clock_max_mhz,
            mem_clock_max_mhz=st.mem_clock_max_mhz, persistence_mode=st.persistence_mode,
            numa_node=st.numa_node, cpu_affinity=st.cpu_affinity, topology=dict(st.topology),
            pcie=Pcie(max_gen=st.pcie_max_gen, max_width=st.pcie_max_width),
            mig_mode=st.mig_mode, fabric_state=st.fabric_state,
        )

    def _read_dynamic(self, st: _Static, gpu: GPU) -> None:
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
        if st.thresholds_from_tlimit:
            self._thresholds_from_margin(st, gpu)
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
        self._read_counters(st, gpu)
        gpu.processes = self._processes(st, gpu)
        if st.mig_mode:
            if gpu.utilization_gpu_pct is None:
                gpu.errors["utilization_gpu_pct"] = _MIG_UTIL_NOTE
            gpu.mig_devices = self._mig_devices(st)

    def _thresholds_from_margin(self, st: _Static, gpu: GPU) -> None:
        """T.Limit = temperature + margin; each threshold sits its T.Limit offset from it (an
        offset of -2 °C: slowdown 2 °C past T.Limit). With no offsets, the margin is the
        distance to the nearest slowdown point."""
        margin = self._call(st, "margin", N.nvmlDeviceGetMarginTemperature, st.handle)
        if margin is None:
            return
        gpu.temperature_margin_c = float(margin)
        if gpu.temperature_c is None:
            return
        limit = gpu.temperature_c + margin
        for key, offset in st.tlimit.items():
            setattr(gpu, key, limit - offset)
        if gpu.temperature_slowdown_c is None:
            gpu.temperature_slowdown_c = limit

    def _mig_devices(self, st: _Static) -> list[MigDevice]:
        out = []
        for template, mh in st.mig:
            dev = MigDevice(**{**template.__dict__, "pids": []})
            mem = _quiet(N.nvmlDeviceGetMemoryInfo, mh)
            if mem is not None:
                dev.memory_used_bytes, dev.memory_total_bytes = int(mem.used), int(mem.total)
            try:
                dev.pids = [pid for pid, _used, _gi in self._running(mh, "compute") if 0 < pid <= PID_MAX_LIMIT]
            except N.NVMLError:
                pass
            out.append(dev)
        return out
    def _read_counters(self, st: _Static, gpu: GPU) -> None:
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
                st.fields_blank = bytes(st.fields_array)
            # the request as made, values zeroed: some drivers add into the value instead of
            # writing it (go-nvml#46)
            ctypes.memmove(st.fields_array, st.fields_blank, len(st.fields_blank))
            values = self._call(st, "fields", _get_field_values, st.handle, st.fields_array)
            # the counters' moment is when they were read, not when the tick began: the GPUs are
            # read one after another, and a tick slowed down (a loaded box, 64 GPUs) would
            # otherwise divide one GPU's traffic by another stretch of time than it was counted in
            now = self.clock()
            if values is None and st.pcie_counters and self._last_error == N.NVML_ERROR_INVALID_ARGUMENT:
                # the whole call refused an id it does not know: ask without the PCIe counters
                st.pcie_counters = False
                return self._read_counters(st, gpu)
        read = _field_values(values) if values is not None else None
        k = 0
        if st.pcie_counters:
            (tx, tx_bits), (rx, rx_bits) = read[:2] if read is not None else ((None, None), (None, None))
            k = 2
            if values is not None and values[0].nvmlReturn in (N.NVML_ERROR_NOT_SUPPORTED,
                                                               N.NVML_ERROR_INVALID_ARGUMENT):
                # no byte counters on this GPU, or fields 197/198 unknown to the driver (before
                # R555 an unknown id answers INVALID_ARGUMENT): sample in the background
                st.pcie_counters = False
            else:
                gpu.pcie.tx_bytes_per_s = self.rates.update((st.index, "pcie_tx"), tx, now, tx_bits)
                gpu.pcie.rx_bytes_per_s = self.rates.update((st.index, "pcie_rx"), rx, now, rx_bits)
                gpu.pcie.rate_source = "counters"
        if not st.pcie_counters:
            self.pcie.watch(st.index, st.handle, pcie_capacity(st.pcie_max_gen, st.pcie_max_width))
            gpu.pcie.tx_bytes_per_s, gpu.pcie.rx_bytes_per_s = self.pcie.get(st.index)
            gpu.pcie.rate_source = "samples"
        if st.nvlinks_total:
            nv = NvLink(links_active=len(st.nvlinks_active), links_total=st.nvlinks_total)
            if st.nvlinks_active and read is not None:
                links = tuple(st.nvlinks_active)
                per_link = read[k:k + 2 * len(links)]  # (tx, rx) of each link in turn
                if all(bits == 64 for _, bits in per_link):
                    # 64-bit KiB counters never wrap in practice, so the links' sum is itself a
                    # counter (the width is each value's own valueType, not assumed; public NVML
                    # clients read these fields as ullVal, e.g. jeromeku/gpu-experiments
                    # hopper/11-nvlink-test.cu; no real capture here yet): one rate per
                    # direction instead of one per link (18 links x 2 on an H100: 36 rates a GPU
                    # every tick). The set of links is in the key: a sum over other links (one
                    # that came back brings its whole counter) is never compared with this one.
                    rt = self.rates.update((st.index, "nvtx", links), sum(v for v, _ in per_link[0::2]), now, 64)
                    rr = self.rates.update((st.index, "nvrx", links), sum(v for v, _ in per_link[1::2]), now, 64)
                    if rt is not None and rr is not None:
                        nv.tx_bytes_per_s, nv.rx_bytes_per_s = rt * 1024, rr * 1024
                else:  # narrower counters wrap: each link's own rate (a failed link: no figure)
                    tx_sum = rx_sum = 0.0
                    complete = True
                    for j, link in enumerate(links):
                        (tx, tx_bits), (rx, rx_bits) = per_link[2 * j], per_link[2 * j + 1]
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

    def _running(self, handle, kind: str) -> list[tuple[int, int | None, int | None]]:
        """The processes on a GPU or MIG device through the newest entry point the driver has."""
        chosen = self._proc_entry.get(kind)
        for name, entry in ((chosen,) if chosen else _PROCESS_ENTRY_POINTS[kind]):
            try:
                fn = N._nvmlGetFunctionPointer(name)
            except N.NVMLError_FunctionNotFound:
                continue
            self._proc_entry[kind] = (name, entry)
            return _process_list(fn, handle, entry)
        raise N.NVMLError(N.NVML_ERROR_FUNCTION_NOT_FOUND)

    def _processes(self, st: _Static, gpu: GPU) -> list[Process]:
        out: list[Process] = []
        seen: set[int] = set()
        impossible = 0
        compute = self._call(st, "procs_compute", self._running, st.handle, "compute") or []
        # in a container's PID namespace NVML's (host) pids name nothing here, or the wrong process
        resolve = self.pid_namespace != "container"
        for kind, plist in (("compute", compute), ("graphics", st.graphics_procs)):
            for pid, used, _gi in plist:
                if not 0 < pid <= PID_MAX_LIMIT:
                    impossible += 1
                    continue
                if pid in seen:
                    continue
                seen.add(pid)
                proc = Process(pid=pid, used_memory_bytes=used, type=kind)
                if not resolve:
                    info = None
                elif pid in self._tick_infos:
                    info = self._tick_infos[pid]
                else:  # once a tick: a server's process is on each of its GPUs, and CPU % is per call
                    info = self._tick_infos[pid] = self.procs.info(pid)
                if info is not None:
                    proc.name = info.name
                    proc.user = info.user
                    proc.cmdline = " ".join(info.cmdline) if info.cmdline else None
                    proc.cpu_pct = info.cpu_pct
                    proc.rss_bytes = info.rss_bytes
                    proc.cpu_affinity = info.cpu_affinity
                out.append(proc)
        if impossible:
            gpu.errors["processes"] = (
                f"the driver listed {impossible} impossible PID(s) (0 or 4294967295), left out: a known bug of "
                f"early R535 drivers (535.43-535.86); update the driver to see every process")
        return out

    def close(self) -> None:
        self.pcie.close()
        if self._open:
            try:
                N.nvmlShutdown()
            except N.NVMLError:
                pass
            self._open = False
