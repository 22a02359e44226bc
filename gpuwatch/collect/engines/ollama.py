"""Ollama: ``/api/version`` and ``/api/ps`` (loaded models, VRAM share). No token counters:
throughput comes from the on-demand benchmark (``gpuwatch.collect.bench``)."""

from __future__ import annotations

import asyncio
from typing import Any

from ...model import ModelInfo
from ...sanitize import count_or_none
from .base import Engine, FetchError, Fetcher, Reading


def parse_ps(data: Any) -> list[ModelInfo]:
    """Models of an ``/api/ps`` answer."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise FetchError("unexpected /api/ps answer (no models list)", path="/api/ps")
    out = []
    for m in data["models"]:
        if not isinstance(m, dict):
            continue
        errors: dict[str, str] = {}
        # a negative or absurd size (10**400) is a bad reading of this model only
        size, why = count_or_none(m.get("size"), "size_bytes")
        if why:
            errors["size_bytes"] = why
        vram, why = count_or_none(m.get("size_vram"), "size_vram_bytes")
        if why:
            errors["size_vram_bytes"] = why
        offload = None
        if size and vram is not None and vram <= size:
            offload = 100.0 * (size - vram) / size
        elif size and vram is not None:
            errors["cpu_offload_pct"] = "size_vram is larger than size"
        details = m.get("details") if isinstance(m.get("details"), dict) else {}
        ctx, _ = count_or_none(m.get("context_length"), "context_length")
        out.append(ModelInfo(
            name=str(m.get("name") or m.get("model") or "?"), size_bytes=size, size_vram_bytes=vram,
            cpu_offload_pct=offload, context_length=ctx,
            expires_at=m.get("expires_at") if isinstance(m.get("expires_at"), str) else None,
            quantization=_text(details.get("quantization_level")), parameter_size=_text(details.get("parameter_size")),
            errors=errors,
        ))
    return out


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


class OllamaEngine(Engine):
    kind = "ollama"

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:
        version, ps = await asyncio.gather(f.rarely(cache, "version", lambda: f.get_json("/api/version")),
                                           f.get_json("/api/ps"))
        r = Reading()
        if isinstance(version, dict) and "version" in version:
            r.version = str(version["version"])
        r.models = parse_ps(ps)
        return r

    def parallelism(self, argv: list[str]) -> tuple[str, int | None]:
        return "pipeline", None  # Ollama always splits by layers across GPUs
