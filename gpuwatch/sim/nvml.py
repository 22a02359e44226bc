"""A stand-in for the NVML *C library* (libnvidia-ml.so.1) underneath the real nvidia-ml-py.

pynvml looks every C function up by name on its library object (``pynvml.nvmlLib``) and calls
it with ctypes arguments: pointers from ``byref``, string buffers, arrays of structures. This
object answers the same names with the same arguments, writes results into the same
structures and returns the same ``nvmlReturn_t`` codes as the driver, so everything above it
(pynvml's wrappers, gpuwatch's collector) runs exactly the code path it runs on a real box,
including the error paths: NOT_SUPPORTED per field, FUNCTION_NOT_FOUND for calls an older
driver lacks, GPU_IS_LOST for a card that fell off the bus, INSUFFICIENT_SIZE for the
two-call process query, ARGUMENT_VERSION_MISMATCH for versioned structures.

``install(box)`` points pynvml at it; ``uninstall()`` restores the real library lookup.
"""

from __future__ import annotations

import ctypes
import hashlib
import time
import uuid as uuidlib

import pynvml as N

from .box import SimBox

_HANDLE_BASE = 0x6A7E0000
_MIG_HANDLE_BASE = 0x6A7F0000  # + 16 * gpu + MIG device index
_INVALID_PID = 0xFFFFFFFF

H100_BUS = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)


def _out(arg):
    """The object behind a ``byref(...)`` argument (or the argument itself)."""
    return getattr(arg, "_obj", arg)


class _Fn:
    """A callable that accepts attribute assignment (pynvml sets ``fn.restype``)."""

    __slots__ = ("_f", "restype", "argtypes", "__name__")

    def __init__(self, f, name):
        self._f = f
        self.restype = ctypes.c_int
        self.argtypes = None
        self.__name__ = name

    def __call__(self, *args):
        return self._f(*args)


class FakeNvmlLibrary:
    """Answers pynvml's C calls from a :class:`SimBox`.

    ``latency_s`` adds a realistic cost to every call (a busy wait, as an ioctl costs CPU);
    ``pcie_sample_s`` is how long ``nvmlDeviceGetPcieThroughput`` blocks (20 ms on real drivers).
    ``pcie_gate`` (a ``threading.Event``, for tests) makes that call block until the gate is set
    instead; ``pcie_waiting`` counts the calls blocked in it right now.
    """

    def __init__(self, box: SimBox, latency_s: float = 0.0, pcie_sample_s: float = 0.02,
                 init_error: int | None = None) -> None:
        self.box = box
        self.latency_s = latency_s
        self.pcie_sample_s = pcie_sample_s
        self.init_error = init_error
        self.pcie_gate = None
        self.pcie_waiting = 0
        self.initialized = 0
        self.calls: dict[str, int] = {}
        self._fns: dict[str, _Fn] = {}
        faults = box.faults
        self.old_driver = "olddriver" in faults
        self.unsupported = "unsupported" in faults
        self.driver = box.scenario.driver
        # functions this driver generation does not export (gpuwatch.sim.drivers)
        self.missing = set(self.driver.missing)
        if self.old_driver:
            self.missing |= {"nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetMemoryInfo_v2",
                             "nvmlDeviceGetTemperatureV"}
        scen = box.scenario
        self.bus_ids = []
        for i in range(scen.count):
            bus = H100_BUS[i % len(H100_BUS)] if scen.gpu.nvlinks else (0x01 + 4 * i)
            # beyond 8 GPUs (sized benchmark boxes) each block of 8 sits in its own PCI domain
            domain = i // len(H100_BUS) if scen.gpu.nvlinks else 0
            self.bus_ids.append(N.NVML_DEVICE_PCI_BUS_ID_FMT % (domain, bus, 0))
        self.uuids = [
            "GPU-" + str(uuidlib.UUID(bytes=hashlib.md5(f"{scen.name}-{i}".encode()).digest()))
            for i in range(scen.count)
        ]

    # ---- plumbing -----------------------------------------------------------------
    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        fns = self.__dict__.get("_fns")
        if fns is None:
            raise AttributeError(name)
        if name in fns:
            return fns[name]
        impl = getattr(type(self), "c_" + name, None)
        if impl is None or name in self.missing:
            raise AttributeError(name)  # pynvml turns this into NVMLError_FunctionNotFound
        bound = impl.__get__(self)

        def call(*args, _bound=bound, _name=name):
            self.calls[_name] = self.calls.get(_name, 0) + 1
            if self.latency_s:
                end = time.perf_counter() + self.latency_s
                while time.perf_counter() < end:
                    pass
            if not self.initialized and _name not in ("nvmlInitWithFlags", "nvmlInit_v2", "nvmlErrorString"):
                return N.NVML_ERROR_UNINITIALIZED
            return _bound(*args)

        fns[name] = _Fn(call, name)
        return fns[name]

    def _dev(self, handle) -> int | None:
        addr = ctypes.cast(handle, ctypes.c_void_p).value or 0
        idx = addr - _HANDLE_BASE
        if 0 <= idx < self.box.count:
            return idx
        return None

    def _mig(self, handle) -> tuple[int, int] | None:
        """(parent GPU, MIG device index) of a MIG device handle, else None."""
        addr = ctypes.cast(handle, ctypes.c_void_p).value or 0
        off = addr - _MIG_HANDLE_BASE
        if 0 <= off < 16 * self.box.count:
            gpu, k = divmod(off, 16)
            if k < len(self.box.mig_devices(gpu)):
                return gpu, k
        return None

    def _mig_call(self, handle, fn):
        """Answer a call made on a MIG device handle (``fn(gpu, k)``), else None."""
        mig = self._mig(handle)
        if mig is None:
            return None
        if self.box.is_lost(mig[0]):
            return N.NVML_ERROR_GPU_IS_LOST
        return fn(*mig)

    def _either(self, handle, mig, fn):
        r = self._mig_call(handle, mig)
        return self._device_call(handle, fn) if r is None else r

    def _device_call(self, handle, fn, *, supported: bool = True):
        idx = self._dev(handle)
        if idx is None:
            # a MIG device handle answers only the calls that handle it; the rest: NOT_SUPPORTED
            return N.NVML_ERROR_NOT_SUPPORTED if self._mig(handle) is not None else N.NVML_ERROR_INVALID_ARGUMENT
        if self.box.is_lost(idx):
            return N.NVML_ERROR_GPU_IS_LOST
        if not supported:
            return N.NVML_ERROR_NOT_SUPPORTED
        return fn(idx)

    # ---- library and system ---------------------------------------------------------
    def c_nvmlInitWithFlags(self, flags):
        if self.init_error is not None:
            return self.init_error
        self.initialized += 1
        return N.NVML_SUCCESS

    def c_nvmlInit_v2(self):
        return self.c_nvmlInitWithFlags(0)

    def c_nvmlShutdown(self):
        if self.initialized:
            self.initialized -= 1
        return N.NVML_SUCCESS

    _ERROR_STRINGS = {
        N.NVML_SUCCESS: b"Success", N.NVML_ERROR_UNINITIALIZED: b"Uninitialized",
        N.NVML_ERROR_INVALID_ARGUMENT: b"Invalid Argument", N.NVML_ERROR_NOT_SUPPORTED: b"Not Supported",
        N.NVML_ERROR_NO_PERMISSION: b"Insufficient Permissions",
        N.NVML_ERROR_INSUFFICIENT_SIZE: b"Insufficient Size",
        N.NVML_ERROR_DRIVER_NOT_LOADED: b"Driver Not Loaded", N.NVML_ERROR_GPU_IS_LOST: b"GPU is lost",
        N.NVML_ERROR_FUNCTION_NOT_FOUND: b"Function Not Found",
        N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH: b"Argument version mismatch",
        N.NVML_ERROR_UNKNOWN: b"Unknown Error",
    }

    def c_nvmlErrorString(self, result):
        return self._ERROR_STRINGS.get(int(_out(result).value if hasattr(result, "_obj") else result),
                                       b"Unknown Error")

    def c_nvmlSystemGetDriverVersion(self, buf, size):
        buf.value = self.box.scenario.driver_version.encode()
        return N.NVML_SUCCESS

    def c_nvmlSystemGetNVMLVersion(self, buf, size):
        buf.value = self.box.scenario.nvml_version.encode()
        return N.NVML_SUCCESS

    def c_nvmlSystemGetCudaDriverVersion(self, out):
        _out(out).value = self.box.scenario.cuda_version
        return N.NVML_SUCCESS

    c_nvmlSystemGetCudaDriverVersion_v2 = c_nvmlSystemGetCudaDriverVersion

    def c_nvmlDeviceGetCount_v2(self, out):
        _out(out).value = self.box.count
        return N.NVML_SUCCESS

    def c_nvmlDeviceGetHandleByIndex_v2(self, index, out):
        idx = index.value if hasattr(index, "value") else int(index)
        if not 0 <= idx < self.box.count:
            return N.NVML_ERROR_INVALID_ARGUMENT
        if self.box.has_fault("lost-at-start", idx):
            return N.NVML_ERROR_GPU_IS_LOST  # nvmlDeviceGetCount still counts it
        ptr = ctypes.cast(ctypes.c_void_p(_HANDLE_BASE + idx), N.c_nvmlDevice_t)
        ctypes.pointer(_out(out))[0] = ptr
        return N.NVML_SUCCESS

    # ---- identity ---------------------------------------------------------------------
    def c_nvmlDeviceGetName(self, handle, buf, size):
        def f(i):
            buf.value = self.box.spec.name.encode()
            return N.NVML_SUCCESS

        def mig(g, k):
            buf.value = f"{self.box.spec.name} MIG {self.box.mig_devices(g)[k][0]}".encode()
            return N.NVML_SUCCESS
        return self._either(handle, mig, f)

    def c_nvmlDeviceGetUUID(self, handle, buf, size):
        def f(i):
            buf.value = self.uuids[i].encode()
            return N.NVML_SUCCESS

        def mig(g, k):
            buf.value = ("MIG-" + self.uuids[g][4:-4] + f"{k:04x}").encode()
            return N.NVML_SUCCESS
        return self._either(handle, mig, f)

    def c_nvmlDeviceGetIndex(self, handle, out):
        def f(i):
            _out(out).value = i
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetPciInfo_v3(self, handle, out):
        def f(i):
            info = _out(out)
            bus_id = self.bus_ids[i].encode()
            info.busId = bus_id
            info.busIdLegacy = bus_id[-12:]
            info.domain = int(self.bus_ids[i].split(":")[0], 16)
            info.bus = int(self.bus_ids[i].split(":")[1], 16)
            info.device = 0
            info.pciDeviceId = self.box.spec.pci_device_id
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetPersistenceMode(self, handle, out):
        def f(i):
            _out(out).value = 1 if self.box.spec.ecc else 0  # datacenter boxes run persistence on
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetComputeMode(self, handle, out):
        def f(i):
            _out(out).value = N.NVML_COMPUTEMODE_DEFAULT
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetDisplayActive(self, handle, out):
        def f(i):
            _out(out).value = N.NVML_FEATURE_DISABLED  # headless servers
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetDriverModel(self, handle, current, pending):
        """Windows only (WDDM/TCC): NOT_SUPPORTED on Linux, as nvml.h says."""
        return self._device_call(handle, lambda i: N.NVML_ERROR_NOT_SUPPORTED)

    def c_nvmlDeviceGetDriverModel_v2(self, handle, current, pending):
        return self.c_nvmlDeviceGetDriverModel(handle, current, pending)

    def c_nvmlDeviceGetMigMode(self, handle, current, pending):
        """A100/H100/H200 support MIG (off unless the mig fault is on); GeForce does not."""
        def f(i):
            mode = N.NVML_DEVICE_MIG_ENABLE if self.box.mig_enabled(i) else N.NVML_DEVICE_MIG_DISABLE
            _out(current).value = mode
            _out(pending).value = mode
            return N.NVML_SUCCESS
        return self._device_call(handle, f, supported=bool(self.box.spec.mig_slices))

    def c_nvmlDeviceIsMigDeviceHandle(self, handle, out):
        if self._mig(handle) is not None:
            _out(out).value = 1
            return N.NVML_SUCCESS

        def f(i):
            _out(out).value = 0
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetMaxMigDeviceCount(self, handle, out):
        def f(i):
            _out(out).value = self.box.spec.mig_slices
            return N.NVML_SUCCESS
        return self._device_call(handle, f, supported=bool(self.box.spec.mig_slices))

    def c_nvmlDeviceGetMigDeviceHandleByIndex(self, handle, index, out):
        k = index.value if hasattr(index, "value") else int(index)

        def f(i):
            if not self.box.mig_enabled(i):
                return N.NVML_ERROR_INVALID_ARGUMENT  # MIG off: there are no MIG devices
            if k >= len(self.box.mig_devices(i)):
                return N.NVML_ERROR_NOT_FOUND  # an unpopulated slot
            ptr = ctypes.cast(ctypes.c_void_p(_MIG_HANDLE_BASE + 16 * i + k), N.c_nvmlDevice_t)
            ctypes.pointer(_out(out))[0] = ptr
            return N.NVML_SUCCESS
        return self._device_call(handle, f, supported=bool(self.box.spec.mig_slices))

    def c_nvmlDeviceGetGpuInstanceId(self, handle, out):
        def mig(g, k):
            _out(out).value = self.box.mig_devices(g)[k][1]
            return N.NVML_SUCCESS
        return self._either(handle, mig, lambda i: N.NVML_ERROR_INVALID_ARGUMENT)

    def c_nvmlDeviceGetComputeInstanceId(self, handle, out):
        def mig(g, k):
            _out(out).value = 0
            return N.NVML_SUCCESS
        return self._either(handle, mig, lambda i: N.NVML_ERROR_INVALID_ARGUMENT)

    # ---- NVSwitch fabric ------------------------------------------------------------------
    def _fabric(self, handle, info):
        def f(i):
            if not self.box.scenario.nvswitch:
                return N.NVML_ERROR_NOT_SUPPORTED  # no NVSwitch fabric on this board
            o = _out(info)
            o.status = N.NVML_SUCCESS
            o.cliqueId = 0
            o.state = N.NVML_GPU_FABRIC_STATE_NOT_STARTED if self.box.fabric_down(i) else N.NVML_GPU_FABRIC_STATE_COMPLETED
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetGpuFabricInfo(self, handle, info):
        return self._fabric(handle, info)

    def c_nvmlDeviceGetGpuFabricInfoV(self, handle, info):
        if _out(info).version != N.nvmlGpuFabricInfo_v2:
            return N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
        return self._fabric(handle, info)

    def c_nvmlDeviceGetConfComputeMemSizeInfo(self, handle, out):
        """Confidential computing is off on the simulated boxes."""
        return self._device_call(handle, lambda i: N.NVML_ERROR_NOT_SUPPORTED)

    # ---- utilization, memory --------------------------------------------------------------
    def c_nvmlDeviceGetUtilizationRates(self, handle, out):
        def f(i):
            st = self.box.gpu_state(i)
            o = _out(out)
            o.gpu = int(st.util)
            o.memory = int(st.mem_util)
            return N.NVML_SUCCESS
        if (i := self._dev(handle)) is not None and self.box.mig_enabled(i) and not self.box.is_lost(i):
            return N.NVML_ERROR_NOT_SUPPORTED  # whole-GPU utilization is not reported in MIG mode
        return self._device_call(handle, f)

    def _mig_memory(self, out, v2: bool):
        def mig(g, k):
            _name, _gi, total, _pid, used = self.box.mig_devices(g)[k]
            o = _out(out)
            o.total, o.used, o.free = total, used, total - used
            if v2:
                o.reserved = 0
            return N.NVML_SUCCESS
        return mig

    def c_nvmlDeviceGetMemoryInfo(self, handle, out):
        """v1: 'used' counts the driver's reserved memory as used (why v2 exists)."""
        if (r := self._mig_call(handle, self._mig_memory(out, False))) is not None:
            return r

        def f(i):
            st, spec = self.box.gpu_state(i), self.box.spec
            o = _out(out)
            o.total = spec.memory_total_bytes
            o.used = st.mem_used + spec.memory_reserved_bytes
            o.free = spec.memory_total_bytes - o.used
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetMemoryInfo_v2(self, handle, out):
        if _out(out).version == N.nvmlMemory_v2 and (r := self._mig_call(handle, self._mig_memory(out, True))) is not None:
            return r

        def f(i):
            o = _out(out)
            if o.version != N.nvmlMemory_v2:
                return N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
            st, spec = self.box.gpu_state(i), self.box.spec
            o.total = spec.memory_total_bytes
            o.reserved = spec.memory_reserved_bytes
            o.used = st.mem_used
            o.free = spec.memory_total_bytes - spec.memory_reserved_bytes - st.mem_used
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def _codec_util(self, util, period):
        _out(util).value = 0  # LLM serving does not use NVENC/NVDEC
        _out(period).value = 167000  # µs, the driver's sampling period
        return N.NVML_SUCCESS

    def c_nvmlDeviceGetEncoderUtilization(self, handle, util, period):
        return self._device_call(handle, lambda i: self._codec_util(util, period))

    def c_nvmlDeviceGetDecoderUtilization(self, handle, util, period):
        return self._device_call(handle, lambda i: self._codec_util(util, period))

    def c_nvmlDeviceGetProcessUtilization(self, handle, samples, count, last_seen):
        """Per-process samples newer than ``last_seen`` (µs); two calls: NULL buffer -> the
        count with INSUFFICIENT_SIZE; NOT_FOUND when there is no sample."""
        def f(i):
            procs = self.box.gpu_processes(i)
            c = _out(count)
            if not procs:
                c.value = 0
                return N.NVML_ERROR_NOT_FOUND
            if samples is None:
                c.value = len(procs)
                return N.NVML_ERROR_INSUFFICIENT_SIZE
            if c.value < len(procs):
                c.value = len(procs)
                return N.NVML_ERROR_INSUFFICIENT_SIZE
            st = self.box.gpu_state(i)
            now_us = int(time.time() * 1e6)
            share = 1.0 / len(procs)
            for k, (pid, _mem) in enumerate(procs):
                samples[k].pid = pid
                samples[k].timeStamp = now_us
                samples[k].smUtil = int(st.util * share)
                samples[k].memUtil = int(st.mem_util * share)
                samples[k].encUtil = 0
                samples[k].decUtil = 0
            c.value = len(procs)
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    # ---- temperature, power, clocks ---------------------------------------------------------
    def c_nvmlDeviceGetTemperatureV(self, handle, out):
        def f(i):
            o = _out(out)
            if o.version != N.nvmlTemperature_v1:
                return N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
            if o.sensorType != N.NVML_TEMPERATURE_GPU:
                return N.NVML_ERROR_INVALID_ARGUMENT
            o.temperature = int(round(self.box.gpu_state(i).temp))
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetTemperature(self, handle, sensor, out):
        def f(i):
            _out(out).value = int(round(self.box.gpu_state(i).temp))
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetTemperatureThreshold(self, handle, threshold, out):
        spec = self.box.spec
        table = {
            N.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: spec.temp_shutdown_c,
            N.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: spec.temp_slowdown_c,
            N.NVML_TEMPERATURE_THRESHOLD_GPU_MAX: spec.temp_max_operating_c,
        }
        which = threshold.value if hasattr(threshold, "value") else int(threshold)

        def f(i):
            if which not in table or self.box.has_fault("nothresholds", i):
                return N.NVML_ERROR_NOT_SUPPORTED  # nvml.h: not preferred from Ada on, due for removal
            _out(out).value = table[which]
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def _tlimit(self, fid: int) -> int | None:
        """Fields 193-196: each threshold relative to T.Limit (the max operating temperature),
        as driver 580's nvidia-smi shows them (slowdown -2 °C on H100: 2 °C past T.Limit)."""
        spec = self.box.spec
        absolute = {N.NVML_FI_DEV_TEMPERATURE_SHUTDOWN_TLIMIT: spec.temp_shutdown_c,
                    N.NVML_FI_DEV_TEMPERATURE_SLOWDOWN_TLIMIT: spec.temp_slowdown_c,
                    N.NVML_FI_DEV_TEMPERATURE_GPU_MAX_TLIMIT: spec.temp_max_operating_c}.get(fid)
        return None if absolute is None else spec.temp_max_operating_c - absolute

    def c_nvmlDeviceGetMarginTemperature(self, handle, out):
        """Distance (°C) from the current temperature to T.Limit, the nearest slowdown point."""
        def f(i):
            o = _out(out)
            if o.version != N.nvmlMarginTemperature_v1:
                return N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
            o.marginTemperature = int(round(self.box.spec.temp_max_operating_c - self.box.gpu_state(i).temp))
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetPowerUsage(self, handle, out):
        def f(i):
            _out(out).value = int(self.box.gpu_state(i).power_w * 1000)  # milliwatts
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetEnforcedPowerLimit(self, handle, out):
        def f(i):
            _out(out).value = int(self.box.power_capped_limit(i) * 1000)
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetPowerManagementLimit(self, handle, out):
        """The limit set by the administrator (mW); the power fault sets it low."""
        def f(i):
            _out(out).value = int(self.box.power_capped_limit(i) * 1000)
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetPowerManagementDefaultLimit(self, handle, out):
        def f(i):
            _out(out).value = int(self.box.spec.power_limit_w * 1000)
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetClockInfo(self, handle, ctype, out):
        which = ctype.value if hasattr(ctype, "value") else int(ctype)

        def f(i):
            st = self.box.gpu_state(i)
            if which in (N.NVML_CLOCK_SM, N.NVML_CLOCK_GRAPHICS):
                _out(out).value = st.sm_clock
            elif which == N.NVML_CLOCK_MEM:
                _out(out).value = st.mem_clock
            else:
                return N.NVML_ERROR_NOT_SUPPORTED
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetMaxClockInfo(self, handle, ctype, out):
        which = ctype.value if hasattr(ctype, "value") else int(ctype)

        def f(i):
            if which in (N.NVML_CLOCK_SM, N.NVML_CLOCK_GRAPHICS):
                _out(out).value = self.box.spec.sm_clock_max_mhz
            elif which == N.NVML_CLOCK_MEM:
                _out(out).value = self.box.spec.mem_clock_max_mhz
            else:
                return N.NVML_ERROR_NOT_SUPPORTED
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetFanSpeed(self, handle, out):
        def f(i):
            _out(out).value = int(self.box.gpu_state(i).fan_pct)
            return N.NVML_SUCCESS
        return self._device_call(handle, f, supported=self.box.spec.has_fan and not self.unsupported)

    def c_nvmlDeviceGetPerformanceState(self, handle, out):
        def f(i):
            _out(out).value = self.box.gpu_state(i).pstate
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetCurrentClocksEventReasons(self, handle, out):
        def f(i):
            _out(out).value = self.box.gpu_state(i).reasons
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    c_nvmlDeviceGetCurrentClocksThrottleReasons = c_nvmlDeviceGetCurrentClocksEventReasons

    # ---- PCIe ------------------------------------------------------------------------------------
    def c_nvmlDeviceGetCurrPcieLinkGeneration(self, handle, out):
        def f(i):
            _out(out).value = self.box.gpu_state(i).pcie_gen
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetMaxPcieLinkGeneration(self, handle, out):
        def f(i):
            _out(out).value = self.box.spec.pcie_max_gen
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetCurrPcieLinkWidth(self, handle, out):
        def f(i):
            _out(out).value = self.box.gpu_state(i).pcie_width
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetMaxPcieLinkWidth(self, handle, out):
        def f(i):
            _out(out).value = self.box.spec.pcie_max_width
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetPcieThroughput(self, handle, counter, out):
        """KB/s averaged over a 20 ms sample: the call blocks for the sample, like the driver."""
        which = counter.value if hasattr(counter, "value") else int(counter)

        def f(i):
            gate = self.pcie_gate
            if gate is not None:
                self.pcie_waiting += 1
                try:
                    gate.wait(60)
                finally:
                    self.pcie_waiting -= 1
            elif self.pcie_sample_s:
                time.sleep(self.pcie_sample_s)
            st = self.box.gpu_state(i)
            rate = st.pcie_tx_rate if which == N.NVML_PCIE_UTIL_TX_BYTES else st.pcie_rx_rate
            # KB/s as documented; some drivers answer 1000 times bigger (gpuwatch.sim.drivers)
            _out(out).value = min(0xFFFFFFFF, int(rate / 1000 * self.driver.pcie_sampler_scale))
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    # ---- NVLink ------------------------------------------------------------------------------------
    def c_nvmlDeviceGetNvLinkState(self, handle, link, out):
        link = link.value if hasattr(link, "value") else int(link)

        def f(i):
            if self.box.spec.nvlinks == 0:
                return N.NVML_ERROR_NOT_SUPPORTED
            if link >= self.box.spec.nvlinks:
                return N.NVML_ERROR_INVALID_ARGUMENT
            _out(out).value = 0 if self.box.fabric_down(i) else 1  # no fabric manager: links inactive
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetNvLinkRemoteDeviceType(self, handle, link, out):
        def f(i):
            if self.box.spec.nvlinks == 0:
                return N.NVML_ERROR_NOT_SUPPORTED
            _out(out).value = N.NVML_NVLINK_DEVICE_TYPE_SWITCH if self.box.scenario.nvswitch else N.NVML_NVLINK_DEVICE_TYPE_GPU
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetNvLinkRemotePciInfo_v2(self, handle, link, out):
        link = link.value if hasattr(link, "value") else int(link)

        def f(i):
            if self.box.spec.nvlinks == 0:
                return N.NVML_ERROR_NOT_SUPPORTED
            if self.box.scenario.nvswitch:
                bus = N.NVML_DEVICE_PCI_BUS_ID_FMT % (0, 0xC0 + link % 4, 0)
            else:  # a bridge: link to the neighbouring GPU
                bus = self.bus_ids[i ^ 1]
            _out(out).busId = bus.encode()
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    # ---- field values: cumulative counters -----------------------------------------------------------
    def c_nvmlDeviceGetFieldValues(self, handle, count, values):
        n = count.value if hasattr(count, "value") else int(count)
        arr = _out(values)

        driver = self.driver
        # field ids this driver generation knows: 193-198 arrived with R555 (gpuwatch.sim.drivers)
        unknown = set()
        if driver.pcie_byte_counters is None:
            unknown |= {N.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, N.NVML_FI_DEV_PCIE_COUNT_RX_BYTES}
        if not driver.tlimit_fields:
            unknown |= {N.NVML_FI_DEV_TEMPERATURE_SHUTDOWN_TLIMIT, N.NVML_FI_DEV_TEMPERATURE_SLOWDOWN_TLIMIT,
                        N.NVML_FI_DEV_TEMPERATURE_MEM_MAX_TLIMIT, N.NVML_FI_DEV_TEMPERATURE_GPU_MAX_TLIMIT}
        pcie_counters = (driver.pcie_byte_counters == "all" or self.box.spec.ecc) and not (
            self.unsupported or self.old_driver)

        def f(i):
            st = self.box.gpu_state(i)
            now_us = int(time.time() * 1e6)
            spec = self.box.spec
            for k in range(n):
                v = arr[k]
                v.timestamp = now_us
                v.latencyUsec = 0
                v.nvmlReturn = N.NVML_SUCCESS
                fid, scope = v.fieldId, v.scopeId
                if driver.field_accumulates:
                    before = v.value.ullVal  # go-nvml#46: the driver adds into the caller's value
                    _set_field(v, fid, scope, st, spec, unknown, pcie_counters, self)
                    if v.nvmlReturn == N.NVML_SUCCESS:
                        v.value.ullVal = (v.value.ullVal + before) & 0xFFFFFFFFFFFFFFFF
                    continue
                _set_field(v, fid, scope, st, spec, unknown, pcie_counters, self)
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    # ---- ECC, NUMA, topology ---------------------------------------------------------------------------
    def c_nvmlDeviceGetTotalEccErrors(self, handle, etype, ctype, out):
        def f(i):
            _out(out).value = self.box.gpu_state(i).ecc_uncorrected
            return N.NVML_SUCCESS
        return self._device_call(handle, f, supported=self.box.spec.ecc and not self.unsupported)

    def numa_node(self, i: int) -> int:
        scen = self.box.scenario
        return i * scen.numa_nodes // scen.count

    def c_nvmlDeviceGetNumaNodeId(self, handle, out):
        """The node of the GPU's *own* memory: answered on Grace (coherent) systems only;
        NOT_SUPPORTED on x86 H100/H200 boxes (`nvidia-smi topo -m`: "GPU NUMA ID N/A")."""
        return self._device_call(handle, lambda i: N.NVML_ERROR_NOT_SUPPORTED)

    def c_nvmlDeviceGetMemoryAffinity(self, handle, size, out, scope):
        """The NUMA node(s) nearest the GPU (scope NODE), as a bit set of nodes."""
        words = size.value if hasattr(size, "value") else int(size)

        def f(i):
            arr = _out(out)
            for w in range(words):
                arr[w] = 0
            node = self.numa_node(i)
            if node // 64 < words:
                arr[node // 64] |= 1 << (node % 64)
            return N.NVML_SUCCESS
        return self._device_call(handle, f, supported=not self.unsupported)

    def c_nvmlDeviceGetCpuAffinity(self, handle, size, out):
        words = size.value if hasattr(size, "value") else int(size)

        def f(i):
            scen = self.box.scenario
            per = scen.cpus // scen.numa_nodes
            node = self.numa_node(i)
            arr = _out(out)
            for w in range(words):
                arr[w] = 0
            for cpu in range(node * per, (node + 1) * per):
                if cpu // 64 < words:
                    arr[cpu // 64] |= 1 << (cpu % 64)
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    def c_nvmlDeviceGetTopologyCommonAncestor(self, h1, h2, out):
        a, b = self._dev(h1), self._dev(h2)
        if a is None or b is None:
            return N.NVML_ERROR_INVALID_ARGUMENT
        if self.box.is_lost(a) or self.box.is_lost(b):
            return N.NVML_ERROR_GPU_IS_LOST
        scen = self.box.scenario
        if a == b:
            level = N.NVML_TOPOLOGY_INTERNAL
        elif scen.pcie_switch and scen.pcie_switch[a] == scen.pcie_switch[b]:
            level = N.NVML_TOPOLOGY_SINGLE
        elif self.numa_node(a) == self.numa_node(b):
            level = N.NVML_TOPOLOGY_NODE if scen.numa_nodes > 1 else N.NVML_TOPOLOGY_HOSTBRIDGE
        else:
            level = N.NVML_TOPOLOGY_SYSTEM
        _out(out).value = level
        return N.NVML_SUCCESS

    # ---- processes ----------------------------------------------------------------------------------------
    def _process_records(self, handle) -> list[tuple[int, int, int, int]] | int:
        """(pid, used bytes, GPU instance id, compute instance id) on a GPU or MIG device handle,
        or an nvmlReturn_t error."""
        none = 0xFFFFFFFF
        mig = self._mig(handle)
        if mig is not None:
            g, k = mig
            if self.box.is_lost(g):
                return N.NVML_ERROR_GPU_IS_LOST
            _n, gi, _total, pid, mem = self.box.mig_devices(g)[k]
            return [] if pid is None else [(self.box.host_pid(pid), mem, gi, 0)]
        idx = self._dev(handle)
        if idx is None:
            return N.NVML_ERROR_INVALID_ARGUMENT
        if self.box.is_lost(idx):
            return N.NVML_ERROR_GPU_IS_LOST
        in_mig = {self.box.host_pid(pid): gi for _n, gi, _t, pid, _m in self.box.mig_devices(idx) if pid is not None}
        out = []
        for pid, mem in self.box.gpu_processes(idx):
            gi = in_mig.get(pid, none)
            out.append((pid, mem, gi, 0 if gi != none else none))
        return out

    def _processes(self, handle, count, procs, scrambled: bool = False):
        """The two-call process query: a NULL buffer gets the count and INSUFFICIENT_SIZE."""
        records = self._process_records(handle)
        if isinstance(records, int):
            return records
        if scrambled:  # early R535: each process followed by three impossible entries [nvitop#75]
            garbage = [(0, 0, 0, 0), (_INVALID_PID, 0, 0, 0), (_INVALID_PID, 0, 0, 0)]
            records = [r for rec in records for r in (rec, *garbage)]
        c = _out(count)
        if procs is None:
            c.value = len(records)
            return N.NVML_ERROR_INSUFFICIENT_SIZE if records else N.NVML_SUCCESS
        if c.value < len(records):
            c.value = len(records)
            return N.NVML_ERROR_INSUFFICIENT_SIZE
        for k, (pid, mem, gi, ci) in enumerate(records):
            procs[k].pid = pid
            procs[k].usedGpuMemory = mem
            if hasattr(procs[k], "gpuInstanceId"):  # the v1 structure has pid and memory only
                procs[k].gpuInstanceId = gi
                procs[k].computeInstanceId = ci
        c.value = len(records)
        return N.NVML_SUCCESS

    def c_nvmlDeviceGetComputeRunningProcesses_v3(self, handle, count, procs):
        return self._processes(handle, count, procs, scrambled=self.driver.scrambled_pids)

    def c_nvmlDeviceGetComputeRunningProcesses_v2(self, handle, count, procs):
        return self._processes(handle, count, procs)

    def c_nvmlDeviceGetComputeRunningProcesses(self, handle, count, procs):
        """The original entry point (nvmlProcessInfo_v1_t: pid, usedGpuMemory)."""
        return self._processes(handle, count, procs)

    def _no_graphics(self, handle, count, procs):
        def f(i):
            _out(count).value = 0
            return N.NVML_SUCCESS
        return self._device_call(handle, f)

    c_nvmlDeviceGetGraphicsRunningProcesses_v3 = _no_graphics
    c_nvmlDeviceGetGraphicsRunningProcesses_v2 = _no_graphics
    c_nvmlDeviceGetGraphicsRunningProcesses = _no_graphics


def _set_field(v, fid, scope, st, spec, unknown, pcie_counters, lib) -> None:
    """Answer one nvmlFieldValue_t, with the return code the driver gives for that field."""
    if fid in unknown:
        # an id this driver does not know: R535/R550 answer INVALID_ARGUMENT, not NOT_SUPPORTED
        v.nvmlReturn = N.NVML_ERROR_INVALID_ARGUMENT
    elif fid == N.NVML_FI_DEV_NVLINK_LINK_COUNT:
        if spec.nvlinks == 0:
            v.nvmlReturn = N.NVML_ERROR_NOT_SUPPORTED
        else:
            v.valueType = N.NVML_VALUE_TYPE_UNSIGNED_INT
            v.value.ullVal = 0
            v.value.uiVal = spec.nvlinks
    elif fid in (N.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, N.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX):
        totals = st.nvlink_tx_total_kib if fid == N.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX else st.nvlink_rx_total_kib
        if spec.nvlinks == 0:
            v.nvmlReturn = N.NVML_ERROR_NOT_SUPPORTED
        elif scope == 0xFFFFFFFF:
            v.valueType = N.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
            v.value.ullVal = sum(totals)
        elif scope >= spec.nvlinks:
            v.nvmlReturn = N.NVML_ERROR_INVALID_ARGUMENT
        else:
            v.valueType = N.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
            v.value.ullVal = totals[scope] & 0xFFFFFFFFFFFFFFFF
    elif fid in (N.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, N.NVML_FI_DEV_PCIE_COUNT_RX_BYTES):
        if not pcie_counters:  # a known field this GPU does not have (GeForce before R610)
            v.nvmlReturn = N.NVML_ERROR_NOT_SUPPORTED
        else:
            v.valueType = N.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
            total = st.pcie_tx_total if fid == N.NVML_FI_DEV_PCIE_COUNT_TX_BYTES else st.pcie_rx_total
            v.value.ullVal = total & 0xFFFFFFFFFFFFFFFF
    elif (rel := lib._tlimit(fid)) is not None:
        v.valueType = N.NVML_VALUE_TYPE_SIGNED_INT
        v.value.sllVal = 0
        v.value.siVal = rel
    else:
        v.nvmlReturn = N.NVML_ERROR_NOT_SUPPORTED


_saved = {"lib": None}


def install(lib: FakeNvmlLibrary) -> FakeNvmlLibrary:
    """Make pynvml talk to ``lib`` instead of libnvidia-ml.so.1."""
    with N.libLoadLock:
        _saved["lib"] = N.nvmlLib
        N.nvmlLib = lib
        N._nvmlGetFunctionPointer_cache.clear()
    return lib


def uninstall() -> None:
    with N.libLoadLock:
        N.nvmlLib = None
        N._nvmlGetFunctionPointer_cache.clear()
