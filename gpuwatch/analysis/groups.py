"""Which GPUs each inference instance uses, and how it spreads over them.

Joins ``Instance.pids`` (the listening server and all its descendants: vLLM workers, Ollama
runners) with the pids NVML lists on each GPU. Pure: works on the model objects only.
"""

from __future__ import annotations

from ..model import Instance, Snapshot
from ..vocab import LAYER_SPLIT_BY_DEFAULT, MODEL_LOADED_AT_START


def runs_on_cpu(snapshot: Snapshot, inst: Instance, gpu_pids_visible: bool) -> bool:
    """A local server (its pid known) that is serving while none of its processes holds GPU
    memory: on a box without GPUs, or where NVML lists other processes (so it could list ours).
    Engines that load their model at start only: an idle Ollama holds no GPU memory either."""
    if inst.parallelism == "cpu":
        return True  # said so on its command line (llama.cpp -ngl 0)
    if inst.pid is None or inst.status != "up" or inst.kind not in MODEL_LOADED_AT_START:
        return False
    return not snapshot.gpus or (snapshot.nvml_error is None and gpu_pids_visible)


def assign_gpus(snapshot: Snapshot) -> Snapshot:
    """Fill ``instance.gpus`` (sorted indices), ``instance.gpu_memory_bytes`` ({"0": bytes}),
    ``parallelism``/``parallel_size``, and ``GPU.instances``. Idempotent; returns the snapshot."""
    owner: dict[int, list[tuple[int, int | None]]] = {}  # pid -> [(gpu index, used bytes)]
    if snapshot.pid_namespace == "container":
        return snapshot  # NVML's pids are the host's: a match here would tie the wrong process to a GPU
    for gpu in snapshot.gpus:
        for proc in gpu.processes:
            owner.setdefault(proc.pid, []).append((gpu.index, proc.used_memory_bytes))
    for inst in snapshot.instances:
        mem: dict[int, int] = {}
        seen: set[int] = set()
        for pid in set(inst.pids) | ({inst.pid} if inst.pid is not None else set()):
            for index, used in owner.get(pid, ()):
                seen.add(index)
                mem[index] = mem.get(index, 0) + (used or 0)
        if not seen:
            seen = _container_gpus(snapshot, inst.container_gpus)
        if not seen:
            if runs_on_cpu(snapshot, inst, bool(owner)):
                inst.parallelism, inst.parallel_size = "cpu", None
            continue  # nothing on a GPU we can see (remote server, or not loaded): keep the hint
        inst.gpus = sorted(seen)
        inst.gpu_memory_bytes = {str(i): mem.get(i, 0) for i in inst.gpus}
        n = len(inst.gpus)
        if n == 1:
            inst.parallelism, inst.parallel_size = "single", 1
        else:
            if inst.parallelism not in ("tensor", "pipeline"):
                inst.parallelism = "pipeline" if inst.kind in LAYER_SPLIT_BY_DEFAULT else "unknown"
            inst.parallel_size = n
        for index in inst.gpus:
            gpu = snapshot.gpu(index)
            if gpu is not None and inst.name not in gpu.instances:
                gpu.instances.append(inst.name)
    return snapshot


def _container_gpus(snapshot: Snapshot, declared: list[str]) -> set[int]:
    """The GPUs a Docker container was given (indices or UUIDs; "all"), for a containerised
    server whose processes NVML does not list (yet)."""
    out: set[int] = set()
    for d in declared:
        if d == "all":
            return {g.index for g in snapshot.gpus}
        for g in snapshot.gpus:
            if d == str(g.index) or (g.uuid and d.lower() == g.uuid.lower()):
                out.add(g.index)
    return out
