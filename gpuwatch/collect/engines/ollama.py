"""Ollama: ``/api/version`` and ``/api/ps`` (loaded models, VRAM share). No release has token
counters: throughput comes from a ``gpuwatch meter`` in front of it (``gpuwatch.collect.meters``)
or the on-demand benchmark (``gpuwatch.collect.bench``). A build with ``/metrics``
(``OLLAMA_METRICS``, see ``names.OLLAMA``) is read through the table like the other engines;
a server without it is asked again only every ``RARELY_S``."""

from __future__ import annotations

import asyncio
from typing import Any

from ...model import ModelInfo
from ...sanitize import count_or_none
from . import names
from .base import RARELY_S, Engine, FetchError, Fetcher, Reading, prometheus_reading, scrape_off_loop, wanted_names


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
    table = names.OLLAMA
    wanted = wanted_names(names.OLLAMA)

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:
        version, ps, metrics = await asyncio.gather(
            f.rarely(cache, "version", lambda: f.get_json("/api/version")), f.get_json("/api/ps"),
            self._metrics(f, cache))
        r = metrics or Reading()
        if isinstance(version, dict) and "version" in version:
            r.version = str(version["version"])
        r.models = parse_ps(ps)
        return r

    def parallelism(self, argv: list[str]) -> tuple[str, int | None]:
        return "pipeline", None  # Ollama always splits by layers across GPUs

    async def _metrics(self, f: Fetcher, cache: dict[str, Any]) -> Reading | None:
        """The counters of an OLLAMA_METRICS build; None (and not asked again for a while) when
        the server has no /metrics or it carries no ollama_ series."""
        now = f.clock()
        if cache.get("no_metrics_until", 0.0) > now:
            return None
        try:
            text = await f.get_text("/metrics", optional=True)
            scrape = await scrape_off_loop(text or "", wanted=self.wanted, series=cache.setdefault("series", {}))
        except FetchError:
            text, scrape = None, None
        if scrape is None or not scrape.has_prefix(names.METRIC_PREFIX[self.kind]):
            cache["no_metrics_until"] = now + RARELY_S
            return None
        return prometheus_reading(scrape, self.table)
