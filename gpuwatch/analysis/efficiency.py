"""Energy per token and hardware utilisation per inference instance.

Runs after ``assign_gpus`` (it needs ``Instance.gpus`` and ``gpu_memory_bytes``). The power of
an instance is the power of the GPUs it holds memory on; a GPU that several instances use is
split between them by their share of the memory they hold on it (``power_shared`` says so):
NVML reports power per board, not per process, so memory is the best proxy gpuwatch has.
"""

from __future__ import annotations

from ..model import Snapshot
from .peaks import peak_for


def instance_efficiency(snapshot: Snapshot) -> Snapshot:
    users: dict[int, dict[str, int]] = {}  # GPU index -> instance name -> bytes held there
    for inst in snapshot.instances:
        for index in inst.gpus:
            users.setdefault(index, {})[inst.name] = inst.gpu_memory_bytes.get(str(index), 0) or 0
    for inst in snapshot.instances:
        if inst.status != "up" or not inst.gpus:
            continue
        power = 0.0
        shared = False
        for index in inst.gpus:
            gpu = snapshot.gpu(index)
            if gpu is None or gpu.power_w is None:
                power = None
                break
            held = users.get(index, {})
            share = 1.0
            if len(held) > 1:
                shared = True
                total = sum(held.values())
                share = held.get(inst.name, 0) / total if total else 1.0 / len(held)
            power += gpu.power_w * share
        if power is None:
            continue
        inst.power_w = power
        inst.power_shared = shared
        tok = inst.generation_tokens_per_s
        if tok is not None and power > 0:
            inst.tokens_per_s_per_kw = tok / (power / 1000.0)
            inst.joules_per_token = power / tok if tok > 0 else None
        first = snapshot.gpu(inst.gpus[0])
        peak = peak_for(first.name if first is not None else None)
        if peak is not None:
            if inst.flops_per_gpu_per_s is not None:
                inst.mfu_pct = 100.0 * inst.flops_per_gpu_per_s / peak[0]
            if inst.read_bytes_per_gpu_per_s is not None:
                inst.mem_bw_util_pct = 100.0 * inst.read_bytes_per_gpu_per_s / peak[1]
    return snapshot
