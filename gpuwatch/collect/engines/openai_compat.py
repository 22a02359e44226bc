"""Servers that speak only the OpenAI API plus a little of their own: TabbyAPI (ExLlamaV2/V3)
and LM Studio. No token counters: throughput comes from the on-demand benchmark, or from a
meter in front of them.

TabbyAPI (theroyallab/tabbyAPI ``endpoints/core/router.py``): ``GET /health`` -> {"status":
"healthy"|"unhealthy", "issues": [...]} (503 when unhealthy); ``GET /v1/model`` -> the loaded
model's card {"id", "parameters": {"max_seq_len", "max_batch_size", ...}}, 503 "No models are
currently loaded." (``common/model.py check_model_container``); ``GET /.well-known/serviceinfo``
-> {"software": {"name": "TabbyAPI"}} identifies it. It also answers llama.cpp's ``/props``
(``total_slots``, ``default_generation_settings``), so detection asks serviceinfo first.

LM Studio (lmstudio.ai docs, REST API v0, LM Studio >= 0.3.6): ``GET /api/v0/models`` ->
{"data": [{"id", "type": "llm"|"vlm"|"embeddings", "quantization", "state": "loaded"|
"not-loaded", "max_context_length", ...}]}; ``/v1/models`` is the OpenAI list.
"""

from __future__ import annotations

from typing import Any

from ...model import ModelInfo
from .base import Engine, FetchError, Fetcher, Reading


class TabbyEngine(Engine):
    kind = "tabbyapi"

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:
        r = Reading()
        health = await f.get_json("/health", optional=True)
        try:
            card = await f.get_json("/v1/model", optional=True)
        except FetchError as e:
            if "No models are currently loaded" not in e.message:
                raise
            card = None  # up, nothing loaded
        if isinstance(card, dict) and isinstance(card.get("id"), str):
            params = card.get("parameters") if isinstance(card.get("parameters"), dict) else {}
            ctx = params.get("max_seq_len")
            r.models = [ModelInfo(name=card["id"], context_length=ctx if isinstance(ctx, int) else None)]
            slots = params.get("max_batch_size")
            if isinstance(slots, int):
                r.gauges["slots_total"] = slots
        if isinstance(health, dict) and health.get("status") == "unhealthy":
            raise FetchError("unhealthy (/health)", path="/health")
        return r


class LmStudioEngine(Engine):
    kind = "lmstudio"

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:
        r = Reading()
        data = await f.get_json("/api/v0/models", optional=True)
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            for m in data["data"]:
                if not isinstance(m, dict) or m.get("state") != "loaded" or m.get("type") == "embeddings":
                    continue
                ctx = m.get("max_context_length")
                quant = m.get("quantization")
                r.models.append(ModelInfo(name=str(m.get("id") or "?"),
                                          context_length=ctx if isinstance(ctx, int) else None,
                                          quantization=quant if isinstance(quant, str) else None))
            return r
        listed = await f.get_json("/v1/models")  # an older LM Studio: the OpenAI list only
        if isinstance(listed, dict) and isinstance(listed.get("data"), list):
            r.models = [ModelInfo(name=str(m.get("id"))) for m in listed["data"] if isinstance(m, dict) and m.get("id")]
        return r
