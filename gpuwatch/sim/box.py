"""The simulated box: the physical state of every GPU and server as a smooth function of time.

Everything is a closed-form function of ``t`` (seconds since the box started), so values
evolve smoothly, cumulative counters are exact integrals of their rates (a test can check a
rate against them), and a test that drives the clock gets the same numbers every run.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from .scenarios import GiB, InstanceSpec, Scenario

TAU = 2 * math.pi

# clock-event reason bits (nvml.h)
REASON_GPU_IDLE = 0x1
REASON_SW_POWER_CAP = 0x4
REASON_HW_SLOWDOWN = 0x8
REASON_SW_THERMAL = 0x20
REASON_HW_THERMAL = 0x40

HOT_ONSET_S = 8.0  # the hot GPU starts heating up
HOT_RAMP_S = 10.0  # ... and reaches its slowdown threshold this much later
LOST_AFTER_S = 20.0
ECC_ONSET_S = 5.0


class RealClock:
    """Monotonic time in steps of 10 ms: a driver refreshes its readings periodically too, and
    calls landing in the same step share one computed GPU state (see ``SimBox.gpu_state``), so
    the simulator's own Python work does not swamp the per-call cost it models."""

    STEP_S = 0.01

    def now(self) -> float:
        return round(time.monotonic() / self.STEP_S) * self.STEP_S


class ManualClock:
    """A clock tests drive by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass
class Wave:
    """load(t) = base + amp*sin(w t + phase) + 0.04*sin(5.3 w t + 2 phase), with its integral."""

    base: float
    amp: float
    period: float
    phase: float

    def value(self, t: float) -> float:
        w = TAU / self.period
        return self.base + self.amp * math.sin(w * t + self.phase) + 0.04 * math.sin(5.3 * w * t + 2 * self.phase)

    def integral(self, t: float) -> float:
        """Integral of value() from 0 to t."""
        w = TAU / self.period
        w2 = 5.3 * w
        a = -self.amp / w * (math.cos(w * t + self.phase) - math.cos(self.phase))
        b = -0.04 / w2 * (math.cos(w2 * t + 2 * self.phase) - math.cos(2 * self.phase))
        return self.base * t + a + b


@dataclass
class GpuState:
    lost: bool
    util: float
    mem_util: float
    mem_used: int
    temp: float
    power_w: float
    power_limit_w: float
    sm_clock: int
    mem_clock: int
    fan_pct: float
    pstate: int
    reasons: int
    pcie_gen: int
    pcie_width: int
    pcie_tx_rate: float  # bytes/s
    pcie_rx_rate: float
    pcie_tx_total: int  # bytes since boot
    pcie_rx_total: int
    nvlink_tx_total_kib: list[int]  # per link, KiB
    nvlink_rx_total_kib: list[int]
    ecc_uncorrected: int


@dataclass
class InstanceState:
    up: bool
    load: float
    generation_tokens_total: int
    prompt_tokens_total: int
    generation_tokens_per_s: float
    prompt_tokens_per_s: float
    requests_running: int
    requests_waiting: int
    kv_cache_usage: float  # fraction 0..1
    ttft_s: float
    itl_s: float
    preemptions_total: int
    requests_total: int


class SimBox:
    """State of the simulated machine. Thread-safe: all methods are pure functions of time
    except for the counter-reset switch tests use."""

    def __init__(self, scenario: Scenario, faults: dict[str, int] | None = None, clock=None,
                 start_offset_s: float = 0.0) -> None:
        self.scenario = scenario
        self.faults = dict(faults or {})
        self.clock = clock or RealClock()
        # start_offset_s: the box has already been running this long (faults established)
        self.t0 = self.clock.now() - start_offset_s
        self.spec = scenario.gpu
        self.count = scenario.count
        self._waves = {inst.name: Wave(inst.load_base, inst.load_amplitude, inst.load_period_s, inst.load_phase)
                       for inst in scenario.instances}
        # every instance (with its rank) holding memory on each GPU: a GPU may be shared
        self._gpu_owners: dict[int, list[tuple[InstanceSpec, int]]] = {}
        for inst in scenario.instances:
            for rank, g in enumerate(inst.gpus):
                self._gpu_owners.setdefault(g, []).append((inst, rank))
        # per-GPU counters offsets, so tests can simulate a counter reset (driver reload)
        self._counter_base: dict[int, float] = {}
        self.ports: dict[str, int] = {}  # instance name -> real loopback port of its simulated server
        self._state_cache: dict[int, tuple[float, GpuState]] = {}
        # MIG mode per GPU; tests switch it at run time (`set_mig`), as `nvidia-smi -mig 0|1` does
        self._mig = {g: True for g in range(self.count) if self.has_fault("mig", g) and self.spec.mig_slices}

    # ---- time -----------------------------------------------------------------
    def t(self) -> float:
        return self.clock.now() - self.t0

    def fault_gpu(self, fault: str) -> int | None:
        idx = self.faults.get(fault)
        return None if idx is None else idx

    def has_fault(self, fault: str, gpu: int | None = None) -> bool:
        if fault not in self.faults:
            return False
        return gpu is None or self.faults[fault] == gpu or self.faults[fault] == -1

    def is_lost(self, gpu: int, t: float | None = None) -> bool:
        if self.has_fault("lost-at-start", gpu):
            return True
        t = self.t() if t is None else t
        return self.has_fault("lost", gpu) and t >= LOST_AFTER_S

    # ---- MIG, fabric, PID namespace ---------------------------------------------------
    def mig_enabled(self, gpu: int) -> bool:
        return self._mig.get(gpu, False)

    def set_mig(self, gpu: int, on: bool) -> None:
        self._mig[gpu] = bool(on)

    # MIG devices of a MIG-enabled GPU: (profile name, memory slices, pid or None, its memory)
    MIG_LAYOUT = (("3g.40gb", 4, 24000, 18 * GiB), ("3g.40gb", 4, None, 0))

    def mig_devices(self, gpu: int) -> list[tuple[str, int, int, int | None, int]]:
        """(name, gpu instance id, total bytes, pid, pid's memory) of each MIG device."""
        if not self.mig_enabled(gpu):
            return []
        slice_bytes = (self.spec.memory_total_bytes - self.spec.memory_reserved_bytes) // 8
        return [(name, 1 + 1 * k, slices * slice_bytes, pid, mem)
                for k, (name, slices, pid, mem) in enumerate(self.MIG_LAYOUT)]

    def fabric_down(self, gpu: int) -> bool:
        return self.scenario.nvswitch and self.has_fault("fabric", gpu)

    def host_pid(self, pid: int) -> int:
        """The pid NVML reports for ``pid``: the same one, unless gpuwatch runs in a container's
        PID namespace: then NVML (which knows only the host's namespace) reports host pids that
        mean nothing here, and one of them happens to be the pid of an unrelated process."""
        if not self.has_fault("container"):
            return pid
        first = self.scenario.instances[0] if self.scenario.instances else None
        if first is not None and pid == self.gpu_pid(first, 0):
            return self.server_pid(self.scenario.instances[-1])  # a pid that exists here: another server
        return pid + 3_100_000

    def reset_counters(self, gpu: int) -> None:
        """Make the GPU's cumulative counters restart from zero now (as after a driver reload)."""
        self._counter_base[gpu] = self.t()
        self._state_cache.pop(gpu, None)

    # ---- GPU load ---------------------------------------------------------------
    def _share(self, inst: InstanceSpec, rank: int, gpu: int) -> float:
        share = inst.gpu_work_share[rank] if inst.gpu_work_share else 1.0
        if self.has_fault("idle", gpu):
            share = 0.02
        return share

    def _load_integral(self, gpu: int, t: float) -> float:
        total = 0.01 * t
        for inst, rank in self._gpu_owners.get(gpu, ()):
            total += self._share(inst, rank, gpu) * self._waves[inst.name].integral(t)
        return total

    def gpu_load(self, gpu: int, t: float) -> float:
        owners = self._gpu_owners.get(gpu)
        if not owners or self.is_lost(gpu, t):
            return 0.0
        load = sum(self._share(inst, rank, gpu) * self._waves[inst.name].value(t) for inst, rank in owners)
        return max(0.0, min(1.0, load))

    def hot_progress(self, gpu: int, t: float) -> float:
        """0 before the hot fault starts, rising to 1 when the GPU reaches its slowdown temperature."""
        if not self.has_fault("hot", gpu):
            return 0.0
        return max(0.0, min(1.0, (t - HOT_ONSET_S) / HOT_RAMP_S))

    def thermally_throttled(self, gpu: int, t: float) -> bool:
        return self.hot_progress(gpu, t) >= 1.0

    def power_capped_limit(self, gpu: int) -> float:
        if self.has_fault("power", gpu):
            return round(self.spec.power_limit_w * 0.5)
        return self.spec.power_limit_w

    def gpu_state(self, gpu: int, t: float | None = None) -> GpuState:
        t = self.t() if t is None else t
        hit = self._state_cache.get(gpu)
        if hit is not None and hit[0] == t:
            return hit[1]  # the dozen NVML calls of one sample see one state, computed once
        state = self._gpu_state(gpu, t)
        self._state_cache[gpu] = (t, state)
        return state

    def _gpu_state(self, gpu: int, t: float) -> GpuState:
        spec = self.spec
        lost = self.is_lost(gpu, t)
        load = self.gpu_load(gpu, t)
        owners = self._gpu_owners.get(gpu, [])
        busy = load > 0.05
        util = round(100 * load)
        wobble = math.sin(0.37 * t + gpu)
        # memory: weights (and vLLM's preallocated KV cache) stay put; a little activation churn
        mem_used = sum(self.weights_on_gpu(inst, rank) for inst, rank in owners)
        mem_used += sum(mem for *_rest, mem in self.mig_devices(gpu))
        if owners:
            mem_used += int(0.15 * GiB * load)
        mem_used = min(mem_used, spec.memory_total_bytes - spec.memory_reserved_bytes)
        mem_util = round(util * 0.62)

        limit = self.power_capped_limit(gpu)
        natural_power = spec.power_idle_w + (spec.power_limit_w - spec.power_idle_w) * (0.08 + 0.85 * load)
        if not busy:
            natural_power = spec.power_idle_w + 3 * wobble
        power = min(natural_power, limit * (0.985 + 0.01 * wobble))
        reasons = 0
        clock_factor = 0.965 + 0.02 * wobble
        if natural_power >= limit * 0.985 and busy:
            reasons |= REASON_SW_POWER_CAP
            clock_factor *= max(0.55, limit / natural_power)
        temp = spec.temp_idle_c + (spec.temp_full_load_c - spec.temp_idle_c) * (power - spec.power_idle_w) / (
            spec.power_limit_w - spec.power_idle_w) + 0.6 * wobble
        hot = self.hot_progress(gpu, t)
        if hot > 0:
            # a throttling GPU holds about its slowdown point; it never reaches its shutdown point
            # (that would power it off)
            target = min(spec.temp_slowdown_c + 1.0 + 0.4 * wobble, spec.temp_shutdown_c - 1.2)
            temp = temp + (target - temp) * hot
            if hot >= 1.0:
                reasons |= REASON_SW_THERMAL | REASON_HW_THERMAL
                clock_factor *= 0.71
        if busy:
            sm_clock = int(spec.sm_clock_max_mhz * clock_factor)
            pstate = spec.busy_pstate  # GeForce runs CUDA at P2
            mem_clock = spec.mem_clock_max_mhz
        else:
            sm_clock = spec.sm_clock_idle_mhz
            # a CUDA context holds GeForce at P2; H100/H200 stay at P0 at idle
            pstate = spec.busy_pstate if owners and spec.busy_pstate else spec.idle_pstate
            mem_clock = spec.mem_clock_max_mhz if owners or pstate == 0 else 405
            reasons |= REASON_GPU_IDLE
        fan = 30 + 60 * max(0.0, (temp - spec.temp_idle_c) / (spec.temp_slowdown_c - spec.temp_idle_c))
        if spec.zero_rpm_fan and not busy and temp < 50:
            fan = 0.0  # consumer boards stop their fans when cool

        # PCIe: GeForce links drop to Gen1 at idle on purpose (H100/H200 stay at Gen5); a degraded
        # link trained at x4 stays there
        gen = spec.pcie_max_gen if busy or spec.idle_pcie_gen is None else spec.idle_pcie_gen
        width = 4 if self.has_fault("pcie", gpu) else spec.pcie_max_width
        base_t = self._counter_base.get(gpu, 0.0)
        li = self._load_integral(gpu, t) - self._load_integral(gpu, base_t)
        span = t - base_t
        pcie_rx_rate = 4e6 + 180e6 * load
        pcie_tx_rate = 2e6 + 95e6 * load
        pcie_rx_total = int(4e6 * span + 180e6 * li)
        pcie_tx_total = int(2e6 * span + 95e6 * li)
        # NVLink: tensor-parallel groups all-reduce over NVLink, proportional to load
        links = spec.nvlinks
        nv_tx, nv_rx = [0] * links, [0] * links
        if links and any(inst.parallelism == "tensor" and len(inst.gpus) > 1 for inst, _ in owners):
            per_link_kib = 6.5e9 / 1024 / links * 18 / max(1, links)
            for link in range(links):
                nv_tx[link] = int(per_link_kib * li * (1 + 0.01 * link))
                nv_rx[link] = int(per_link_kib * li * (1 + 0.01 * ((link + 3) % links)))
        ecc = 0
        if self.has_fault("ecc", gpu) and t > ECC_ONSET_S:
            ecc = int((t - ECC_ONSET_S) / 4) + 1
        return GpuState(
            lost=lost, util=util, mem_util=mem_util, mem_used=mem_used, temp=temp, power_w=power,
            power_limit_w=limit, sm_clock=sm_clock, mem_clock=mem_clock, fan_pct=fan, pstate=pstate,
            reasons=reasons, pcie_gen=gen, pcie_width=width, pcie_tx_rate=pcie_tx_rate,
            pcie_rx_rate=pcie_rx_rate, pcie_tx_total=pcie_tx_total, pcie_rx_total=pcie_rx_total,
            nvlink_tx_total_kib=nv_tx, nvlink_rx_total_kib=nv_rx, ecc_uncorrected=ecc,
        )

    # ---- processes ----------------------------------------------------------------
    def server_pid(self, inst: InstanceSpec) -> int:
        return 20000 + 100 * self.scenario.instances.index(inst)

    def gpu_pid(self, inst: InstanceSpec, rank: int) -> int:
        """The pid NVML lists on the instance's rank-th GPU."""
        if inst.kind == "vllm" and len(inst.gpus) > 1:
            return self.server_pid(inst) + 10 + rank  # one worker process per GPU
        if inst.kind in ("ollama", "sglang"):
            return self.server_pid(inst) + 1  # ollama runner / sglang scheduler child
        return self.server_pid(inst)

    def gpu_processes(self, gpu: int) -> list[tuple[int, int]]:
        """(pid, GPU memory) of every process on the GPU: the activation churn goes to the
        process of the GPU's first owner, the weights to each owner."""
        owners = self._gpu_owners.get(gpu, [])
        mig = [(self.host_pid(pid), mem) for _n, _gi, _total, pid, mem in self.mig_devices(gpu) if pid is not None]
        if not owners:
            return mig
        extra = self.gpu_state(gpu).mem_used - sum(self.weights_on_gpu(inst, rank) for inst, rank in owners)
        out = []
        for k, (inst, rank) in enumerate(owners):
            out.append((self.host_pid(self.gpu_pid(inst, rank)),
                        self.weights_on_gpu(inst, rank) + (extra if k == 0 else 0)))
        return out + mig

    # ---- inference servers ---------------------------------------------------------
    def instance(self, name: str) -> InstanceSpec:
        for inst in self.scenario.instances:
            if inst.name == name:
                return inst
        raise KeyError(name)

    def _throughput_factor_at(self, inst: InstanceSpec, t: float) -> float:
        f = 1.0
        for g in inst.gpus:
            if self.thermally_throttled(g, t):
                f = min(f, 0.69)
            if self.has_fault("power", g):
                f = min(f, 0.8)
            if self.has_fault("pcie", g) and inst.parallelism != "single":
                f = min(f, 0.88)
        if inst.kind == "ollama" and self.has_fault("offload"):
            f = min(f, 0.06)
        return f

    def _hot_step_time(self, inst: InstanceSpec) -> float | None:
        if any(self.has_fault("hot", g) for g in inst.gpus):
            return HOT_ONSET_S + HOT_RAMP_S
        return None

    def _token_integral(self, inst: InstanceSpec, t: float) -> float:
        """Generated tokens since start: the integral of peak * load * factor, piecewise at the
        moment a hot GPU starts throttling."""
        wave = self._waves[inst.name]
        step = self._hot_step_time(inst)
        f_now = self._throughput_factor_at(inst, t)
        if step is None or t < step:  # at the step itself the GPU throttles: the piecewise sum
            return inst.peak_tokens_per_s * f_now * wave.integral(t)
        f_before = self._throughput_factor_at(inst, step - 1e-6)
        before = inst.peak_tokens_per_s * f_before * wave.integral(step)
        return before + inst.peak_tokens_per_s * f_now * (wave.integral(t) - wave.integral(step))

    def instance_up(self, inst: InstanceSpec, t: float) -> bool:
        return not any(self.is_lost(g, t) for g in inst.gpus)

    def instance_state(self, name: str, t: float | None = None) -> InstanceState:
        t = self.t() if t is None else t
        inst = self.instance(name)
        wave = self._waves[inst.name]
        up = self.instance_up(inst, t)
        load = max(0.0, min(1.0, wave.value(t))) if inst.peak_tokens_per_s else 0.0
        factor = self._throughput_factor_at(inst, t)
        gen_rate = inst.peak_tokens_per_s * load * factor if up else 0.0
        gen_total = int(self._token_integral(inst, t))
        prompt_total = int(3.2 * inst.peak_tokens_per_s * wave.integral(t)) if inst.peak_tokens_per_s else 0
        running = int(round(48 * load)) if inst.peak_tokens_per_s else 0
        if inst.kind in ("ollama", "llamacpp"):
            running = min(4, int(round(4 * load))) if inst.peak_tokens_per_s else 0
        waiting = max(0, int(round(30 * (load - 0.8)))) if load > 0.8 else 0
        if factor < 0.75:  # a throttled group falls behind and a queue forms
            waiting += int(6 * load)
        kv = min(0.99, 0.1 + 0.85 * load)
        itl = 1.0 / max(1e-6, (inst.peak_tokens_per_s * factor / max(1, running))) if running and up else 0.0
        ttft = 0.08 + 0.5 * load + 0.4 * waiting / 10
        preempt = int(max(0.0, wave.integral(t) - 0.7 * t) * 0.5) if inst.kind == "vllm" else 0
        requests_total = int(0.05 * inst.peak_tokens_per_s * wave.integral(t) / 10) if inst.peak_tokens_per_s else 0
        return InstanceState(
            up=up, load=load, generation_tokens_total=gen_total, prompt_tokens_total=prompt_total,
            generation_tokens_per_s=gen_rate, prompt_tokens_per_s=3.2 * inst.peak_tokens_per_s * load if up else 0.0,
            requests_running=running if up else 0, requests_waiting=waiting if up else 0, kv_cache_usage=kv,
            ttft_s=ttft, itl_s=min(itl, 2.0), preemptions_total=preempt, requests_total=requests_total,
        )

    def weights_on_gpu(self, inst: InstanceSpec, rank: int) -> int:
        """What the instance holds on its rank-th GPU: an Ollama model partly on the CPU holds
        only its VRAM share, split like the whole (Ollama's /api/ps size_vram = the sum of it)."""
        held = inst.weights_bytes_per_gpu[rank]
        if inst.kind == "ollama":
            size, vram = self.ollama_size_vram(inst)
            if size and vram < size:
                held = int(held * vram / size)
        return held

    def ollama_size_vram(self, inst: InstanceSpec) -> tuple[int, int]:
        size = inst.size_bytes or sum(inst.weights_bytes_per_gpu)
        vram = inst.size_vram_bytes or size
        if self.has_fault("offload"):
            vram = int(size * 0.62)
        return size, vram
