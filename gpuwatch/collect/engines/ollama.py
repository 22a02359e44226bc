"""Ollama: ``/api/version`` and ``/api/ps`` (loaded models, VRAM share). No token counters:
throughput comes from the on-demand benchmark (``gpuwatch.collect.bench``)."""

from __future__ import annotations

import asyncio
from typing import Any

from ...model import ModelInfo
from .base import Engine, FetchError, Fetcher, Reading


def parse_ps(data: Any) -> list[ModelInfo]:
    """Models of an ``/api/ps`` answer."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise FetchError("unexpected /api/ps answer (no models list)", path="/api/ps")
    out = []
    for m in data["models"]:
        if not isinstance(m, dict):
            continue
        size = m.get("size") if isinstance(m.get("size"), int) else None
        vram = m.get("size_vram") if isinstance(m.get("size_vram"), int) else None
        offload = None
        if size and vram is not None:
            offload = max(0.0, 100.0 * (size - vram) / size)
        details = m.get("details") if isinstance(m.get("details"), dict) else {}
        ctx = m.get("context_length")
        out.append(ModelInfo(
            name=str(m.get("name") or m.get("model") or "?"), size_bytes=size, size_vram_bytes=vram,
            cpu_offload_pct=offload, context_length=ctx if isinstance(ctx, int) else None,
            expires_at=m.get("expires_at") if isinstance(m.get("expires_at"), str) else None,
            quantization=details.get("quantization_level"), parameter_size=details.get("parameter_size"),
        ))
    return out


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
