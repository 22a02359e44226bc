"""The words gpuwatch's data is written in, shared by every layer: alert severities and their
order, throttle (clock-event) reasons, inference-engine kinds. Plain tables with no imports,
so analysis, the fleet source and the front ends can use them without loading a collector."""

from __future__ import annotations

# ---- alert severities, least to most severe ------------------------------------------------
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}


def severity_rank(severity: str | None) -> int:
    """Rank of a severity; an unknown word ranks as ``info`` (never above a known one)."""
    return SEVERITY_RANK.get(severity or "", 0)


def worst_severity(severities) -> str | None:
    """The most severe of ``severities`` (None when there are none)."""
    return max(severities, key=severity_rank, default=None)


# ---- clock-event (throttle) reasons --------------------------------------------------------
# NVML's nvmlClocksEventReason* / nvmlClocksThrottleReason* bits (nvml.h; the same mask is
# DCGM's DCGM_FI_DEV_CLOCK_THROTTLE_REASONS) -> the stable names used across gpuwatch.
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake"),
    (0x100, "display_clocks"),
)


def decode_throttle_reasons(mask: int | None) -> list[str]:
    if mask is None:
        return []
    return [name for bit, name in THROTTLE_REASONS if mask & bit]


# ---- inference engines ---------------------------------------------------------------------
ENGINE_KINDS: tuple[str, ...] = ("ollama", "vllm", "llamacpp", "sglang", "tgi", "tabbyapi", "lmstudio", "llamaswap")
# how each engine spells its own name (what an operator reads on screen)
ENGINE_LABELS: dict[str, str] = {"ollama": "Ollama", "vllm": "vLLM", "llamacpp": "llama.cpp", "sglang": "SGLang",
                                 "tgi": "TGI", "tabbyapi": "TabbyAPI", "lmstudio": "LM Studio",
                                 "llamaswap": "llama-swap"}

# engines that split a model by layers when it spans several GPUs and nothing says otherwise
# (Ollama and llama.cpp's default --split-mode layer)
LAYER_SPLIT_BY_DEFAULT: tuple[str, ...] = ("ollama", "llamacpp")
# engines whose server process holds its model from start to end (Ollama loads on demand, in a
# runner child): serving with no GPU memory means running on the CPU
MODEL_LOADED_AT_START: tuple[str, ...] = ("llamacpp",)


def engine_label(kind: str | None) -> str:
    return ENGINE_LABELS.get(kind or "", kind or "unknown")
